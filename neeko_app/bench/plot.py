"""One figure of the saved benchmark results: switching, mixed batch, scale, the compiled
step, throughput."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: nothing global, no display needed

from neeko_app.storage import atomic_write_bytes


def summary_plot(results: dict[str, dict]) -> bytes:
    """PNG of whichever of the benchmarks are in `results` (by name)."""
    panels = [name for name in _PANELS if name in results]
    if not panels:
        raise ValueError("no benchmark results to plot")
    columns = min(2, len(panels))
    rows = (len(panels) + 1) // 2
    figure = Figure(figsize=(7.5 * columns, 4.6 * rows), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False).flatten()
    for axes, name in zip(grid, panels, strict=False):
        _PANELS[name](axes, results[name])
    for axes in grid[len(panels):]:
        axes.set_visible(False)
    first = results[panels[0]]["machine"]
    figure.suptitle(f"{first.get('gpu') or first['cpu']}, {first['date'][:10]}")
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _switching(axes, result: dict) -> None:
    rows = result["rows"]
    axes.barh([r["method"] for r in rows], [r["ms_per_switch"] for r in rows], color="#4c72b0")
    axes.set_xscale("log")
    axes.invert_yaxis()
    axes.set_xlabel("ms per switch (log)")
    axes.set_title("Switching character")


def _mixed_batch(axes, result: dict) -> None:
    rows = result["rows"]
    names = [r["case"] for r in rows]
    positions = range(len(rows))
    axes.barh([p - 0.2 for p in positions], [r["prefill_x_bare"] for r in rows], height=0.4,
              label="prefill", color="#dd8452")
    axes.barh([p + 0.2 for p in positions], [r["decode_x_bare"] for r in rows], height=0.4,
              label="decode", color="#4c72b0")
    axes.set_yticks(list(positions), names)
    axes.invert_yaxis()
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel("time / bare base")
    axes.set_title(f"Batch of {result['settings']['batch']}")
    axes.legend()


def _scale(axes, result: dict) -> None:
    rows = result["rows"]
    counts = [r["characters"] for r in rows]
    for key, label in (("bare_ms_per_token", "bare base"), ("ours_ms_per_token", "ours (fused)"),
                       ("dense_ms_per_token", "dense (paper)")):
        axes.plot(counts, [r[key] for r in rows], marker="o", label=label)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("characters loaded")
    axes.set_ylabel("decode ms per token")
    axes.set_title("Scale in characters")
    axes.legend()


def _compiled_step(axes, result: dict) -> None:
    rows = result["rows"]
    axes.barh([r["case"] for r in rows], [r["x_memory_limit"] for r in rows], color="#8172b3")
    axes.invert_yaxis()
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xlabel("decode step / memory-bound limit of the bare step")
    axes.set_title(f"Eager and compiled, batch of {result['settings']['batch']}")


def _end_to_end(axes, result: dict) -> None:
    rows = [r for r in result["rows"] if r["what"].startswith("throughput")]
    axes.bar([r["what"].split(", ")[1].split(" ")[0] for r in rows], [r["value"] for r in rows],
             color="#55a868")
    axes.set_xlabel("sessions asking at once")
    axes.set_ylabel("tokens/s, all sessions")
    axes.set_title("Chat throughput (embedded model)")


_PANELS = {"switching": _switching, "mixed_batch": _mixed_batch, "scale": _scale,
           "compiled_step": _compiled_step, "end_to_end": _end_to_end}


def write_summary_plot(results: dict[str, dict], path: Path) -> Path:
    """Write `summary_plot(results)` to `path` atomically."""
    atomic_write_bytes(path, summary_plot(results))
    return path
