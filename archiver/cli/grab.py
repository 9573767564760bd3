"""`archiver grab`: capture targets into WARC files (library: archiver.grab)."""

from __future__ import annotations

import argparse
import re
import sys
import time

from archiver import DEFAULT_USER_AGENT
from archiver.errors import UsageError
from archiver.sites import site_names
from archiver.sites.base import ROBOTS_MODES, ROBOTS_OBEY

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.I)


def parse_size(text: str) -> int:
    """Bytes from '5368709120', '5G', '5GiB', '100MB', '512k' (powers of 1024)."""
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (examples: 1000000, 500M, 5GiB)")
    unit = " kmgt".index(m.group(2).lower() or " ")
    return int(float(m.group(1)) * 1024**unit)


def _level(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 9:
        raise argparse.ArgumentTypeError("compression level is 0 (none) to 9 (smallest)")
    return int(text)


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value < 0:
            raise argparse.ArgumentTypeError("must not be negative")
        return value
    return parse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "grab", help="grab arXiv papers (every version) or URLs into checked WARC files",
        description="Grab targets into WARC files, index them (CDXJ) and check them. A target is an arXiv id "
                    "(2108.07258, 2108.07258v2, hep-th/9901001, arxiv:2108.07258), an arXiv URL, or any http(s) "
                    "URL. An arXiv target always means the whole paper: every version.")
    p.add_argument("targets", nargs="+", metavar="TARGET")
    p.add_argument("--site", choices=site_names(),
                   help="force a site module; with a URL on another host, that host is treated as the site's root")
    p.add_argument("-o", "--output", dest="out_dir", default="warcs", metavar="DIR",
                   help="where WARC files and their .cdxj indexes go (default: ./warcs)")
    p.add_argument("--delay", type=_positive(float), metavar="SECONDS",
                   help="pause between requests to one host (default: the site's; arXiv 3 s, others 0)")
    p.add_argument("--concurrency", type=_positive(int), metavar="N",
                   help="requests in flight at once (default: the site's; arXiv 1, others 2)")
    p.add_argument("--user-agent", default=DEFAULT_USER_AGENT, metavar="UA")
    p.add_argument("--operator", metavar="CONTACT", help="who runs the crawl (written into warcinfo)")
    p.add_argument("--include-source", action="store_true",
                   help="arXiv: also fetch /src/IDvN (disallowed by arXiv's robots.txt; opt-in)")
    p.add_argument("--recursive", action="store_true",
                   help="generic: follow links within the start URL's host and path prefix")
    p.add_argument("--depth", type=_positive(int), metavar="N", help="with --recursive: link depth limit")
    p.add_argument("--ignore", action="append", default=[], metavar="REGEX",
                   help="never fetch URLs matching REGEX (repeatable)")
    p.add_argument("--robots", choices=ROBOTS_MODES, default=ROBOTS_OBEY,
                   help="generic: 'obey' (default, as wget and Heritrix) fetches each host's robots.txt first, "
                        "records it, skips links and requisites it disallows (URLs you give are always fetched) "
                        "and honours its Crawl-delay; 'ignore' does not consult it (as grab-site, for dying sites)")
    p.add_argument("--ignore-file", action="append", default=[], metavar="FILE",
                   help="a file of ignore regexes, one per line, # comments (grab-site's ignore sets)")
    p.add_argument("--warc-max-size", type=parse_size, default=5 * 1024**3, metavar="BYTES",
                   help="start a new WARC file past this size (default 5GiB)")
    p.add_argument("--compress-level", type=_level, default=6, metavar="0-9",
                   help="gzip level for records (default 6; incompressible bodies are stored)")
    p.add_argument("--max-size", type=parse_size, metavar="BYTES",
                   help="cut response bodies at this size (recorded with WARC-Truncated: length)")
    p.add_argument("--timeout", type=_positive(float), default=30.0, metavar="SECONDS",
                   help="give up on a silent connection after this long (default 30)")
    p.add_argument("--max-time", type=_positive(float), default=3600.0, metavar="SECONDS",
                   help="longest time for one response (default 3600)")
    p.add_argument("--tries", type=_positive(int), default=3, metavar="N",
                   help="attempts per URL on connection faults (default 3)")
    p.add_argument("--backoff-base", type=_positive(float), metavar="SECONDS",
                   help="first wait after a 429/503/block page (default: the site's; arXiv 60 s)")
    p.add_argument("--backoff-give-up", type=_positive(float), metavar="SECONDS",
                   help="total back-off on one host before its URLs fail (default: the site's; arXiv 2 h)")
    cookies = p.add_mutually_exclusive_group()
    cookies.add_argument("--no-cookies", action="store_true",
                         help="send no cookies and keep none (default: cookies a site sets are kept for the grab "
                              "and sent back by its rules, as a browser, grab-site and wget "
                              "--keep-session-cookies do)")
    cookies.add_argument("--load-cookies", metavar="FILE",
                         help="start with the cookies of FILE, a Netscape cookies.txt (as wget --load-cookies; "
                              "written by curl -c and browsers' cookies.txt exporters); each is sent only to the "
                              "hosts, paths and schemes it names. They are secrets: never written into warcinfo "
                              "or logs, but the WARC's request records show the Cookie headers sent, as wget's "
                              "do, so a WARC made with a login cookie holds it: think before publishing it")
    p.add_argument("--no-check-certificate", action="store_true", help="do not verify TLS certificates")
    p.add_argument("--prefix", help="WARC file name prefix (default: from the site and the first item)")
    p.add_argument("--no-check", action="store_true", help="skip the check of the finished WARCs")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress display, and only the summary lines at the end")
    p.add_argument("--log-json", metavar="FILE", help="append one JSON line per fetched URL to FILE")
    p.set_defaults(run=run)


def _read_ignore_files(paths: list[str]) -> list[str]:
    out = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise UsageError(f"cannot read ignore file {path}: {e.strerror or e}") from e
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                try:
                    re.compile(line)
                except re.error as e:
                    raise UsageError(f"{path}:{n}: invalid regex {line!r}: {e}") from e
                out.append(line)
    return out


def run(args: argparse.Namespace) -> int:
    from archiver.grab import GrabOptions, command_line, grab

    ignore = list(args.ignore)
    for rx in ignore:
        try:
            re.compile(rx)
        except re.error as e:
            raise UsageError(f"--ignore {rx!r} is not a valid regex: {e}") from e
    ignore += _read_ignore_files(args.ignore_file)
    extra = {}
    if args.backoff_base is not None:
        extra["backoff_base"] = args.backoff_base
    if args.backoff_give_up is not None:
        extra["backoff_give_up"] = args.backoff_give_up
    options = GrabOptions(
        site=args.site, out_dir=args.out_dir, delay=args.delay, concurrency=args.concurrency,
        user_agent=args.user_agent, include_source=args.include_source, recursive=args.recursive,
        depth=args.depth, ignore=tuple(ignore), robots=args.robots, warc_max_size=args.warc_max_size,
        compress_level=args.compress_level, max_size=args.max_size, timeout=args.timeout,
        max_time=args.max_time, tries=max(1, args.tries), verify_tls=not args.no_check_certificate,
        cookies=not args.no_cookies, load_cookies=args.load_cookies, log_json=args.log_json, operator=args.operator,
        prefix=args.prefix, command_line=command_line(), check=not args.no_check, extra=extra)
    progress = None if args.quiet or not sys.stderr.isatty() else Progress()
    try:
        report = grab(args.targets, options, progress=progress)
    finally:
        if progress is not None:
            progress.close()
    print_summary(report, quiet=args.quiet)
    if report.interrupted:
        return 130
    return 0 if report.ok else 1


class Progress:
    """A one-line live display on a terminal: current URL, counts, bytes, rate."""

    def __init__(self) -> None:
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: crawl workers are forked from this process
        self.bar = tqdm(unit=" URLs", file=sys.stderr, dynamic_ncols=True, leave=False)
        self.last = 0

    def __call__(self, stats) -> None:
        done = stats.fetched + stats.failed
        self.bar.update(done - self.last)
        self.last = done
        rate = stats.bytes / max(stats.elapsed, 1e-6)
        self.bar.set_postfix_str(f"{_mb(stats.bytes)} {_mb(rate)}/s queued {stats.queued} "
                                 f"fail {stats.failed} {stats.current[-60:]}", refresh=False)

    def close(self) -> None:
        self.bar.close()


def _mb(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def print_summary(report, quiet: bool = False) -> None:
    s = report.stats
    out = sys.stdout
    took = time.time() - s.started
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(s.by_status.items(), key=lambda kv: str(kv[0])))
    print(f"captured {s.fetched} URLs ({statuses or 'none'}), {_mb(s.bytes)} in {took:.1f} s; "
          f"{s.failed} failed, {s.refused} refusals backed off", file=out)
    if not quiet:
        for reason, n in sorted(s.skipped.items()):
            print(f"  not fetched: {n} × {reason}", file=out)
        for url, why in report.failed_urls[:20]:
            print(f"  failed: {url}: {why}", file=out)
        if len(report.failed_urls) > 20:
            print(f"  ... and {len(report.failed_urls) - 20} more failures (see --log-json)", file=out)
        for path in report.warcs:
            print(f"  wrote {path}", file=out)
    if report.check is not None:
        errors = sum(1 for f in _all_findings(report.check) if f.severity == "error")
        warnings = sum(1 for f in _all_findings(report.check) if f.severity == "warning")
        verdict = "clean" if report.check.ok else f"{errors} errors"
        print(f"check: {verdict}, {warnings} warnings", file=out)
        for f in [f for f in _all_findings(report.check) if f.severity == "error"][:20]:
            print(f"  {f.code}: {f.message}", file=out)
    for r in report.items:
        if r.ok:
            print(f"done {r.item.site}:{r.item.name}", file=out)
        else:
            print(f"FAILED {r.item.site}:{r.item.name}: " + "; ".join(r.problems[:5]), file=out)
    if report.interrupted:
        print("interrupted: finished WARCs are closed properly; run the grab again to complete it", file=out)
    if report.fatal:
        print(f"stopped: {report.fatal}", file=out)


def _all_findings(check) -> list:
    out = list(getattr(check, "findings", []) or [])
    for f in getattr(check, "files", []) or []:
        out += list(getattr(f, "findings", []) or [])
    return out
