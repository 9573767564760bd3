"""Fuzz the tracker's HTTP API from its own OpenAPI document: schemathesis generates calls to every documented
operation, valid and invalid ones, and sends them to a real tracker on 127.0.0.1 (each store). Whatever comes in,
the tracker answers with a reason (4xx) or does the work, and never answers 5xx.

Each operation is tried with generated path parameters, and again against a real project with items claimed
(so a generated body reaches the store rather than stopping at "unknown project"), with the admin token, so the
admin API is fuzzed past its lock too. Examples are bounded (SCHEMA_EXAMPLES per operation and mode) so the run
stays well under a minute; set ARCHIVER_SCHEMA_EXAMPLES to fuzz longer.
"""

from __future__ import annotations

import collections
import os

import pytest
from fixtures.tracker_server import tracker_on_store
from test_tracker_api import TOKEN, Server  # the same real server the API tests use

schemathesis = pytest.importorskip("schemathesis", reason="the schema fuzz test needs schemathesis "
                                                          "(pip install schemathesis)")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

SCHEMA_EXAMPLES = int(os.environ.get("ARCHIVER_SCHEMA_EXAMPLES", "12"))
PAPERS = [f"2103.{n:05d}" for n in range(1, 41)]


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def tracker(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"schema-{request.param}")
    with tracker_on_store(request, request.param, root, "schema", Server) as server:
        yield server


def test_no_generated_call_gets_a_server_error(tracker):
    slug = tracker.project(PAPERS, budget=50, rate_limit=6000)
    for who in ("alice", "bob"):  # claims, so generated done/fail/heartbeat bodies can meet real ones
        tracker.claim(slug, who, multi=3)
    schema = schemathesis.openapi.from_url(f"{tracker.base}/openapi.json")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    failures: list[str] = []
    statuses: collections.Counter[int] = collections.Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]  # the document lists the whole API

    def fuzz(strategy, label: str):
        @settings(max_examples=SCHEMA_EXAMPLES, deadline=None, database=None, derandomize=False,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def call(case) -> None:
            response = case.call(base_url=tracker.base, headers=auth, timeout=30)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{label}: {response.status_code} {response.text[:300]}\n    "
                                f"{case.as_curl_command()}")
        return call

    for operation in operations:
        real_slug = {"slug": slug} if "slug" in operation.path_parameters else {}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for fixed in ({}, real_slug) if real_slug else ({},):
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed or None)
                try:
                    fuzz(strategy, f"{operation.label} ({mode.value})")()
                except Unsatisfiable:
                    if mode is GenerationMode.POSITIVE:
                        raise
                    # Nothing in this operation can be invalid (e.g. GET / takes no input): no negative cases.
    assert not failures, f"{len(failures)} generated calls got a server error:\n" + "\n".join(failures[:20])
    # Not vacuous: calls got through to the work (2xx) as well as being refused (4xx).
    done = sum(n for status, n in statuses.items() if status < 300)
    assert done >= 20 and sum(statuses.values()) - done >= 100, statuses
    print(f"{sum(statuses.values())} generated calls, by status: {dict(sorted(statuses.items()))}")
