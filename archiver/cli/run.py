"""`archiver run MANIFEST` and `archiver status DIR` (library: archiver.run)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from archiver.cli.grab import _mb, _positive
from archiver.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="work through a manifest's items: resumable, one checked WARC set per item",
                       description="Grab every item of a manifest into DIR. Run the same command again to resume: "
                                   "done items are never fetched again; items of a killed run are redone.")
    p.add_argument("manifest", metavar="MANIFEST")
    p.add_argument("-o", "--output", dest="out_dir", metavar="DIR",
                   help="run directory: WARCs, state.sqlite, report.json (default: runs/<project>)")
    p.add_argument("--workers", type=_positive(int), default=1, metavar="N",
                   help="items grabbed in parallel (politeness per host is shared by all of them)")
    p.add_argument("--retry-failed", action="store_true", help="give failed items their tries again")
    p.add_argument("--limit", type=_positive(int), metavar="N", help="claim at most N items in this run")
    p.add_argument("--upload", action="store_true",
                   help="pack finished items into megawarcs as they reach upload.max_pack_size and upload each "
                        "pack to the Internet Archive item the manifest's upload section names (verified)")
    p.add_argument("--ia-endpoint", metavar="URL",
                   help="with --upload: send to this S3-compatible endpoint instead (tests, staging); "
                        "also ARCHIVER_IA_ENDPOINT")
    p.add_argument("--backoff-base", type=_positive(float), metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("--backoff-give-up", type=_positive(float), metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    p.set_defaults(run=run)

    s = sub.add_parser("status", help="what a run directory holds: items by state, failures, packs")
    s.add_argument("out_dir", metavar="DIR")
    s.add_argument("--json", action="store_true", help="machine-readable")
    s.set_defaults(run=status)


def run(args: argparse.Namespace) -> int:
    from archiver.grab import command_line
    from archiver.manifest import load_manifest
    from archiver.run import run_manifest

    manifest = load_manifest(args.manifest)
    out_dir = args.out_dir or str(Path("runs") / manifest.project)
    extra = {}
    if args.backoff_base is not None:
        extra["backoff_base"] = args.backoff_base
    if args.backoff_give_up is not None:
        extra["backoff_give_up"] = args.backoff_give_up
    bar = None if args.quiet or not sys.stderr.isatty() else RunBar()
    upload = None
    if args.upload:
        from archiver.run import UploadSettingsForRun
        from archiver.upload.endpoint import resolve_endpoint

        listener = None
        if not args.quiet and sys.stderr.isatty():
            from archiver.cli.upload import Bars

            listener = Bars()
        upload = UploadSettingsForRun(endpoint=resolve_endpoint(args.ia_endpoint), listener=listener)
    elif args.ia_endpoint:
        raise UsageError("--ia-endpoint goes with --upload")
    try:
        report = run_manifest(manifest, out_dir, workers=args.workers, retry_failed=args.retry_failed,
                              limit=args.limit, command_line=command_line(), progress=bar, extra=extra,
                              upload=upload)
    finally:
        if bar is not None:
            bar.close()
    s = report.stats
    print(f"{report.project}: {s['done']} done, {s['failed']} failed, {s['todo']} to do "
          f"({len(report.done_now)} done in this run, {_mb(s['bytes'])} in {report.elapsed:.1f} s); "
          f"state in {report.out_dir}")
    for name, why in list(report.failed_now.items())[:20]:
        print(f"  FAILED {name}: {why[:300]}")
    for upload_report in report.uploads:
        print(upload_report.summary())
    if report.fatal:
        print(f"stopped: {report.fatal}")
    if report.interrupted:
        print("interrupted: run the same command again to resume")
        return 130
    return 0 if report.ok else 1


class RunBar:
    """Items done / total, failures, bytes, rate and ETA on a terminal."""

    def __init__(self) -> None:
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: crawl workers are forked from this process
        self.tqdm = tqdm
        self.bar = None

    def __call__(self, state) -> None:
        if self.bar is None:
            self.bar = self.tqdm(total=state.total, initial=state.done + state.failed, unit=" items",
                                 file=sys.stderr, dynamic_ncols=True)
        self.bar.n = state.done + state.failed
        crawl = state.crawl
        urls = f" urls {crawl.fetched}" if crawl else ""
        self.bar.set_postfix_str(f"failed {state.failed} {_mb(state.bytes)} in flight {state.in_flight}{urls}",
                                 refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def status(args: argparse.Namespace) -> int:
    from archiver.queue import STATE_FILE
    from archiver.queue.sqlite import SqliteQueue

    state = Path(args.out_dir) / STATE_FILE
    if not state.exists():
        raise UsageError(f"{args.out_dir} is not a run directory (no {STATE_FILE}); start one with archiver run")
    q = SqliteQueue(state)
    try:
        stats = q.stats()
        failed = [(r.name, r.last_error or "") for r in q.items("failed")]
        packs = q.packs() if hasattr(q, "packs") else []
        if args.json:
            print(json.dumps({"todo": stats.todo, "claimed": stats.claimed, "done": stats.done,
                              "failed": stats.failed, "bytes": stats.bytes,
                              "failed_items": dict(failed), "packs": [str(p) for p in packs]}, indent=1))
            return 0
        print(f"{args.out_dir}: {stats.total} items: {stats.done} done, {stats.todo} to do, {stats.claimed} claimed, "
              f"{stats.failed} failed; {_mb(stats.bytes)} downloaded; {len(packs)} packs")
        for name, why in failed[:50]:
            print(f"  failed {name}: {why[:300]}")
    finally:
        q.close()
    return 0
