"""The evaluation reports the Evaluate tab shows: folders `neeko eval` wrote, as plain data."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)/]+\.png)\)")  # a plot next to report.md
FILE_ROUTE = "/gradio_api/file="  # how Gradio serves a file from its allowed paths
NO_REPORTS = ("_No evaluation report yet. Run `neeko eval` (see the README's evaluation "
              "section); its report appears here._")


def list_reports(reports_dir: Path) -> list[tuple[str, str]]:
    """(label, folder) of every report under `reports_dir`, newest first. A folder counts
    when it holds a readable results.json and a report.md."""
    found = []
    for folder in reports_dir.iterdir() if reports_dir.is_dir() else []:
        meta = _meta(folder)
        if meta is not None and (folder / "report.md").is_file():
            found.append((folder.stat().st_mtime, _label(folder.name, meta), str(folder)))
    return [(label, path) for _, label, path in sorted(found, reverse=True)]


def report_markdown(folder: str | Path | None) -> str:
    """The report in `folder`, its plots linked through Gradio's file route (the app
    allows the reports folder)."""
    if not folder:
        return NO_REPORTS
    folder = Path(folder).resolve()
    try:
        text = (folder / "report.md").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return f"_Cannot read the report in {folder.name}: {err}_"

    def served(link: re.Match) -> str:
        return f"![{link[1]}]({FILE_ROUTE}{quote(str(folder / link[2]))})"

    return IMAGE_LINK.sub(served, text)


def _meta(folder: Path) -> dict | None:
    try:
        results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    meta = results.get("meta") if isinstance(results, dict) else None
    return meta if isinstance(meta, dict) else None


def _label(name: str, meta: dict) -> str:
    systems = meta.get("systems")
    if isinstance(systems, list) and systems:
        return f"{name} ({', '.join(map(str, systems))})"
    return name
