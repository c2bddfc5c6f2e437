"""Reading JSON Lines files with errors that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

MAX_JSONL_BYTES = 20 * 1024 * 1024


def jsonl_records(path: str | Path, error: type[ValueError],
                  max_bytes: int = MAX_JSONL_BYTES) -> Iterator[tuple[str, object]]:
    """Each non-blank line of `path` parsed as JSON, with `"<file> line <n>"` to name it in
    errors; `error` is raised for a missing, oversized, non-UTF-8 file or a line that is
    not JSON."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path} does not exist")
    if path.stat().st_size > max_bytes:
        raise error(f"{path} is larger than {max_bytes >> 20} MiB")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise error(f"{path} is not UTF-8 text") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as err:
            raise error(f"{where}: not JSON ({err.msg})") from None
