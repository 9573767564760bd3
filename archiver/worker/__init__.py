"""The volunteer's worker: `archiver worker --tracker URL/PROJECT --nick NAME`.

    errors.py   what stops a worker or an item
    safety.py   what a tracker can and cannot make a volunteer's worker fetch, send, or be called
    client.py   the tracker protocol from the worker's side: claims, heartbeats, uploads, done/fail/release,
                with jittered back-off that honours Retry-After
    loop.py     claim → grab → check → upload → done, the bulk run's pipeline with the tracker as its queue

    report = run_worker(WorkerOptions("https://tracker.example.org/papers", "jane_doe"), progress=print)
"""

from archiver.worker.client import Backoff, RetryPolicy, TrackerClient, parse_tracker_url
from archiver.worker.errors import TrackerError, TrackerRefused, UploadRefused, VersionTooOld, WorkerError
from archiver.worker.loop import WorkerOptions, WorkerReport, run_worker
from archiver.worker.safety import (
    Politeness,
    check_upload_target,
    choose_site,
    item_from_name,
    tracker_politeness,
    validate_nick,
)

__all__ = [
    "Backoff", "Politeness", "RetryPolicy", "TrackerClient", "TrackerError", "TrackerRefused", "UploadRefused",
    "VersionTooOld", "WorkerError", "WorkerOptions", "WorkerReport", "check_upload_target", "choose_site",
    "item_from_name", "parse_tracker_url", "run_worker", "tracker_politeness", "validate_nick",
]
