"""`archiver worker`: grab items for a tracker as a volunteer (library: archiver.worker)."""

from __future__ import annotations

import argparse
import sys

from archiver.cli.grab import _positive
from archiver.sites import site_names


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "worker", help="grab items handed out by a tracker (Archive Team compatible) and upload them to it",
        description="Claim items from a tracker, grab each into WARC files, check them, upload them to the "
                    "tracker and report them done, the same pipeline as `archiver run`. Failed grabs are reported "
                    "with their reason. Ctrl-C (or the stop file) stops claiming and finishes what is in flight; "
                    "a second Ctrl-C stops at once. Unfinished claims are always given back. A project's admins can "
                    "make workers more polite, never less: the tracker's `delay` lengthens --delay and its "
                    "`max_concurrency` caps --concurrency; a stricter change while the worker runs stops it "
                    "(start it again to pick the change up).")
    p.add_argument("--tracker", required=True, metavar="URL/PROJECT",
                   help="the tracker's address and the project, e.g. https://tracker.example.org/papers")
    p.add_argument("--nick", required=True, metavar="NAME",
                   help="your name on the tracker's leaderboard: 3 to 30 letters, digits, '-' or '_'")
    p.add_argument("--concurrency", type=_positive(int), default=1, metavar="N",
                   help="items grabbed at once, 1 to 20 (default 1; politeness per site is shared by all). Free "
                        "slots are claimed in one request (multi=N; one at a time from a tracker without it); the "
                        "project's max_concurrency, if set, caps N")
    p.add_argument("--stop-file", metavar="FILE",
                   help="when FILE exists, claim nothing more, finish what is in flight and exit")
    p.add_argument("--data", dest="data_dir", default="worker-data", metavar="DIR",
                   help="where WARCs are written until they are uploaded (default ./worker-data; emptied as "
                        "items are handed in)")
    p.add_argument("--site", choices=site_names(),
                   help="the site module you expect the project to use; required to work on a generic (any URL) "
                        "project, since there the tracker chooses every address you fetch")
    p.add_argument("--allow-base-url", action="store_true",
                   help="let the tracker say where the site is served (a mirror, or a test site) instead of its "
                        "own address")
    p.add_argument("--delay", type=_positive(float), metavar="SECONDS",
                   help="pause between requests to one host (default: the site's; arXiv 3 s): yours to lengthen, "
                        "shortening it is for tests and mirrors. A longer delay set by the project on the tracker "
                        "wins; a shorter one is ignored")
    p.add_argument("--item-timeout", type=_positive(float), default=7200.0, metavar="SECONDS",
                   help="give an item up (reported failed, so it goes to someone else) when its grab takes longer "
                        "(default 7200)")
    p.add_argument("--until-empty", action="store_true",
                   help="exit once the tracker has no items left to hand out and none claimed")
    # Tests only: cuts every wait, the tracker's Retry-After included, so an idle poll takes a second, not a minute.
    p.add_argument("--max-wait", type=_positive(float), metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("-q", "--quiet", action="store_true", help="no line per item")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from archiver.worker import RetryPolicy, WorkerOptions, run_worker

    policy = RetryPolicy()
    if args.max_wait is not None:
        policy = replace(policy, base=min(policy.base, args.max_wait), ceiling=args.max_wait)
    options = WorkerOptions(tracker=args.tracker, nick=args.nick, concurrency=args.concurrency,
                            stop_file=args.stop_file, data_dir=args.data_dir, site=args.site,
                            allow_base_url=args.allow_base_url, delay=args.delay, until_empty=args.until_empty,
                            item_timeout=args.item_timeout, policy=policy)
    report = run_worker(options, progress=None if args.quiet else _line)
    print(report.summary(args.nick), flush=True)
    return 130 if report.interrupted else 0


def _line(text: str) -> None:
    print(text, file=sys.stdout, flush=True)
