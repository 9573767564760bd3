"""`archiver upload PATH... --identifier ID`: check, send and verify files in an Internet Archive item
(library: archiver.upload)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from archiver.errors import UsageError

if TYPE_CHECKING:
    from archiver.upload import FileOutcome, PlannedFile


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upload", help="upload WARCs or a run's packs to an Internet Archive item: checked, resumable, verified",
        description="Upload files to the Internet Archive item ID. PATH is a WARC file, or a run's output "
                    "directory: then its megawarc packs (from `archiver pack`), their indexes, the manifest and "
                    "report.json. Every WARC is checked first; files IA already holds with the same MD5 are "
                    "skipped, so running the same command again resumes an interrupted upload and sends nothing "
                    "once all is there. Afterwards the item's file list is read back and compared. Credentials: "
                    "the file `ia configure` writes, or IA_ACCESS_KEY and IA_SECRET_KEY.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--identifier", "-i", metavar="ID",
                   help="the item: 5-100 letters, digits, '_', '-', '.'; permanent once made")
    p.add_argument("--metadata", "-m", action="append", default=[], metavar="KEY:VALUE",
                   help="item metadata, replacing the generated value of KEY; repeat a key for several values")
    p.add_argument("--collection", metavar="C", help="the collection to put a new item in")
    p.add_argument("--dry-run", action="store_true",
                   help="show the item, each file with its size and MD5, and the metadata; send nothing")
    p.add_argument("--force", action="store_true", help="upload WARCs even when the check finds errors")
    p.add_argument("--no-derive", dest="derive", action="store_false",
                   help="do not ask IA to derive the item after the last file")
    p.add_argument("--ia-endpoint", metavar="URL",
                   help="send to this endpoint instead of IA, paths kept (tests, staging; or ARCHIVER_IA_ENDPOINT)")
    p.add_argument("--jobs", "-j", type=int, default=None, metavar="N", help="check N WARCs at a time")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from archiver.upload import (
        load_credentials,
        parse_metadata_args,
        plan_upload,
        resolve_endpoint,
        upload,
        validate_identifier,
    )

    if not args.identifier:
        raise UsageError("--identifier is required: IA identifiers are permanent, so choose one, e.g. "
                         f"{_suggestion(args.paths)}")
    validate_identifier(args.identifier)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    metadata = parse_metadata_args(args.metadata)
    endpoint = resolve_endpoint(args.ia_endpoint)
    # Keys first: a missing key should not cost an hour of hashing and checking.
    credentials = None if args.dry_run else load_credentials()
    plan = plan_upload(args.paths, args.identifier, metadata, collection=args.collection, force=args.force,
                       jobs=args.jobs)
    if args.dry_run:
        print(plan.describe())
        print("dry run: nothing was sent")
        return 0
    listener = None if args.quiet or not sys.stderr.isatty() else Bars()
    try:
        report = upload(plan, credentials=credentials, endpoint=endpoint, listener=listener, derive=args.derive)
    finally:
        if listener is not None:
            listener.close()
    print(report.summary())
    return 0 if report.ok else 1


def _suggestion(paths: list[str]) -> str:
    from pathlib import Path

    from archiver.upload import run_identifier
    from archiver.upload.metadata import read_run_info

    run = next((read_run_info(p) for p in paths if Path(p).is_dir() and read_run_info(p)), None)
    project = run.project if run else "myproject"
    try:
        return run_identifier(project)
    except UsageError:
        return run_identifier("myproject")


class Bars:
    """A progress bar per file on stderr (bytes, rate, ETA), notes printed above the bars: an UploadListener
    (not subclassed, so `archiver --help` does not import the upload library)."""

    def __init__(self) -> None:
        from tqdm import tqdm

        self.tqdm = tqdm
        self.bar = None

    def file_started(self, file: PlannedFile, attempt: int) -> None:
        self.close()
        label = file.name if attempt == 1 else f"{file.name} (try {attempt})"
        self.bar = self.tqdm(total=file.size, desc=label, unit="B", unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, dynamic_ncols=True, leave=False)

    def bytes_sent(self, file: PlannedFile, sent: int) -> None:
        if self.bar is not None:
            self.bar.update(sent - self.bar.n)

    def file_finished(self, outcome: FileOutcome) -> None:
        self.close()
        self.tqdm.write(f"  {outcome.line()}", file=sys.stderr)

    def note(self, message: str) -> None:
        self.tqdm.write(f"  {message}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
