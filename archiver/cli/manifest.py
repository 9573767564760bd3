"""`archiver manifest check FILE...`: validate manifests without fetching anything (library: archiver.manifest)."""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("manifest", help="work with manifests (project item lists)",
                       description="Manifests are YAML files listing a project's items and settings; "
                                   "see manifests/README.md for the schema.")
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    check = actions.add_parser(
        "check", help="validate manifests without fetching",
        description="Validate each manifest: every problem is listed as FILE:LINE: key: problem (expected ...). "
                    "Exit status 0 when all are valid, 2 otherwise.")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    from archiver.manifest import ManifestError, load_manifest

    status = 0
    for path in args.files:
        try:
            m = load_manifest(path)
        except ManifestError as e:
            print(f"archiver manifest check: {e}", file=sys.stderr)
            status = 2
            continue
        print(f"{path}: valid: project {m.project}, site {m.site}, {len(m.items)} item"
              f"{'s' if len(m.items) != 1 else ''}")
    return status
