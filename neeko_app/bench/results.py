"""A benchmark's result: rows of measured figures, printed as a table and saved as JSON."""

from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neeko_app.compute_threads import ALL_CORES
from neeko_app.storage import atomic_write_json


def machine(device: torch.device) -> dict[str, Any]:
    """What the figures were measured on."""
    info: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": ALL_CORES,  # the process's count (end-to-end's main thread has 1)
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass
class BenchResult:
    """One benchmark run: its settings, its rows (dicts with the same keys) and notes."""

    name: str
    title: str
    settings: dict[str, Any]
    machine: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **row: Any) -> None:
        self.rows.append(row)

    def table(self) -> str:
        """The rows as a Markdown table (numbers rounded for reading; the JSON keeps all)."""
        if not self.rows:
            return "(no rows)"
        columns = list(dict.fromkeys(key for row in self.rows for key in row))
        lines = ["| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
        lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |"
                  for row in self.rows]
        return "\n".join(lines)

    def report(self) -> str:
        where = self.machine.get("gpu") or self.machine["cpu"]
        head = (f"{self.title}\n{where}, {self.machine['torch_threads']} threads, "
                f"torch {self.machine['torch']}, {self.machine['date']}")
        settings = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return "\n".join([head, settings, "", self.table(), *self.notes])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "settings": self.settings,
                "machine": self.machine, "rows": self.rows, "notes": self.notes}

    def save(self, directory: Path) -> Path:
        """Write `<directory>/<name>-<device type>.json` atomically; returns the path."""
        path = Path(directory) / f"{self.name}-{self.machine['device'].split(':')[0]}.json"
        atomic_write_json(path, self.to_dict())
        return path


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)
