"""arXiv id parsing: every accepted shape, and every rule an invalid id can break, with the reason shown.

The arxiv.org URLs here are data (parsed, validated, written into records), never contacted: tests that
fetch use the local fixture servers on 127.0.0.1.
"""

from __future__ import annotations

import pytest

from archiver.errors import TargetError, UsageError
from archiver.sites.arxiv_ids import ArxivId, looks_like_arxiv, parse_arxiv_id, parse_arxiv_path

# (what the user typed, canonical versionless id, version, old style)
VALID = [
    # new style, and the edges of its 4- and 5-digit eras
    ("2108.07258", "2108.07258", None, False),
    ("2108.07258v2", "2108.07258", 2, False),
    ("2108.07258v12", "2108.07258", 12, False),
    ("2108.07258V2", "2108.07258", 2, False),  # arXiv itself 301s IDV2 to IDv2
    ("0704.0001", "0704.0001", None, False),  # the first new-style id
    ("1412.9999", "1412.9999", None, False),  # the last 4-digit month
    ("1501.00001", "1501.00001", None, False),  # the first 5-digit month
    ("  2108.07258  ", "2108.07258", None, False),
    # arxiv: prefix, any case
    ("arxiv:2108.07258", "2108.07258", None, False),
    ("arXiv:2108.07258v3", "2108.07258", 3, False),
    ("ARXIV:2108.07258", "2108.07258", None, False),
    # file-name suffixes
    ("2108.07258.pdf", "2108.07258", None, False),
    ("2108.07258v2.pdf", "2108.07258", 2, False),
    ("2108.07258v2.ps.gz", "2108.07258", 2, False),
    ("2108.07258.ps", "2108.07258", None, False),
    ("2108.07258.gz", "2108.07258", None, False),
    ("2108.07258v2.PDF", "2108.07258", 2, False),
    # old style: the subject class is dropped, the archive lower-cased
    ("hep-th/9901001", "hep-th/9901001", None, True),
    ("hep-th/9901001v2", "hep-th/9901001", 2, True),
    ("math.GT/0309136", "math/0309136", None, True),
    ("math.GT/0309136v1", "math/0309136", 1, True),
    ("HEP-TH/9901001", "hep-th/9901001", None, True),
    ("hep-th/9108001", "hep-th/9108001", None, True),  # 1991-08: the first old-style month
    ("cs/0703001", "cs/0703001", None, True),  # 2007-03: the last one
    ("arxiv:hep-th/9901001", "hep-th/9901001", None, True),
    ("cond-mat/0501001v3.pdf", "cond-mat/0501001", 3, True),
    ("hep-th//9901001", "hep-th/9901001", None, True),  # repeated slashes collapse
    # URLs
    ("https://arxiv.org/abs/2108.07258", "2108.07258", None, False),
    ("https://arxiv.org/abs/2108.07258v2", "2108.07258", 2, False),
    ("https://arxiv.org/pdf/2108.07258v2", "2108.07258", 2, False),
    ("https://arxiv.org/pdf/2108.07258.pdf", "2108.07258", None, False),
    ("https://arxiv.org/pdf/2108.07258v2.pdf", "2108.07258", 2, False),
    ("https://arxiv.org/html/2108.07258v3", "2108.07258", 3, False),
    ("https://arxiv.org/html/2108.07258v3/", "2108.07258", 3, False),
    ("https://arxiv.org/html/2108.07258v3/x1.png", "2108.07258", 3, False),
    ("https://arxiv.org/src/2108.07258v1/anc/data.csv", "2108.07258", 1, False),
    ("http://export.arxiv.org/abs/hep-th/9901001v2", "hep-th/9901001", 2, True),
    ("https://www.arxiv.org/abs/math.GT/0309136", "math/0309136", None, True),
    ("http://arxiv.org/abs/2108.07258", "2108.07258", None, False),
    ("arxiv.org/abs/2108.07258", "2108.07258", None, False),
    ("//arxiv.org/pdf/2108.07258v1", "2108.07258", 1, False),
    ("https://arxiv.org/abs/2108.07258v2?context=cs.PL", "2108.07258", 2, False),
    ("https://arxiv.org/abs/2108.07258#comments", "2108.07258", None, False),
    ("https://arxiv.org/abs?id=2108.07258", "2108.07258", None, False),
    ("https://arxiv.org/abs/arXiv:2108.07258", "2108.07258", None, False),
    ("https://arxiv.org/abs/2108.07258/", "2108.07258", None, False),
]

# (what the user typed, a fragment of the reason the error must give)
INVALID = [
    ("2113.07258", "month 13 does not exist"),
    ("2100.07258", "month 00 does not exist"),
    ("hep-th/9913001", "month 13 does not exist"),
    ("0703.1234", "arXiv began new-style ids in 2007-04 (0704)"),
    ("0612.12345", "arXiv began new-style ids in 2007-04 (0704)"),
    ("1412.12345", "5-digit numbers start in 2015 (1501)"),
    ("0704.00001", "5-digit numbers start in 2015 (1501)"),
    ("1501.1234", "have 5-digit numbers (YYMM.NNNNN), not 4"),
    ("2108.0725", "have 5-digit numbers (YYMM.NNNNN), not 4"),
    ("2108.072581", "have 5-digit numbers (YYMM.NNNNN), not 6"),
    ("1001.123", "have 4-digit numbers (YYMM.NNNN), not 3"),
    ("0704.0000", "paper numbers start at 0001"),
    ("2108.00000", "paper numbers start at 00001"),
    ("hep-th/9901000", "paper numbers start at 001"),
    ("21.07258", "starts with 4 digits, year and month (YYMM)"),
    ("9912.12345", "is in the future"),
    ("2108.07258v0", "versions start at v1"),
    ("2108.07258v02", "no leading zero"),
    ("2108.07258v", "'v' must be followed by a version number"),
    ("hep-th/9107001", "old-style ids run from 1991-08 (9108) to 2007-03 (0703)"),
    ("hep-th/0704001", "old-style ids run from 1991-08 (9108) to 2007-03 (0703)"),
    ("foo/9901001", "'foo' is not an arXiv archive"),
    ("stat/0601001", "'stat' is not an arXiv archive that had old-style ids"),
    ("hep-th/99010011", "3-digit numbers"),
    ("hep-th/990", "archive/YYMMNNN"),
    ("", "it is empty"),
    ("2108", "a new-style id has a dot"),
    ("hep-th", "needs '/' and the number"),
    ("2108.07258x", "unexpected 'x' after the id 2108.07258"),
    ("2108.07258.txt", "unexpected '.txt'"),
    ("hello world", "neither a new-style id"),
    ("https://arxiv.org/list/cs/new", "/list/cs/new is not a paper URL"),
    ("https://example.com/abs/2108.07258", "example.com is not an arXiv paper host"),
    ("https://ar5iv.labs.arxiv.org/html/2108.07258", "is not an arXiv paper host"),
    ("ftp://arxiv.org/abs/2108.07258", "only http and https"),
    ("https://arxiv.org/abs/", "missing the paper id"),
    ("https://arxiv.org/abs/2108.07258/extra", "unexpected '/extra'"),
    ("https://arxiv.org/abs/2113.07258", "month 13 does not exist"),
]


@pytest.mark.parametrize(("text", "canonical", "version", "old_style"), VALID)
def test_accepts_valid_ids_and_normalises_them(text: str, canonical: str, version: int | None, old_style: bool) -> None:
    aid = parse_arxiv_id(text)
    assert (aid.id, aid.version, aid.old_style) == (canonical, version, old_style)


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_rejects_invalid_ids_saying_why_and_what_valid_ones_look_like(text: str, reason: str) -> None:
    with pytest.raises(TargetError) as caught:
        parse_arxiv_id(text)
    message = str(caught.value)
    assert repr(text) in message  # the input, quoted
    assert reason in message
    for example in ("2108.07258", "2108.07258v2", "hep-th/9901001", "arxiv:2108.07258",
                    "https://arxiv.org/abs/2108.07258"):
        assert example in message


def test_target_errors_are_usage_errors_so_the_cli_exits_2() -> None:
    with pytest.raises(UsageError):
        parse_arxiv_id("2113.07258")


def test_arxiv_id_fields_and_properties() -> None:
    new = parse_arxiv_id("arxiv:2108.07258v2")
    assert new == ArxivId(id="2108.07258", version=2, old_style=False, archive="arxiv", yymm="2108")
    assert (new.year, new.month, new.number) == (2021, 8, "07258")
    assert str(new) == new.versioned == "2108.07258v2"
    assert str(new.with_version(None)) == "2108.07258"

    old = parse_arxiv_id("math.GT/0309136v1")
    assert (old.archive, old.yymm, old.year, old.month, old.number) == ("math", "0309", 2003, 9, "136")
    assert str(old) == "math/0309136v1"
    assert parse_arxiv_id("hep-th/9901001").year == 1999


def test_parse_arxiv_path_reads_the_path_of_a_mirror_url() -> None:
    assert parse_arxiv_path("/pdf/2108.07258v2").versioned == "2108.07258v2"
    assert parse_arxiv_path("/abs", "id=hep-th/9901001").id == "hep-th/9901001"
    with pytest.raises(TargetError, match="not an arXiv paper URL path"):
        parse_arxiv_path("/list/cs/new")


@pytest.mark.parametrize(("text", "expected"), [
    ("2108.07258", True),
    ("2113.07258", True),  # invalid, but clearly meant as an arXiv id: the user should hear why
    ("1412.12345v0", True),
    ("arXiv:anything", True),
    ("hep-th/9901001", True),
    ("math.GT/0309136", True),
    ("hep-th/99", True),
    ("https://arxiv.org/abs/2108.07258", True),
    ("http://export.arxiv.org/pdf/2108.07258v1", True),
    ("arxiv.org/abs/2108.0725", True),
    ("https://arxiv.org/list/cs/new", False),  # an arXiv page, but not a paper: the generic module's job
    ("https://info.arxiv.org/help/robots.html", False),
    ("https://example.com/abs/2108.07258", False),
    ("example.com/1234567", False),
    ("hello", False),
    ("", False),
])
def test_looks_like_arxiv(text: str, expected: bool) -> None:
    assert looks_like_arxiv(text) is expected
