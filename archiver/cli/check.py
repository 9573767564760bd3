"""`archiver check` (library: archiver.warc.check) and `archiver index` (library: archiver.warc.index)."""

from __future__ import annotations

import argparse
import sys

from archiver.errors import UsageError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check WARC files thoroughly (exit 0: sound, 1: errors, 2: unreadable)",
                       description="Check WARC files: gzip container, record syntax, fields, digests, links "
                                   "between records, the HTTP inside, block pages, and with --site the "
                                   "completeness of each item. Codes are explained in docs/checks.md.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print a machine-readable report")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="check N files at a time (processes)")
    p.add_argument("--strict", action="store_true", help="warnings fail the check too")
    p.add_argument("--site", metavar="NAME", help="judge captures with this site module and check completeness")
    p.add_argument("--verbose", "-v", action="store_true", help="list every finding, notices included")
    p.set_defaults(run=run_check)

    p = sub.add_parser("index", help="write CDXJ indexes of WARC files (through cdxj-indexer)")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write one sorted index of all files here ('-' for stdout) instead of FILE.cdxj beside each")
    p.set_defaults(run=run_index)


def run_check(args: argparse.Namespace) -> int:
    from archiver.sites import get_site
    from archiver.warc.check import check_files

    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    site = get_site(args.site) if args.site else None
    report = check_files(args.files, site=site, jobs=args.jobs, strict=args.strict)
    print(report.to_json() if args.json else report.summary(verbose=args.verbose))
    return report.exit_code


def run_index(args: argparse.Namespace) -> int:
    from archiver.warc.index import index_files, write_index

    if args.output:
        index_files(args.files, sys.stdout if args.output == "-" else args.output)
    else:
        for name in args.files:
            print(write_index(name))
    return 0
