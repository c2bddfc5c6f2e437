"""Every relative link and image in the README, docs/ and the report READMEs points at a file
or folder that exists (no model, no network)."""

from __future__ import annotations

import re
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
