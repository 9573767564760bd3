"""What stops a worker, or one of its items; every message says what to do about it."""

from __future__ import annotations

from archiver.errors import ArchiverError

UPDATE_HINT = ("update archiver (`pip install --upgrade archiver`, or `git pull` and reinstall in a checkout) and "
               "start the worker again")


class WorkerError(ArchiverError):
    """The worker stopped for something the volunteer or the project's admins must fix."""


class TrackerError(ArchiverError):
    """The tracker could not be reached or answered something the worker cannot use."""


class TrackerRefused(TrackerError):
    """The tracker will not give this worker work (blocked, unknown project, version too old): stop claiming."""


class VersionTooOld(TrackerRefused):
    """HTTP 455: the project wants a newer worker."""


class UploadRefused(TrackerError):
    """An upload that did not happen: the target is not the tracker's, or the tracker turned the file down."""

    def __init__(self, message: str, status: int | None = None, error: str = "") -> None:
        super().__init__(message)
        self.status, self.error = status, error
