"""Manifests: every problem named by file, line and key, all at once; the shipped manifests are valid.

The arxiv.org URLs here are data (parsed, validated, written into records), never contacted: tests that
fetch use the local fixture servers on 127.0.0.1.
"""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path

import pytest

from archiver.cli import main
from archiver.errors import UsageError
from archiver.manifest import ManifestError, load_manifest, parse_size

REPO = Path(__file__).resolve().parent.parent
MANIFESTS = REPO / "manifests"

VALID = """\
project: demo
site: arxiv
items:
  - 2108.07258
"""


def write(tmp_path: Path, text: str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    """The problem lines, with the file shown as its base name."""
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    return [str(p).replace(str(path.parent) + "/", "") for p in caught.value.problems]


# ---- valid manifests ------------------------------------------------------------------------------------------
def test_a_minimal_manifest_loads_with_canonical_items(tmp_path):
    m = load_manifest(write(tmp_path, """\
        project: demo
        site: arxiv
        items:
          - arxiv:2108.07258v2
          - https://arxiv.org/abs/1706.03762
          - hep-th/9901001
        """))
    assert (m.project, m.site) == ("demo", "arxiv")
    assert [i.name for i in m.items] == ["2108.07258", "1706.03762", "hep-th/9901001"]
    assert m.items[0].target == "arxiv:2108.07258v2"
    assert m.options == {}
    assert m.upload.identifier == "archiver_{project}_{timestamp}_{rand8}"
    assert m.origins["1706.03762"].endswith("m.yaml:5")


def test_ids_are_read_as_written_not_as_numbers(tmp_path):
    # Loaded as YAML, 1412.6980 is the float 1412.698: another paper.
    m = load_manifest(write(tmp_path, "project: demo\nsite: arxiv\nitems:\n  - 1412.6980\n"))
    assert [i.name for i in m.items] == ["1412.6980"]


def test_options_and_upload_are_converted(tmp_path):
    m = load_manifest(write(tmp_path, """\
        project: demo
        site: generic
        items: [https://example.org/a]
        options:
          delay: 0.5
          concurrency: 4
          base_url: https://example.org/
          include_source: false
          user_agent: test-agent
          warc_max_size: 5GiB
          max_size: 500M
          compress_level: 9
          timeout: 10
          ignore: ['\\?sort=', '/login']
          operator: Ada <ada@example.org>
        upload:
          identifier: "demo-{timestamp}"
          collection: opensource
          max_pack_size: 50GiB
          metadata:
            date: 2021-08-16
            subject: [arXiv, WARC]
            year: 2021
        """))
    assert m.options == {
        "delay": 0.5, "concurrency": 4, "base_url": "https://example.org", "include_source": False,
        "user_agent": "test-agent", "warc_max_size": 5 * 1024**3, "max_size": 500 * 1024**2,
        "compress_level": 9, "timeout": 10, "ignore": ("\\?sort=", "/login"), "operator": "Ada <ada@example.org>",
    }
    assert m.upload.collection == "opensource"
    assert m.upload.max_pack_size == 50 * 1024**3
    assert m.upload.metadata == {"date": "2021-08-16", "subject": ["arXiv", "WARC"], "year": "2021"}
    assert m.upload.identifier_for("demo", "20260101000000", "abcd1234") == "demo-20260101000000"


def test_an_empty_options_section_means_no_options(tmp_path):
    m = load_manifest(write(tmp_path, VALID + "options:\n  # delay: 3\nupload:\n"))
    assert m.options == {}


def test_items_file_is_read_relative_to_the_manifest_with_comments(tmp_path):
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "papers.txt").write_text(
        "# landmark papers\n\n1706.03762   # attention\n  1810.04805\n# 2005.14165\n", encoding="utf-8")
    m = load_manifest(write(tmp_path, """\
        project: demo
        site: arxiv
        items: [2108.07258]
        items_file: lists/papers.txt
        """))
    assert [i.name for i in m.items] == ["2108.07258", "1706.03762", "1810.04805"]
    assert m.origins["1810.04805"].endswith("lists/papers.txt:4")


@pytest.mark.parametrize("text, size", [(1000, 1000), ("512k", 512 * 1024), ("5GiB", 5 * 1024**3),
                                        ("100MB", 100 * 1024**2), ("1.5G", int(1.5 * 1024**3))])
def test_sizes_are_read_like_the_grab_command_reads_them(text, size):
    assert parse_size(text) == size


# ---- every kind of problem, with its file, line and key ------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("project: Foundation Models\nsite: arxiv\nitems: [2108.07258]\n",
     "m.yaml:1: project: 'Foundation Models' is not a slug (expected lower case letters"),
    ("site: arxiv\nitems: [2108.07258]\n", "m.yaml:1: project: missing (expected a project slug)"),
    ("project: demo\nitems: [2108.07258]\n", "m.yaml:1: site: missing (expected a site module)"),
    ("project: demo\nsite: arxive\nitems: [2108.07258]\n",
     "m.yaml:2: site: 'arxive' is not a site module (did you mean 'arxiv'? expected one of: arxiv, generic)"),
    ("project: demo\nsite: arxiv\n", "m.yaml:1: items: missing (expected `items`, a list, and/or `items_file`"),
    ("project: demo\nsite: arxiv\nitems: []\n", "m.yaml:3: items: the list is empty (expected at least one item)"),
    ("project: demo\nsite: arxiv\nitems: 2108.07258\n",
     "m.yaml:3: items: got '2108.07258' (expected a list of items, one per '- ' line)"),
    ("project: demo\nsite: arxiv\nitems:\n  - 2108.07258\n  -\n",
     "m.yaml:5: items[1]: got nothing (expected an item name)"),
    ("project: demo\nsite: arxiv\nitems:\n  - {id: 2108.07258}\n",
     "m.yaml:4: items[0]: got a mapping (expected an item name)"),
    (VALID + "project: other\n", "m.yaml:5: project: given twice (first on line 1; expected each key once)"),
    (VALID + "options:\n  delay: soon\n",
     "m.yaml:6: options.delay: 'soon' is not a number (expected seconds between requests to one host"),
    (VALID + "options:\n  delay: -1\n", "m.yaml:6: options.delay: -1 is less than 0"),
    (VALID + "options:\n  concurrency: 2.5\n", "m.yaml:6: options.concurrency: 2.5 is not a whole number"),
    (VALID + "options:\n  compress_level: 10\n",
     "m.yaml:6: options.compress_level: 10 is more than 9 (expected a gzip level from 0 (none) to 9"),
    (VALID + "options:\n  timeout: 0\n", "m.yaml:6: options.timeout: 0 is not more than 0 (expected seconds"),
    (VALID + "options:\n  include_source: maybe\n",
     "m.yaml:6: options.include_source: 'maybe' is not true or false (expected true or false)"),
    (VALID + "options:\n  warc_max_size: large\n",
     "m.yaml:6: options.warc_max_size: 'large' is not a size (expected a size such as 5GiB"),
    (VALID + "options:\n  base_url: ftp://mirror\n",
     "m.yaml:6: options.base_url: 'ftp://mirror' is not an http(s) URL"),
    (VALID + "options:\n  ignore:\n    - ok\n    - '(unclosed'\n",
     "m.yaml:8: options.ignore[1]: '(unclosed' is not a valid regular expression"),
    (VALID + "options:\n  ignore: /login\n",
     "m.yaml:6: options.ignore: got '/login' (expected a list of regular expressions)"),
    (VALID + "options: 3\n", "m.yaml:5: options: got '3' (expected a mapping of options settings)"),
    (VALID + "upload:\n  identifier: '{project}-{date}'\n",
     "m.yaml:6: upload.identifier: '{project}-{date}' uses {date}, which is not a placeholder"),
    (VALID + "upload:\n  identifier: 'my item {timestamp}'\n",
     "m.yaml:6: upload.identifier: 'my item {timestamp}' does not make an Internet Archive identifier"),
    (VALID + "upload:\n  identifier: '{project}-" + "x" * 97 + "'\n",
     "m.yaml:6: upload.identifier: makes 'demo-xxx"),
    (VALID + "upload:\n  collection: my collection\n",
     "m.yaml:6: upload.collection: 'my collection' is not a collection identifier"),
    (VALID + "upload:\n  metadata:\n    Title: x\n",
     "m.yaml:7: upload.metadata.Title: 'Title' is not a metadata name"),
    (VALID + "upload:\n  metadata:\n    subject: {a: b}\n",
     "m.yaml:7: upload.metadata.subject: got a mapping (expected text or a list of text)"),
    ("project: demo\nsite: [arxiv\n", "m.yaml:3: (YAML): "),
    ("- just\n- a list\n", "m.yaml:1: (top level): got a list (expected a mapping with project, site and items)"),
])
def test_each_problem_names_file_line_and_key(tmp_path, text, expected):
    found = problems(write(tmp_path, text))
    assert any(line.startswith(expected) for line in found), found


def test_an_empty_file_is_named(tmp_path):
    assert problems(write(tmp_path, "")) == ["m.yaml: (file): it is empty (expected a mapping with project, "
                                             "site and items)"]


def test_a_missing_file_is_named(tmp_path):
    assert problems(tmp_path / "nope.yaml") == ["nope.yaml: (file): no such file"]


def test_an_invalid_arxiv_id_gets_the_arxiv_modules_explanation(tmp_path):
    [line] = problems(write(tmp_path, "project: demo\nsite: arxiv\nitems:\n  - 2108.07258\n  - 2113.00001\n"))
    assert line.startswith("m.yaml:5: items[1]: '2113.00001' is not a valid arXiv id: month 13 does not exist")
    assert "Valid ids look like" in line


def test_a_bad_url_for_the_generic_module_is_explained(tmp_path):
    [line] = problems(write(tmp_path, "project: demo\nsite: generic\nitems: [example.org]\n"))
    assert line.startswith("m.yaml:3: items[0]: 'example.org' is not an http(s) URL")


# ---- unknown keys ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("project: demo\nsite: arxiv\nitem: [2108.07258]\n", "m.yaml:3: item: unknown key (did you mean 'items'?"),
    (VALID + "options:\n  dealy: 3\n", "m.yaml:6: options.dealy: unknown key (did you mean 'delay'?"),
    (VALID + "upload:\n  colection: x\n", "m.yaml:6: upload.colection: unknown key (did you mean 'collection'?"),
    (VALID + "schedule: nightly\n", "m.yaml:5: schedule: unknown key (expected one of: project, site,"),
])
def test_unknown_keys_are_errors_with_a_suggestion(tmp_path, text, expected):
    found = problems(write(tmp_path, text))
    assert any(line.startswith(expected) for line in found), found


# ---- all at once, duplicates, items_file ---------------------------------------------------------------------
def test_every_problem_is_listed_at_once_in_line_order(tmp_path):
    (tmp_path / "more.txt").write_text("1706.03762\nbogus\n2108.07258v3\n", encoding="utf-8")
    path = write(tmp_path, """\
        project: Demo
        site: arxiv
        items:
          - 2108.0725
          - 2108.07258
          - 1810.4805
        items_file: more.txt
        options:
          delay: x
          concurrncy: 2
        """)
    found = problems(path)
    assert [line.split(": ", 2)[:2] for line in found] == [
        ["m.yaml:1", "project"],
        ["m.yaml:4", "items[0]"],
        ["m.yaml:6", "items[2]"],
        ["m.yaml:9", "options.delay"],
        ["m.yaml:10", "options.concurrncy"],
        ["more.txt:2", "item"],
        ["more.txt:3", "item"],
    ]
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    assert str(caught.value).startswith(f"{path} is not a valid manifest (7 problems):\n")
    assert isinstance(caught.value, UsageError)


def test_duplicates_are_found_after_normalisation_with_both_lines(tmp_path):
    found = problems(write(tmp_path, """\
        project: demo
        site: arxiv
        items:
          - 2108.07258
          - 1706.03762
          - arxiv:2108.07258v2
          - https://arxiv.org/pdf/1706.03762v5
        """))
    assert found == [
        "m.yaml:6: items[2]: 'arxiv:2108.07258v2' is the same item as '2108.07258' on line 4 "
        "(arxiv:2108.07258; expected each item once)",
        "m.yaml:7: items[3]: 'https://arxiv.org/pdf/1706.03762v5' is the same item as '1706.03762' on line 5 "
        "(arxiv:1706.03762; expected each item once)",
    ]


def test_duplicates_across_items_and_items_file_name_both_files(tmp_path):
    (tmp_path / "list.txt").write_text("# one\n2108.07258v1\n", encoding="utf-8")
    found = problems(write(tmp_path, VALID + "items_file: list.txt\n"))
    assert found == ["list.txt:2: item: '2108.07258v1' is the same item as '2108.07258' on m.yaml:4 "
                     "(arxiv:2108.07258; expected each item once)"]


def test_a_missing_items_file_is_reported_at_its_key(tmp_path):
    found = problems(write(tmp_path, VALID + "items_file: nowhere.txt\n"))
    assert len(found) == 1
    assert re.match(r"m\.yaml:5: items_file: .*nowhere\.txt does not exist \(expected a file relative", found[0])


def test_an_items_file_with_only_comments_is_reported(tmp_path):
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n", encoding="utf-8")
    found = problems(write(tmp_path, "project: demo\nsite: arxiv\nitems_file: empty.txt\n"))
    assert found[0].startswith("m.yaml:3: items_file: ") and "lists no items" in found[0]


# ---- the shipped manifests and the CLI -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["foundation-models.yaml", "arxiv-landmarks.yaml"])
def test_the_shipped_manifests_are_valid(name):
    m = load_manifest(MANIFESTS / name)
    assert m.site == "arxiv"
    assert "2108.07258" in [i.name for i in m.items]


def test_the_landmarks_hold_the_heavily_revised_papers():
    names = {i.name for i in load_manifest(MANIFESTS / "arxiv-landmarks.yaml").items}
    assert {"1706.03762", "1810.04805", "2005.14165", "1412.6980", "2108.07258"} <= names


def test_the_readme_example_is_valid(tmp_path):
    readme = (MANIFESTS / "README.md").read_text(encoding="utf-8")
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    shutil.copy(MANIFESTS / "arxiv-landmarks.txt", tmp_path)
    m = load_manifest(write(tmp_path, example))
    assert m.project == "arxiv-landmarks"


def test_manifest_check_prints_a_summary_and_exits_0(capsys):
    assert main(["manifest", "check", str(MANIFESTS / "foundation-models.yaml")]) == 0
    out = capsys.readouterr().out
    assert "valid: project foundation-models, site arxiv, 1 item" in out


def test_manifest_check_lists_the_problems_and_exits_2(tmp_path, capsys):
    bad = write(tmp_path, "project: demo\nsite: arxiv\nitems: [2108.0725]\noptions: {dealy: 3}\n")
    assert main(["manifest", "check", str(MANIFESTS / "foundation-models.yaml"), str(bad)]) == 2
    captured = capsys.readouterr()
    assert "foundation-models" in captured.out
    assert f"{bad}:3: items[0]:" in captured.err
    assert f"{bad}:4: options.dealy: unknown key (did you mean 'delay'?" in captured.err
