"""`archiver pack DIR`: pack a run's finished WARCs into megawarcs for upload (library: archiver.warc.megawarc)."""

from __future__ import annotations

import argparse

from archiver.cli.grab import parse_size


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pack", help="pack a run's finished WARCs into megawarcs (Archive Team's upload format)",
        description="Pack the finished .warc.gz files of DIR (never .open ones) into megawarcs: "
                    "PREFIX-YYYYmmddHHMMSS-NNNN.megawarc.warc.gz (the WARCs, concatenated), .megawarc.tar "
                    "(inputs that fail the check) and .megawarc.json.gz (the index megawarc's `restore` reads). "
                    "Every input is checked first. With a run queue (DIR/state.sqlite) only files of done items "
                    "are packed, an item's files stay together, and each pack is recorded in the queue. Files "
                    "already in a pack are skipped.")
    p.add_argument("dir", metavar="DIR", help="the output directory of a grab or run")
    p.add_argument("-o", "--output", dest="prefix", metavar="PREFIX",
                   help="path and name prefix of the packs (default: DIR/packs/<DIR name>)")
    p.add_argument("--max-size", type=parse_size, metavar="BYTES",
                   help="start a new pack past this much input, e.g. 50GiB (default: one pack)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the second check of each finished pack (its inputs are still checked)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from archiver.warc.megawarc import PackResult, pack_run

    def show(pack: PackResult) -> None:
        warcs = [e for e in pack.entries if e.container == "warc"]
        others = [e for e in pack.entries if e.container == "tar"]
        held = f", {len(pack.items)} items" if pack.items else ""
        print(f"packed {pack.base}: {len(warcs)} WARCs ({_mib(pack.warc_size)}){held}; "
              f"{len(others)} files in the .tar side")
        for e in others:
            print(f"  {e.arcname} went to the .tar side: {e.reason}")

    report = pack_run(args.dir, args.prefix, args.max_size, verify=not args.no_verify, progress=show)
    already = sum(1 for _f, why in report.skipped if why == "already in a pack")
    for name, why in report.skipped:
        if why != "already in a pack":
            print(f"not packed: {name}: {why}")
    if already:
        print(f"{already} files were already packed")
    if report.open_files:
        print(f"{report.open_files} .open files of an unfinished grab were left alone")
    if not report.packs:
        print(f"nothing new to pack in {args.dir}")
    return 0


def _mib(n: int) -> str:
    return f"{n / 1024**2:.1f} MiB"
