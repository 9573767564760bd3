"""The project dashboard (GET /<project>/) in a real headless Chromium, driven by Selenium, against a real tracker
on 127.0.0.1 with each store: the page renders what the store holds, a completion made while it is open appears
without a reload, and a screenshot is taken.

Needs Debian's `chromium` and `chromium-driver` (apt-get install chromium chromium-driver; .ci/run installs them)
and the `selenium` package; without them the browser test is skipped and says which is missing. Selenium is
given both binaries, so it never looks for or downloads a browser. Set ARCHIVER_TEST_ARTIFACTS=DIR to keep the
screenshots there (they always go to the test's tmp_path too).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from fixtures.tracker_server import tracker_on_store
from test_tracker_api import VERSION, Server  # the same real server the API tests use

CHROMIUM = os.environ.get("ARCHIVER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("ARCHIVER_CHROMEDRIVER", "/usr/bin/chromedriver")
PAPERS = [f"2102.{n:05d}" for n in range(1, 13)]


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def tracker(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"dashboard-{request.param}")
    with tracker_on_store(request, request.param, root, "dashboard", Server) as server:
        yield server


@pytest.fixture
def browser(tmp_path, monkeypatch):
    """Headless Chromium with a fresh profile, nothing fetched from the network by Chromium or Selenium."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(path) and os.access(path, os.X_OK))]
    if missing:
        pytest.skip(f"the dashboard test needs a browser: {', '.join(missing)} missing (apt-get install chromium "
                    "chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="the dashboard test drives Chromium with selenium "
                                                                 "(pip install selenium)")
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager: never download a driver or a browser
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-extensions", "--disable-default-apps", "--window-size=1280,1500",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def finish(tracker: Server, slug: str, who: str, multi: int = 1, nbytes: int = 1000,
           version: str = VERSION) -> list[str]:
    answer = tracker.claim(slug, who, multi)
    r = tracker.done(slug, answer["item_name"], who, bytes={"data": nbytes}, version=version)
    assert (r.status_code, r.text) == (200, "OK")
    return answer["item_name"].split("\0")


def dashboard(tracker: Server, slug: str) -> dict:
    r = tracker.http.get(f"{tracker.base}/{slug}/dashboard.json")
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(what: str, check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"the dashboard did not show {what} within {timeout:g} s"
        time.sleep(0.1)


# Read in one script each: the page replaces its rows on every poll, so elements found one call earlier may be
# gone by the next.
def text(driver, element_id: str) -> str:
    return driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id)


def rows(driver, table_id: str) -> list[list[str]]:
    return driver.execute_script("return [...document.querySelectorAll('#' + arguments[0] + ' tbody tr')]"
                                 ".map(tr => [...tr.cells].map(td => td.textContent))", table_id)


def test_the_dashboard_shows_the_store_and_a_new_completion_appears_without_a_reload(tracker, browser, tmp_path,
                                                                                    request):
    slug = tracker.project(PAPERS, title="Dashboard test <b>project</b>")
    alice = finish(tracker, slug, "alice", multi=3, nbytes=3 * 1024 * 1024, version="20240101.10")
    finish(tracker, slug, "bob", multi=1, nbytes=5 * 1024 * 1024 * 1024, version="20240101.11")
    tracker.claim(slug, "carol")  # one claimed item
    failing = tracker.claim(slug, "dave")["item_name"]
    r = tracker.post(f"/{slug}/fail", {"downloader": "dave", "item": failing, "reason": "HTTP 503", "retry": False})
    assert r.status_code == 200, r.text

    browser.get(f"{tracker.base}/{slug}/")
    wait_for("the counts", lambda: text(browser, "count-done") == "4")
    assert [text(browser, f"count-{k}") for k in ("todo", "claimed", "done", "failed")] == ["6", "1", "4", "1"]
    assert text(browser, "title") == "Dashboard test <b>project</b>"  # as text, not markup
    assert text(browser, "bytes") == "5.00 GiB"
    assert text(browser, "downloaders") == "2"
    assert float(text(browser, "rate")) > 0
    leaders = rows(browser, "leaderboard")
    assert [r[1] for r in leaders] == ["bob", "alice"]  # by bytes
    assert leaders[1][2:] == ["3", "3.00 MiB"]
    browser.execute_script("document.getElementById('by-items').click()")
    assert [r[1] for r in rows(browser, "leaderboard")] == ["alice", "bob"]
    recent = rows(browser, "recent")
    assert [r[1] for r in recent] == ["bob", "alice"]
    assert recent[1][2] == " ".join(alice) and recent[1][4] == "20240101.10"
    assert sorted(r[0] for r in rows(browser, "versions")) == ["20240101.10", "20240101.11"]

    # The page polls: a completion made now shows up in place. A marker on the window proves it was not reloaded.
    browser.execute_script("window.notReloaded = true")
    [newest] = finish(tracker, slug, "erin", nbytes=12345, version="20240102.01")
    latest = wait_for("the new completion", lambda: (rows(browser, "recent") or [[""]])[0][2] == newest
                      and rows(browser, "recent")[0])
    assert latest[1] == "erin" and latest[4] == "20240102.01"
    assert text(browser, "count-done") == "5"
    assert browser.execute_script("return window.notReloaded") is True
    assert "erin" in [r[1] for r in rows(browser, "leaderboard")]

    shot = tmp_path / f"dashboard-{request.node.callspec.params['tracker']}.png"
    assert browser.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    keep = os.environ.get("ARCHIVER_TEST_ARTIFACTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    # Nothing the page did was refused (its Content-Security-Policy allows exactly its own script and style).
    problems = [e["message"] for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert not problems, problems


def test_the_page_is_static_with_a_strict_content_security_policy(tracker):
    slug = tracker.project(PAPERS[:1])
    r = tracker.http.get(f"{tracker.base}/{slug}/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    policy = r.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy and "script-src 'sha256-" in policy
    assert slug not in r.text  # nothing of the project is written into the page: it fetches dashboard.json
    assert tracker.http.get(f"{tracker.base}/nosuchproject/").status_code == 404
    assert tracker.http.get(f"{tracker.base}/nosuchproject/dashboard.json").json()["error"] == "unknown_project"


def test_the_snapshot_counts_items_per_minute_and_versions_of_active_downloaders(tracker):
    slug = tracker.project(PAPERS)
    empty = dashboard(tracker, slug)
    assert empty["counts"] == {"todo": 12, "claimed": 0, "done": 0, "failed": 0, "total": 12}
    assert empty["items_per_minute"] == 0 and empty["recent"] == [] and empty["leaderboard"] == []
    assert len(empty["chart"]["items"]) == 60

    finish(tracker, slug, "alice", multi=4, version="1.0")
    tracker.clock.advance(2)  # the shared snapshot is a second old at most: a new clock second, a new snapshot
    time.sleep(1.05)
    finish(tracker, slug, "bob", multi=2, version="1.1")
    time.sleep(1.05)
    now = dashboard(tracker, slug)
    assert now["counts"]["done"] == 6 and now["downloaders"] == 2
    assert 6 <= now["items_per_minute"] <= 6 * 60 / 50  # 6 items within the last minute's window
    assert sum(now["chart"]["items"]) == 6
    assert [(v["version"], v["downloaders"]) for v in now["versions"]] == [("1.0", 1), ("1.1", 1)]
    assert [(c["downloader"], c["items"]) for c in now["recent"]] == [("bob", 2), ("alice", 4)]
    assert now["recent"][1]["names"] == PAPERS[:4]

    tracker.clock.advance(3700)  # an hour on: the items have left the minute, the downloaders the active list
    time.sleep(1.05)
    later = dashboard(tracker, slug)
    assert later["items_per_minute"] == 0 and sum(later["chart"]["items"]) == 0 and later["versions"] == []
    assert later["counts"]["done"] == 6 and len(later["recent"]) == 2  # history stays
