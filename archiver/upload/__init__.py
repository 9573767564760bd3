"""Uploading to the Internet Archive: plan (check, hash, describe), send (retried, resumable), verify.

    plan = plan_upload(["run/"], "archiver_myproj_20240501120000_1a2b3c4d", {"subject": "physics"})
    print(plan.describe())                       # what --dry-run shows
    report = upload(plan)                        # credentials from `ia configure` or IA_ACCESS_KEY/IA_SECRET_KEY
    report.ok, report.files, report.problems

Modules: identifiers (IA's rules, run identifiers), credentials, endpoint (IA or a local/staging stand-in, at
the requests adapter seam), metadata (what the WARCs hold, in words), plan, ia (send and verify), report, packs
(upload megawarc packs one item each, with a ledger that records each pack's identifier before anything is sent
and marks it only once verified: `archiver.upload.packs`), runs (pack a run and upload its packs through that,
the ledger in the run state: `archiver.upload.runs`); the tracker publishes its packs the same way
(`archiver.tracker.publish`).
"""

from archiver.upload.credentials import Credentials, CredentialsMissing, load_credentials
from archiver.upload.endpoint import ENDPOINT_ENV, EndpointRefused, resolve_endpoint
from archiver.upload.ia import ListingError, RetryPolicy, upload, verify_item
from archiver.upload.identifiers import (
    RUN_IDENTIFIER_TEMPLATE,
    InvalidIdentifier,
    run_identifier,
    validate_identifier,
)
from archiver.upload.metadata import parse_metadata_args
from archiver.upload.plan import PlannedFile, UploadPlan, WarcRefused, plan_upload
from archiver.upload.report import FileOutcome, UploadListener, UploadReport

__all__ = [
    "ENDPOINT_ENV", "RUN_IDENTIFIER_TEMPLATE", "Credentials", "CredentialsMissing", "EndpointRefused", "FileOutcome",
    "InvalidIdentifier", "ListingError", "PlannedFile", "RetryPolicy", "UploadListener", "UploadPlan",
    "UploadReport", "WarcRefused", "load_credentials", "parse_metadata_args", "plan_upload", "resolve_endpoint",
    "run_identifier", "upload", "validate_identifier", "verify_item",
]
