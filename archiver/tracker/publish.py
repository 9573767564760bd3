"""Publishing the tracker's packs: every megawarc in <uploads>/<slug>/packs/ goes to an Internet Archive item of
its own when the project has upload settings (Project.upload), through the same ledger and steps as a run's
packs (archiver.upload.packs).

Each sweep (the Sweeper's schedule, or POST /admin/projects/{slug}/sweep) cuts and packs batches as before
(the hand-off, default archiver.tracker.uploads.pack_batch), then publishes each swept project's packs not yet
verified, so a failed upload is simply tried again at the next sweep, in the same item. Per project:

    <slug>/ia-uploads.sqlite    the ledger: each pack's identifier, recorded before anything is sent, and when
                                IA's listing matched it
    <slug>/ia-uploads.lock      held (flock) while a process publishes the project's packs

Several tracker processes share the uploads directory: the ledger's first recorded identifier wins, and the lock
keeps a second process from sending the same pack at the same time (it skips the project and says "busy"; the
next sweep finds the work done or resumes it). Packs stay on disk after they are verified: nothing here deletes
them (the ledger says which are safe to remove). Without upload settings nothing is sent.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archiver.errors import ArchiverError
from archiver.tracker.projects import Project
from archiver.tracker.uploads import UploadTarget
from archiver.upload.credentials import Credentials, CredentialsMissing, load_credentials
from archiver.upload.ia import RetryPolicy
from archiver.upload.metadata import RunInfo
from archiver.upload.packs import Pack, PackUpload, UploadLedger, pack_files, upload_packs

log = logging.getLogger(__name__)

LEDGER_FILE = "ia-uploads.sqlite"
LOCK_FILE = "ia-uploads.lock"
_INDEX = ".megawarc.json.gz"


@dataclass
class Published:
    """What one publish of a project did."""

    slug: str
    enabled: bool = False  # the project has upload settings
    packs: list[PackUpload] = field(default_factory=list)  # packs tried by this call (stops at the first failure)
    earlier: int = 0  # packs verified before this call
    busy: bool = False  # another process was publishing this project's packs: nothing tried
    error: str | None = None  # why nothing could be tried (keys missing, ledger unreadable)

    @property
    def ok(self) -> bool:
        return self.error is None and all(p.ok for p in self.packs)

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "ok": self.ok, "busy": self.busy, "error": self.error,
                "verified_earlier": self.earlier,
                "packs": [{"pack": p.pack, "identifier": p.identifier, "ok": p.ok, "error": p.failure()}
                          for p in self.packs]}


class Publisher:
    """Uploads the packs of projects under `root` (the upload target's directory) to IA. `project` reads a
    project's current settings from the store. Credentials, unless given, are read from the environment or
    `ia configure`'s file each time there is something to send, so keys set later need no restart."""

    def __init__(self, root: str | os.PathLike[str], project: Callable[[str], Project | None], *,
                 endpoint: str | None = None, credentials: Credentials | None = None,
                 retry: RetryPolicy | None = None, jobs: int = 1) -> None:
        self.root = Path(root).resolve()
        self.project = project
        self.endpoint = endpoint
        self.credentials = credentials
        self.retry = retry
        self.jobs = jobs  # WARC checks while planning; 1 keeps them in this process (no fork of a server)

    def publish(self, slug: str) -> Published:
        """Upload every pack of `slug` not yet verified, unless the project has no upload settings or another
        process holds the project's lock. Failures are logged and in the answer; the packs stay on disk."""
        out = Published(slug)
        project = self.project(slug)
        if project is None or project.upload is None:
            return out
        out.enabled = True
        home = self.root / slug
        names = complete_packs(home / "packs")
        if not names:
            return out
        with _exclusive(home / LOCK_FILE) as held:
            if not held:
                out.busy = True
                log.info("packs of %s are being published by another tracker process; skipped", slug)
                return out
            try:
                self._publish(project, home, names, out)
            except ArchiverError as e:  # the ledger cannot be read or written
                out.error = str(e)
        for p in out.packs:
            if p.ok:
                log.info("published pack %s of %s to %s (verified)", p.pack, slug, p.identifier)
            else:
                log.error("publishing pack %s of %s to %s failed: %s; it stays in packs/ and is tried again at "
                          "the next sweep", p.pack, slug, p.identifier, p.failure())
        if out.error:
            log.error("cannot publish the packs of %s: %s; they stay in packs/", slug, out.error)
        return out

    def _publish(self, project: Project, home: Path, names: list[str], out: Published) -> None:
        assert project.upload is not None
        with UploadLedger(home / LEDGER_FILE) as ledger:
            todo = [n for n in names if (ledger.get(n) or ("", None))[1] is None]
            out.earlier = len(names) - len(todo)
            if not todo:
                return
            try:
                credentials = self.credentials or load_credentials()
            except CredentialsMissing as e:
                out.error = str(e)
                return
            items = _items_by_file(home / "accepted.jsonl")
            packs = [Pack(n, functools.partial(_files, home / "packs" / n), _item_count(home / "packs" / n, items))
                     for n in todo]
            info = RunInfo(home, project.slug, 0, None, description=project.title or None, site=project.site)
            done = upload_packs(packs, ledger, project.upload, project.slug, run=info, credentials=credentials,
                                endpoint=self.endpoint, retry=self.retry, jobs=self.jobs)
            out.packs = done.uploads


class PublishingTarget(UploadTarget):
    """The upload target whose every sweep ends by publishing: batches are cut and handed off as before, then
    each swept project's packs go to IA (archiver.tracker.create_app serves this one)."""

    def __init__(self, root: str | os.PathLike[str], publisher: Publisher, **options: Any) -> None:
        super().__init__(root, **options)
        self.publisher = publisher
        self._publishing: threading.Thread | None = None

    def sweep(self, slugs: list[str], *, force: bool = False) -> list[Path]:
        """UploadTarget.sweep, then publishing in a thread of its own (the scheduled sweeper's path): sending a
        pack can take hours, and meanwhile every project's held uploads must still be settled and batched. A
        publish still running from an earlier sweep is left to finish; the next sweep starts the next one."""
        batches = super().sweep(slugs, force=force)
        if self._publishing is None or not self._publishing.is_alive():
            self._publishing = threading.Thread(target=self._publish_all, args=(list(slugs),), daemon=True,
                                                name="ia-publisher")
            self._publishing.start()
        return batches

    def _publish_all(self, slugs: list[str]) -> None:
        for slug in slugs:
            try:
                self.publisher.publish(slug)  # logs what it did
            except Exception:  # one project's trouble (the store, a full disk) must not stop the others
                log.exception("publishing the packs of %s failed; they stay in packs/", slug)

    def wait_for_publishing(self, timeout: float | None = None) -> None:
        """Wait for a background publish to end (shutdown; tests)."""
        if self._publishing is not None:
            self._publishing.join(timeout)

    def status(self, slug: str) -> dict[str, Any]:
        """UploadTarget.status plus the packs verified in their Internet Archive items."""
        out = super().status(slug)
        ledger_path = self.root / slug / LEDGER_FILE
        out["packs_published"] = 0
        if ledger_path.exists():
            with UploadLedger(ledger_path) as ledger:
                out["packs_published"] = sum(1 for _identifier, verified in ledger.all().values() if verified)
        return out

    def sweep_and_publish(self, slugs: list[str], *,
                          force: bool = False) -> tuple[list[Path], dict[str, Published]]:
        """UploadTarget.sweep, then publish each project, waiting for it (an admin's sweep, which answers with
        what was published): the batches handed off, and what each publish did."""
        batches = UploadTarget.sweep(self, slugs, force=force)
        published = {}
        for slug in slugs:
            try:
                published[slug] = self.publisher.publish(slug)
            except Exception as e:  # one project's trouble (the store, a full disk) must not stop the others
                log.exception("publishing the packs of %s failed; they stay in packs/", slug)
                published[slug] = Published(slug, error=f"{type(e).__name__}: {e}")
        return batches, published


def complete_packs(packs: Path) -> list[str]:
    """Names of the whole megawarcs in `packs` (the index is renamed into place last), oldest name first."""
    if not packs.is_dir():
        return []
    names = [p.name[:-len(_INDEX)] for p in packs.glob("*" + _INDEX) if p.is_file()]
    return sorted(n for n in names if pack_files(packs / n) is not None)


def _files(base: Path) -> list[Path]:
    files = pack_files(base)
    if files is None:
        raise ArchiverError(f"pack {base.name} is no longer whole in {base.parent}")
    return files


def _items_by_file(log_path: Path) -> dict[str, set[str]]:
    """file name -> items, from the upload target's accepted.jsonl (lines it cannot read are skipped: the
    count only goes into the item's description)."""
    out: dict[str, set[str]] = {}
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            entry = json.loads(line)
            out.setdefault(str(entry["file"]), set()).update(str(i) for i in entry["items"])
        except (ValueError, KeyError, TypeError):
            continue
    return out


def _item_count(base: Path, items: dict[str, set[str]]) -> int | None:
    """How many items the pack holds, by the files its index lists; None when that cannot be told."""
    from archiver.warc.megawarc import MegawarcError, read_index

    try:
        names = [Path(e["header_fields"]["name"]).name for e in read_index(base)]
    except (MegawarcError, KeyError, TypeError):
        return None
    held: set[str] = set()
    for name in names:
        held |= items.get(name, set())
    return len(held) or None


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    """Hold the flock on `path` if no one else does (yields True), else yield False at once: a second
    publisher skips rather than waiting behind an upload that can take hours."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
