"""With a site module: its verdicts on content are errors, its completeness problems become findings, and a
bug in it is a finding, not a traceback."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from warc_factory import ARXIV_BLOCK_PAGE, PDF, capture, warcinfo, write_warc

from archiver.sites.base import REJECT, Capture, Item, Problem, Site, Verdict
from archiver.warc.check import check_file, check_files

ABS_BODY = (b"<html><head><title>On the Opportunities and Risks</title></head><body>"
            b"<div class='submission-history'>[v1] Mon, 16 Aug 2021 [v2] Tue, 12 Jul 2022</div></body></html>")


class PaperSite(Site):
    """A tiny site module: abs pages are wanted whole; every listed PDF must be captured."""

    name = "paper"

    def classify(self, url: str, status: int, headers: Mapping[str, str], head: bytes) -> Verdict | None:
        if b"Sorry, this paper is embargoed" in head:
            return Verdict(REJECT, "embargoed", "the publisher's embargo page, not the paper")
        return super().classify(url, status, headers, head)

    def wants_body(self, url: str) -> bool:
        return "/abs/" in url

    def completeness(self, captures: Iterable[Capture], items: Iterable[Item] | None = None) -> list[Problem]:
        captures = list(captures)
        problems = []
        for c in captures:
            if "/abs/" in c.url and c.body is not None:
                for n in (1, 2):
                    if n > c.body.count(b"[v"):
                        continue
                    want = c.url.replace("/abs/", "/pdf/") + f"v{n}"
                    if not any(x.url == want and x.status == 200 and x.head.startswith(b"%PDF") for x in captures):
                        problems.append(Problem("missing-version-pdf", f"no PDF of v{n}", item="2108.07258",
                                                url=want))
        for item in items or ():
            if not any(item.name in c.url for c in captures):
                problems.append(Problem("item-not-captured", f"nothing of {item.name} was captured", "warning",
                                        item.name))
        return problems


class BrokenSite(Site):
    name = "broken"

    def classify(self, url: str, status: int, headers: Mapping[str, str], head: bytes) -> Verdict | None:
        raise KeyError("boom")

    def completeness(self, captures: Iterable[Capture], items: Iterable[Item] | None = None) -> list[Problem]:
        raise RuntimeError("completeness exploded")


def test_content_verdicts_are_warnings_without_a_site_and_errors_with_one(tmp_path: Path) -> None:
    recs = [warcinfo(), *capture("https://arxiv.org/pdf/2108.07258v2", ARXIV_BLOCK_PAGE, 403, reason="Forbidden")]
    path = write_warc(tmp_path / "b.warc.gz", recs)
    [plain] = check_file(path).findings
    [judged] = check_file(path, site=PaperSite()).findings
    assert (plain.code, plain.severity) == ("bot-block-page", "warning")
    assert (judged.code, judged.severity) == ("bot-block-page", "error")
    assert check_files([path]).ok and not check_files([path], site=PaperSite()).ok


def test_site_specific_verdicts_are_reported_with_the_site_code(tmp_path: Path) -> None:
    recs = [warcinfo(), *capture("https://journal.example/paper/1", b"<p>Sorry, this paper is embargoed</p>")]
    path = write_warc(tmp_path / "e.warc.gz", recs)
    assert check_file(path).findings == []
    assert [(f.code, f.severity) for f in check_file(path, site=PaperSite()).findings] == [("embargoed", "error")]


def test_captures_carry_status_type_head_and_wanted_bodies(tmp_path: Path) -> None:
    recs = [warcinfo(), *capture("https://arxiv.org/abs/2108.07258", ABS_BODY),
            *capture("https://arxiv.org/pdf/2108.07258v1", PDF, content_type="application/pdf; qs=0.001")]
    report = check_file(write_warc(tmp_path / "c.warc.gz", recs), site=PaperSite())
    abs_page, pdf = report.captures
    assert (abs_page.status, abs_page.content_type, abs_page.body) == (200, "text/html", ABS_BODY)
    assert (pdf.content_type, pdf.body, pdf.record_type) == ("application/pdf", None, "response")
    assert pdf.head == PDF[:8192] and pdf.filename == str(tmp_path / "c.warc.gz")


def test_gzip_encoded_heads_are_decoded_for_content_checks(tmp_path: Path) -> None:
    import gzip

    body = gzip.compress(ARXIV_BLOCK_PAGE)
    recs = [warcinfo(), *capture("https://arxiv.org/abs/2108.07258", body, 403, headers=[("Content-Encoding", "gzip")],
                                 reason="Forbidden")]
    report = check_file(write_warc(tmp_path / "g.warc.gz", recs), site=PaperSite())
    assert report.counts == {"bot-block-page": 1}
    assert report.captures[0].head == ARXIV_BLOCK_PAGE


def test_completeness_problems_become_set_level_findings(tmp_path: Path) -> None:
    first = write_warc(tmp_path / "1.warc.gz", [warcinfo(), *capture("https://arxiv.org/abs/2108.07258", ABS_BODY)])
    second = write_warc(tmp_path / "2.warc.gz", [warcinfo(), *capture("https://arxiv.org/pdf/2108.07258v1", PDF,
                                                                      content_type="application/pdf")])
    report = check_files([first, second], site=PaperSite(), jobs=2,
                         items=[Item("paper", "2108.07258", "2108.07258"), Item("paper", "9999.99999", "x")])
    assert [(f.code, f.severity, f.url, f.file) for f in report.findings] == [
        ("missing-version-pdf", "error", "https://arxiv.org/pdf/2108.07258v2", None),
        ("item-not-captured", "warning", None, None)]
    assert "2108.07258" in report.findings[0].message
    assert not report.ok and report.exit_code == 1


def test_a_site_module_bug_is_a_finding_not_a_traceback(tmp_path: Path) -> None:
    path = write_warc(tmp_path / "s.warc.gz", [warcinfo(), *capture("https://example.org/x")])
    report = check_files([path], site=BrokenSite())
    codes = [f.code for f in report.all_findings()]
    assert codes == ["site-error", "site-error"]
    assert "KeyError" in report.all_findings()[0].message


def test_arxiv_site_module_reports_a_version_whose_pdf_is_missing(tmp_path: Path) -> None:
    arxiv = pytest.importorskip("archiver.sites.arxiv")
    from archiver.cli import main

    history = (b"<html><body><div class='dateline'>[Submitted on 16 Aug 2021 (v1), last revised 12 Jul 2022 "
               b"(this version, v2)]</div><div class='submission-history'><h2>Submission history</h2>"
               b"<strong><a href='/abs/2108.07258v1'>[v1]</a></strong> Mon, 16 Aug 2021 (4,409 KB)<br/>"
               b"<strong>[v2]</strong> Tue, 12 Jul 2022 (4,447 KB)<br/></div></body></html>")
    recs = [warcinfo()]
    for url in ("https://arxiv.org/abs/2108.07258", "https://arxiv.org/abs/2108.07258v1",
                "https://arxiv.org/abs/2108.07258v2"):
        recs += capture(url, history)
    recs += capture("https://arxiv.org/pdf/2108.07258v1", PDF, content_type="application/pdf")
    path = write_warc(tmp_path / "arxiv.warc.gz", recs)

    report = check_files([path], site=arxiv.ArxivSite())
    assert [(f.code, f.url) for f in report.findings] == [("missing-version-pdf",
                                                           "https://arxiv.org/pdf/2108.07258v2")]
    assert main(["check", "--site", "arxiv", str(path)]) == 1
    recs += capture("https://arxiv.org/pdf/2108.07258v2", PDF, content_type="application/pdf")
    assert main(["check", "--site", "arxiv", str(write_warc(tmp_path / "complete.warc.gz", recs))]) == 0
