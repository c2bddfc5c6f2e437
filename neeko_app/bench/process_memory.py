"""The resident memory of a running process (Linux), for tests and load tests that watch a
server from outside."""

from __future__ import annotations

from pathlib import Path


def rss_mb(pid: int) -> float:
    """The resident memory of process `pid` in MB: VmRSS of /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} reports no VmRSS")
