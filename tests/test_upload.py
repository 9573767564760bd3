"""`archiver upload`: WARCs into an Internet Archive item, checked first, retried, resumable and verified.

Every test talks to a fake IA on 127.0.0.1 (tests/fixtures/fake_ia.py) through `internetarchive`, exactly as
production does; any other connection fails the test (the `offline` fixture).
"""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from pathlib import Path

import pytest
from fixtures.fake_ia import ACCESS, SECRET
from warc_factory import capture, warcinfo, write_warc

from archiver.cli import main
from archiver.upload import (
    Credentials,
    CredentialsMissing,
    EndpointRefused,
    InvalidIdentifier,
    RetryPolicy,
    UploadListener,
    WarcRefused,
    load_credentials,
    plan_upload,
    resolve_endpoint,
    run_identifier,
    upload,
    validate_identifier,
)
from archiver.upload.endpoint import make_session
from archiver.upload.metadata import parse_metadata_args

pytestmark = pytest.mark.usefixtures("offline")

ID = "archiver_tests_20240501120000_0a1b2c3d"
KEYS = Credentials(ACCESS, SECRET, "tests")
FAST = RetryPolicy(first_wait=0.01, max_wait=0.05, give_up_after=10, timeout=10, verify_wait=2, verify_poll=0.01)


def make_warc(path: Path, urls: list[str], date: str = "2024-05-01T12:00:00Z") -> Path:
    records = [warcinfo(path.name)]
    for url in urls:
        records += capture(url, b"<html><body>" + url.encode() * 50 + b"</body></html>", date=date)
    return write_warc(path, records)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def send(fake, plan, **kwargs):
    return upload(plan, credentials=KEYS, endpoint=fake.url, retry=kwargs.pop("retry", FAST), **kwargs)


def statuses(fake) -> list[int | None]:
    return [r.status for r in fake.puts()]


@pytest.fixture
def warcs(tmp_path) -> list[Path]:
    return [make_warc(tmp_path / "a-20240501120000-00001.warc.gz",
                      ["https://arxiv.org/abs/2108.07258v1", "https://arxiv.org/pdf/2108.07258v1",
                       "https://arxiv.org/abs/2108.07258v2"]),
            make_warc(tmp_path / "b-20240503080000-00002.warc.gz", ["https://example.org/page"],
                      date="2024-05-03T08:00:00Z")]


# ---- a fresh item ---------------------------------------------------------------------------------------------
def test_a_fresh_item_gets_every_file_intact_with_the_s3_headers_and_its_metadata(fake_ia, warcs):
    plan = plan_upload(warcs, ID, {"subject": ["physics", "machine learning"]}, collection="test_collection")
    report = send(fake_ia, plan)

    assert report.ok and report.verified, report.summary()
    assert [f.status for f in report.files] == ["uploaded", "uploaded"]
    for path in warcs:
        assert fake_ia.stored(ID, path.name) == path.read_bytes()
    first, last = fake_ia.puts()
    total = sum(p.stat().st_size for p in warcs)
    for put, path in zip((first, last), warcs, strict=True):
        h = put.headers
        assert put.path == f"/{ID}/{path.name}"
        assert h["authorization"] == f"LOW {ACCESS}:{SECRET}"
        assert h["content-md5"] == md5(path)  # hex, as IA-S3 wants it
        assert h["content-length"] == str(path.stat().st_size) and "transfer-encoding" not in h
        assert h["x-archive-size-hint"] == str(total)
        assert h["x-archive-auto-make-bucket"] == "1"
        assert h["x-forwarded-host"] == "s3.us.archive.org"
    # derive once, with the last file
    assert (first.headers["x-archive-queue-derive"], last.headers["x-archive-queue-derive"]) == ("0", "1")
    meta = fake_ia.metadata(ID)["metadata"]
    assert meta["mediatype"] == "web"
    assert meta["collection"] == "test_collection"
    assert meta["subject"] == ["physics", "machine learning"]  # the user's subjects replace the generated ones
    assert meta["date"] == "2024-05-01"
    assert "2024-05-01 to 2024-05-03" in meta["title"]
    assert "1 arXiv paper, 2 versions" in meta["description"]
    assert "Captured 2024-05-01T12:00:00Z to 2024-05-03T08:00:00Z" in meta["description"]
    assert "archiver 0.1.0" in meta["description"]


def test_metadata_headers_apply_only_when_the_item_is_created(fake_ia, warcs):
    send(fake_ia, plan_upload(warcs[:1], ID, {"title": "first title"}))
    report = send(fake_ia, plan_upload(warcs, ID, {"title": "second title"}))
    assert report.ok
    assert fake_ia.metadata(ID)["metadata"]["title"] == "first title"
    assert any("metadata stays as it is" in n for n in report.notes)


# ---- idempotent and resumable ---------------------------------------------------------------------------------
def test_uploading_the_same_files_again_sends_nothing(fake_ia, warcs):
    plan = plan_upload(warcs, ID)
    assert send(fake_ia, plan).ok
    puts = len(fake_ia.puts())

    again = send(fake_ia, plan_upload(warcs, ID))
    assert again.ok and again.verified
    assert [f.status for f in again.files] == ["skipped", "skipped"]
    assert len(fake_ia.puts()) == puts


def test_an_interrupted_upload_resumes_with_the_missing_files_only(fake_ia, warcs):
    send(fake_ia, plan_upload(warcs[:1], ID))
    report = send(fake_ia, plan_upload(warcs, ID))
    assert [f.status for f in report.files] == ["skipped", "uploaded"]
    assert [p.path for p in fake_ia.puts()] == [f"/{ID}/{warcs[0].name}", f"/{ID}/{warcs[1].name}"]
    assert fake_ia.puts()[-1].headers["x-archive-queue-derive"] == "1"


def test_a_changed_file_is_sent_again_keeping_the_old_version(fake_ia, warcs):
    send(fake_ia, plan_upload(warcs[:1], ID))
    make_warc(warcs[0], ["https://example.org/changed"])
    report = send(fake_ia, plan_upload(warcs[:1], ID))
    assert report.ok and [f.status for f in report.files] == ["uploaded"]
    assert fake_ia.puts()[-1].headers["x-archive-keep-old-version"] == "1"
    assert fake_ia.stored(ID, warcs[0].name) == warcs[0].read_bytes()


# ---- retries --------------------------------------------------------------------------------------------------
def test_503_slow_down_is_retried_after_asking_the_rate_limit_check(fake_ia, warcs):
    fake_ia.slow_down_once(2)
    report = send(fake_ia, plan_upload(warcs[:1], ID))
    assert report.ok, report.summary()
    assert statuses(fake_ia) == [503, 503, 200]
    assert report.files[0].attempts == 3
    asked = [r for r in fake_ia.requests if r.method == "PUT" or "check_limit" in r.query]
    assert ["check" if r.method == "GET" else "put" for r in asked] == ["check", "put"] * 3
    assert asked[0].query["accesskey"] == [ACCESS] and asked[0].query["bucket"] == [ID]


def test_no_body_is_sent_while_the_rate_limit_check_says_over_limit(fake_ia, warcs):
    fake_ia.over_limit_once(3)
    report = send(fake_ia, plan_upload(warcs[:1], ID))
    assert report.ok
    assert statuses(fake_ia) == [200]
    checks = [r for r in fake_ia.requests if "check_limit" in r.query]
    assert len(checks) == 4


def test_a_connection_dropped_mid_body_is_retried_and_the_file_lands_whole(fake_ia, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(range(256)) * (16 * 4096))  # 16 MiB: the reset comes with most of the body unsent
    fake_ia.drop_connection_mid_body_once()
    report = send(fake_ia, plan_upload([big], ID))
    assert report.ok, report.summary()
    assert statuses(fake_ia) == [None, 200]
    assert 0 < fake_ia.puts()[0].body_bytes < big.stat().st_size
    assert fake_ia.stored(ID, "big.bin") == big.read_bytes()
    assert report.files[0].attempts == 2


def test_a_put_that_landed_although_its_answer_was_lost_is_not_sent_again(fake_ia, warcs):
    fake_ia.lose_answer_once()
    report = send(fake_ia, plan_upload(warcs[:1], ID))
    assert report.ok, report.summary()
    assert statuses(fake_ia) == [None]
    assert "although the PUT failed" in report.files[0].detail


def test_retrying_stops_after_the_time_bound_and_says_how_to_resume(fake_ia, warcs):
    fake_ia.slow_down_once(10_000)
    bounded = RetryPolicy(first_wait=0.02, max_wait=0.05, give_up_after=0.5, timeout=10, verify_wait=1)
    started = time.monotonic()
    report = send(fake_ia, plan_upload(warcs, ID), retry=bounded)
    assert time.monotonic() - started < 5
    assert not report.ok
    assert [f.status for f in report.files] == ["failed", "not sent"]
    assert "gave up after" in report.files[0].error and "SlowDown" not in ID
    assert "Run the same upload again to resume" in report.files[0].error
    assert not report.verified


def test_back_off_doubles_with_jitter_up_to_the_longest_wait():
    policy = RetryPolicy(first_wait=1.0, max_wait=8.0)
    for failures, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waits = [policy.delay(failures) for _ in range(200)]
        assert all(cap / 2 <= w <= cap for w in waits)
        assert len(set(waits)) > 100  # jittered, not one fixed value


def test_a_refusal_stops_the_upload_and_says_what_to_check(fake_ia, warcs):
    wrong = Credentials(ACCESS, "not-the-secret", "tests")
    report = upload(plan_upload(warcs, ID), credentials=wrong, endpoint=fake_ia.url, retry=FAST)
    assert [f.status for f in report.files] == ["failed", "not sent"]
    assert "HTTP 403" in report.files[0].error and "Check the keys" in report.files[0].error
    assert len(fake_ia.puts()) == 1  # not retried: a refusal is not transient
    assert "not-the-secret" not in report.summary()


# ---- verification ---------------------------------------------------------------------------------------------
def test_a_stored_copy_that_differs_fails_verification_naming_the_file(fake_ia, warcs):
    fake_ia.corrupt_stored(warcs[1].name)
    report = send(fake_ia, plan_upload(warcs, ID))
    assert not report.ok and not report.verified
    [problem] = report.problems
    assert problem.startswith(warcs[1].name + ": IA holds md5")
    assert md5(warcs[1]) in problem

    again = send(fake_ia, plan_upload(warcs, ID))  # the advice: run it again
    assert again.ok and [f.status for f in again.files] == ["skipped", "uploaded"]


def test_files_ia_lists_late_are_waited_for(fake_ia, warcs):
    fake_ia.list_files_late(3)
    notes = []

    class Notes(UploadListener):
        def note(self, message: str) -> None:
            notes.append(message)

    report = send(fake_ia, plan_upload(warcs, ID), listener=Notes())
    assert report.ok
    assert any("waiting" in n and "to list 2 file(s)" in n for n in notes)


def test_files_never_listed_leave_the_item_unverified_with_advice(fake_ia, warcs):
    fake_ia.list_files_late(10_000)
    short = RetryPolicy(first_wait=0.01, max_wait=0.02, give_up_after=5, verify_wait=0.2, verify_poll=0.01)
    report = send(fake_ia, plan_upload(warcs, ID), retry=short)
    assert not report.ok and not report.verified
    assert [f.status for f in report.files] == ["uploaded", "uploaded"]
    assert "does not list 2 sent files yet" in report.problems[0]
    assert "run the same upload later to verify" in report.problems[0]


# ---- refused before anything is sent --------------------------------------------------------------------------
def test_a_warc_with_errors_is_refused_naming_it_unless_forced(fake_ia, warcs):
    data = bytearray(warcs[1].read_bytes())
    data[len(data) // 2] ^= 0xFF
    warcs[1].write_bytes(bytes(data))

    with pytest.raises(WarcRefused) as refused:
        plan_upload(warcs, ID)
    message = str(refused.value)
    assert str(warcs[1]) in message and str(warcs[0]) not in message
    assert "--force" in message and "archiver check" in message

    forced = plan_upload(warcs, ID, force=True)
    assert any(str(warcs[1]) in n for n in forced.notes)
    assert "1 had errors and was uploaded anyway (--force)" in forced.metadata["description"]
    assert send(fake_ia, forced).ok


def test_the_cli_refuses_a_bad_warc_with_exit_1_and_sends_nothing(fake_ia, warcs, capsys):
    warcs[0].write_bytes(warcs[0].read_bytes()[:-40])
    code = main(["upload", str(warcs[0]), "--identifier", ID, "--ia-endpoint", fake_ia.url, "-q"])
    assert code == 1
    assert "failed the check" in capsys.readouterr().err
    assert fake_ia.requests == []


@pytest.mark.parametrize(("identifier", "why"), [
    ("abcd", "fewer than 5"),
    ("_archiver_x", "starts with '_'"),
    ("my item 2024", "contains ' '"),
    ("caf\u00e9-2024", "contains '\u00e9'"),
    ("a" * 101, "more than 100"),
])
def test_an_invalid_identifier_is_refused_before_anything_is_sent(fake_ia, warcs, capsys, identifier, why):
    with pytest.raises(InvalidIdentifier, match=why):
        validate_identifier(identifier)
    code = main(["upload", str(warcs[0]), "--identifier", identifier, "--ia-endpoint", fake_ia.url, "-q"])
    err = capsys.readouterr().err
    assert code == 2
    assert why in err and "e.g. archiver_" in err
    assert fake_ia.requests == []


def test_valid_identifiers_pass_and_runs_get_the_archive_team_shape():
    for ok in ("abcde", "a" * 100, "archiver_foundation-models_20240501120000_1a2b3c4d", "9item.v2"):
        assert validate_identifier(ok) == ok
    made = run_identifier("foundation-models")
    assert made.startswith("archiver_foundation-models_") and len(made.split("_")[-1]) == 8
    assert all(c in "0123456789abcdef" for c in made.split("_")[-1])


def test_names_ia_derives_itself_are_never_uploaded(tmp_path, warcs):
    for name in ("a.warc.os.cdx.gz", f"{ID}.cdx.gz", f"{ID}.cdx.idx", f"{ID}_meta.xml"):
        derived = tmp_path / name
        derived.write_bytes(b"x")
        with pytest.raises(Exception, match="IA makes .* itself"):
            plan_upload([warcs[0], derived], ID)


def test_two_files_with_one_name_in_the_item_are_refused(tmp_path, warcs):
    other = tmp_path / "elsewhere"
    other.mkdir()
    twin = make_warc(other / warcs[0].name, ["https://example.org/twin"])
    with pytest.raises(Exception, match="would both be"):
        plan_upload([warcs[0], twin], ID)


# ---- credentials ----------------------------------------------------------------------------------------------
def test_missing_credentials_say_how_to_set_them(fake_ia, warcs, monkeypatch, capsys):
    monkeypatch.delenv("IA_ACCESS_KEY")
    monkeypatch.delenv("IA_SECRET_KEY")
    with pytest.raises(CredentialsMissing) as missing:
        load_credentials()
    assert "ia configure" in str(missing.value) and "IA_ACCESS_KEY and IA_SECRET_KEY" in str(missing.value)

    code = main(["upload", str(warcs[0]), "--identifier", ID, "--ia-endpoint", fake_ia.url, "-q"])
    assert code == 1
    assert "ia configure" in capsys.readouterr().err
    assert fake_ia.requests == []


def test_half_a_key_pair_is_named(monkeypatch):
    monkeypatch.setenv("IA_ACCESS_KEY", "only-this")
    monkeypatch.delenv("IA_SECRET_KEY", raising=False)
    with pytest.raises(CredentialsMissing, match="IA_ACCESS_KEY is set but IA_SECRET_KEY is not"):
        load_credentials()


def test_keys_come_from_the_file_ia_configure_writes(tmp_path, monkeypatch):
    for name in ("IA_ACCESS_KEY", "IA_SECRET_KEY", "IA_ACCESS_KEY_ID", "IA_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    ini = tmp_path / "ia.ini"
    ini.write_text("[s3]\naccess = file-access\nsecret = file-secret\n\n[general]\nscreenname = someone\n")
    monkeypatch.setenv("IA_CONFIG_FILE", str(ini))
    keys = load_credentials()
    assert (keys.access, keys.secret, keys.source) == ("file-access", "file-secret", str(ini))
    assert "file-secret" not in repr(keys) and "file-secret" not in str(keys)


def test_a_config_file_that_cannot_be_parsed_is_named_without_quoting_the_secret(tmp_path, monkeypatch):
    for name in ("IA_ACCESS_KEY", "IA_SECRET_KEY", "IA_ACCESS_KEY_ID", "IA_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    ini = tmp_path / "ia.ini"
    ini.write_text("secret = hunter2-secret\n[s3]\naccess = a\n")
    monkeypatch.setenv("IA_CONFIG_FILE", str(ini))
    with pytest.raises(CredentialsMissing) as bad:
        load_credentials()
    assert str(ini) in str(bad.value) and "hunter2" not in str(bad.value)


def test_the_secret_is_never_printed(fake_ia, warcs, capsys):
    assert main(["upload", *map(str, warcs), "--identifier", ID, "--ia-endpoint", fake_ia.url, "-q"]) == 0
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    assert main(["upload", *map(str, warcs), "--identifier", ID, "--dry-run"]) == 0
    assert SECRET not in capsys.readouterr().out


# ---- the command ----------------------------------------------------------------------------------------------
def test_dry_run_shows_each_file_with_size_and_md5_and_the_metadata_and_sends_nothing(fake_ia, warcs, capsys,
                                                                                      monkeypatch):
    monkeypatch.delenv("IA_SECRET_KEY")  # a dry run needs no keys
    code = main(["upload", *map(str, warcs), "--identifier", ID, "--ia-endpoint", fake_ia.url, "--dry-run",
                 "-m", "subject:physics", "-m", "subject:arXiv", "-m", "language:eng", "--collection", "tests"])
    out = capsys.readouterr().out
    assert code == 0
    assert f"item {ID}" in out
    for path in warcs:
        line = next(line for line in out.splitlines() if path.name in line)
        assert f"{path.stat().st_size:,} bytes" in line and md5(path) in line
    for expected in ("mediatype: web", "subject: physics", "subject: arXiv", "language: eng", "collection: tests",
                     "date: 2024-05-01", "description: "):
        assert expected in out
    assert "nothing was sent" in out
    assert fake_ia.requests == []


def test_the_cli_uploads_and_a_second_run_sends_nothing(fake_ia, warcs, capsys):
    argv = ["upload", *map(str, warcs), "--identifier", ID, "--ia-endpoint", fake_ia.url, "-q"]
    assert main(argv) == 0
    assert "2 uploaded" in capsys.readouterr().out
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "0 uploaded" in out and "2 already there" in out and "verified" in out
    assert len(fake_ia.puts()) == 2


def test_the_endpoint_can_come_from_the_environment(fake_ia, warcs, monkeypatch, capsys):
    monkeypatch.setenv("ARCHIVER_IA_ENDPOINT", fake_ia.url)
    assert resolve_endpoint() == fake_ia.url
    assert main(["upload", str(warcs[0]), "--identifier", ID, "-q"]) == 0
    assert len(fake_ia.puts()) == 1


@pytest.mark.parametrize("bad", ["ftp://127.0.0.1", "127.0.0.1:8080", "http://127.0.0.1/?x=1"])
def test_a_bad_endpoint_url_is_a_usage_error(bad, fake_ia, warcs, capsys):
    assert main(["upload", str(warcs[0]), "--identifier", ID, "--ia-endpoint", bad, "-q"]) == 2
    assert "is not an endpoint URL" in capsys.readouterr().err


def test_with_an_endpoint_nothing_else_can_be_reached():
    session = make_session(KEYS, "http://127.0.0.1:9")
    for url in ("https://example.org/", "https://archive.org.example.net/x", "http://10.0.0.1/"):
        with pytest.raises(EndpointRefused, match="refused GET"):
            session.get(url)


def test_metadata_arguments_repeat_into_lists_and_bad_keys_are_refused():
    assert parse_metadata_args(["subject:a", "subject:b", "title:x: y"]) == {"subject": ["a", "b"], "title": "x: y"}
    for bad in ("subject", "Subject:x", "my key:x", "identifier:x", "title:"):
        with pytest.raises(Exception, match="--metadata"):
            parse_metadata_args([bad])


# ---- streaming ------------------------------------------------------------------------------------------------
def test_a_large_file_is_streamed_from_disk_not_held_in_memory(fake_ia, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(96 << 20)  # 96 MiB, sparse
    plan = plan_upload([big], ID)
    tracemalloc.start()
    try:
        report = send(fake_ia, plan)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.ok
    assert peak < 24 << 20, f"peak {peak / 2**20:.1f} MiB of Python allocations for a 96 MiB body"


def test_progress_is_told_per_file_in_bytes(fake_ia, warcs):
    seen: dict[str, list[int]] = {}

    class Progress(UploadListener):
        def file_started(self, file, attempt):
            seen[file.name] = []

        def bytes_sent(self, file, sent):
            seen[file.name].append(sent)

    send(fake_ia, plan_upload(warcs, ID), listener=Progress())
    for path in warcs:
        assert seen[path.name][-1] == path.stat().st_size
        assert seen[path.name] == sorted(seen[path.name])


def test_without_an_endpoint_requests_go_to_ia_itself():
    from archiver.upload.endpoint import EndpointAdapter

    session = make_session(KEYS)
    s3 = session.get_adapter("https://s3.us.archive.org/item/file.warc.gz")
    assert isinstance(s3, EndpointAdapter) and s3.endpoint is None  # larger body writes, same destination
    metadata = session.get_adapter("https://archive.org/metadata/item")
    assert not isinstance(metadata, EndpointAdapter)  # the library's own, with its retries for GETs
    assert metadata.max_retries.total == 3
