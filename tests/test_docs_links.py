"""Every relative link and image in the README, docs/ and the report READMEs points at a file
or folder that exists, and every table of measured numbers in the results documents sits in
a section that links to the committed data it comes from (no model, no network)."""

from __future__ import annotations

import re
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                    *(ROOT / "reports").glob("*/README.md")])

# [text](target) and ![alt](target), with an optional "title"; the text may hold `code`.
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]"
                         r"\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
# [label]: target reference definitions at the start of a line.
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\".*\")?\s*$", re.MULTILINE)
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
EXTERNAL = ("http://", "https://", "mailto:")
# The documents that report measurements; their tables of numbers must link to data.
RESULTS = [ROOT / "README.md", ROOT / "docs" / "performance.md", ROOT / "docs" / "experiments.md"]
# Where committed measurements live: a report folder or a file in one, and the benchmark results.
REPORTS, BENCHMARK_RESULTS = ROOT / "reports", ROOT / "benchmarks" / "results"
HEADING = re.compile(r"^#{1,6} ", re.MULTILINE)
# A measured figure in a table cell: a decimal, a percentage or a ratio (×1.19).
MEASURED = re.compile(r"\d\.\d|\d ?%|×\s?\d")


def links(text: str) -> list[str]:
    """The link targets of Markdown `text`, outside fenced code blocks and code spans."""
    text = FENCE.sub("", text)
    # A code span inside link text ([`x`](y)) must keep its link; elsewhere drop it.
    text = CODE_SPAN.sub(lambda m: "code", text)
    return INLINE_LINK.findall(text) + REFERENCE.findall(text)


def relative_targets(document: Path) -> list[str]:
    targets = []
    for target in links(document.read_text(encoding="utf-8")):
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        targets.append(target)
    return targets


def test_documents_are_found():
    assert ROOT / "README.md" in DOCUMENTS
    assert any(d.parent.name == "docs" for d in DOCUMENTS)


def test_link_parser():
    text = ("See [a](docs/a.md#part), ![img](assets/x.png \"title\"), [`code`](b/),\n"
            "[web](https://example.com), [top](#top), `[not](a-link.md)`.\n"
            "```\n[inside](fence.md)\n```\n[ref]: c.md\n")
    assert links(text) == ["docs/a.md#part", "assets/x.png", "b/", "https://example.com",
                           "#top", "c.md"]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: str(d.relative_to(ROOT)))
def test_relative_links_exist(document: Path):
    missing = []
    for target in relative_targets(document):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not path:
            continue
        if not (document.parent / path).exists():
            missing.append(target)
    assert not missing, f"{document.relative_to(ROOT)} links to missing files: {missing}"


def sections(text: str) -> list[str]:
    """`text` outside fenced code, cut before every heading (a `# comment` in a fence is none)."""
    text = FENCE.sub("", text)
    starts = [0, *(m.start() for m in HEADING.finditer(text)), len(text)]
    return [text[a:b] for a, b in pairwise(starts) if b > a]


def has_measured_table(section: str) -> bool:
    """Whether a Markdown table in `section` has a measured figure in a body row."""
    rows = [line for line in section.splitlines() if line.lstrip().startswith("|")]
    body = [r for r in rows if not re.fullmatch(r"[\s|:-]+", r)][1:]  # past header, rule
    return any(MEASURED.search(CODE_SPAN.sub("", row)) for row in body)


def links_data(section: str, document: Path) -> bool:
    """Whether `section` links to a committed report folder or file, or a benchmark result."""
    for target in links(section):
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        path = (document.parent / target.split("#", 1)[0]).resolve()
        in_report = path.is_relative_to(REPORTS) and path != REPORTS
        if path.exists() and (in_report or path.is_relative_to(BENCHMARK_RESULTS)):
            return True
    return False


def test_section_helpers():
    text = ("# Top\n\n| a | b |\n| --- | --- |\n| speed | 1.5 s |\n\n"
            "## Data\n\nSee [run](reports/x/).\n\n```bash\n# not a heading\n```\n")
    top, data = sections(text)
    assert has_measured_table(top) and not has_measured_table(data)
    assert not has_measured_table("| `--lr` [3e-4] | 0.5 in code is `0.5` |\n| --- | --- |\n"
                                  "| `x 1.5` | none |\n")
    assert "not a heading" not in data


@pytest.mark.parametrize("document", RESULTS, ids=lambda d: str(d.relative_to(ROOT)))
def test_measured_tables_link_their_data(document: Path):
    unlinked = [s.splitlines()[0] for s in sections(document.read_text(encoding="utf-8"))
                if has_measured_table(s) and not links_data(s, document)]
    assert not unlinked, (f"{document.relative_to(ROOT)}: tables of measured numbers in a "
                          f"section without a link to reports/ or benchmarks/results/: {unlinked}")


def test_every_experiment_names_its_data():
    """Each experiment entry links its data, or says plainly that the data were not kept."""
    document = ROOT / "docs" / "experiments.md"
    entries = [s for s in sections(document.read_text(encoding="utf-8")) if s.startswith("## ")]
    assert entries
    bare = [s.splitlines()[0] for s in entries
            if not links_data(s, document) and "not kept" not in s]
    assert not bare, f"experiments without a data link or a 'not kept' note: {bare}"
