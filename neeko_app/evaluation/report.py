"""The report of a scripted run: `results.json`, a Markdown summary and matplotlib plots."""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: nothing global, no display needed
from matplotlib.patches import Rectangle

from neeko_app.evaluation.incremental import IncrementalResult
from neeko_app.evaluation.scoring import Scores
from neeko_app.storage import atomic_write_bytes, atomic_write_json, atomic_write_text

SUMMARY_COLUMNS = [
    ("role_identification", "role-ID"), ("relevance", "relevance"),
    ("expectation_pass_rate", "expectations met"), ("first_person", "first person"),
    ("distinct_1", "distinct-1"), ("distinct_2", "distinct-2"), ("looping", "looping"),
    ("mean_words", "words"), ("tokens_per_second", "tokens/s per reply"),
]


@dataclass(frozen=True)
class PerplexityMatrix:
    """`values[i][j]`: perplexity of character i's held-out replies under block j."""

    characters: list[str]
    values: list[list[float]]
    conversations: int | None = None  # held-out conversations per character (None: all)


def markdown_report(table: dict[str, dict[str, Scores]], title: str) -> str:
    """A summary table per system, then role identification per character and system."""
    systems = list(table)
    lines = [f"# {title}", "", "| system | " + " | ".join(n for _, n in SUMMARY_COLUMNS)
             + " |", "|---" * (len(SUMMARY_COLUMNS) + 1) + "|"]
    for system in systems:
        overall = table[system]["overall"].to_dict()
        lines.append(f"| {system} | " + " | ".join(_cell(overall[key])
                                                  for key, _ in SUMMARY_COLUMNS) + " |")
    characters = sorted({c for scores in table.values() for c in scores if c != "overall"})
    lines += ["", "## Role identification per character", "",
              "| character | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
    for character in characters:
        cells = [_cell(table[s][character].role_identification) if character in table[s]
                 else "–" for s in systems]
        lines.append(f"| {character} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def role_plot(table: dict[str, dict[str, Scores]]) -> bytes:
    """PNG: role identification per character, one bar per system."""
    systems = list(table)
    characters = sorted({c for scores in table.values() for c in scores if c != "overall"})
    width = 0.8 / max(1, len(systems))
    figure = Figure(figsize=(1.2 * len(characters) + 3, 4))
    axes = figure.subplots()
    for k, system in enumerate(systems):
        values = [table[system][c].role_identification if c in table[system] else 0.0
                  for c in characters]
        axes.bar([i + k * width for i in range(len(characters))], values, width, label=system)
    axes.set_xticks([i + width * (len(systems) - 1) / 2 for i in range(len(characters))],
                    characters, rotation=20)
    axes.set_ylim(0, 1)
    axes.set_ylabel("role identification")
    axes.legend()
    return _png(figure)


def perplexity_markdown(matrix: PerplexityMatrix) -> str:
    """The matrix as a table, the row minimum starred."""
    names = matrix.characters
    sets = f"{matrix.conversations} conversations each" if matrix.conversations else "all"
    lines = ["## Character separation", "",
             f"Perplexity of each character's held-out replies ({sets}, rows) under each "
             "block (columns); * marks the row minimum",
             "", "| data \\ block | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for name, row in zip(names, matrix.values, strict=True):
        low = min(row)
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}{'*' if v == low else ''}"
                                                for v in row) + " |")
    return "\n".join(lines) + "\n"


def perplexity_plot(matrix: PerplexityMatrix) -> bytes:
    """PNG heatmap of the perplexity matrix, each row's minimum boxed."""
    names, values = matrix.characters, matrix.values
    figure = Figure(figsize=(0.9 * len(names) + 3, 0.75 * len(names) + 2))
    axes = figure.subplots()
    image = axes.imshow(values, cmap="viridis_r")
    figure.colorbar(image, ax=axes, label="perplexity")
    axes.set_xticks(range(len(names)), names, rotation=30, ha="right")
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("block")
    axes.set_ylabel("held-out dialogues of")
    for i, row in enumerate(values):
        best = row.index(min(row))
        for j, value in enumerate(row):
            axes.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=8,
                      color="black" if j == best else "white",
                      fontweight="bold" if j == best else "normal")
        axes.add_patch(Rectangle((best - 0.5, i - 0.5), 1, 1, fill=False, color="red", lw=2))
    return _png(figure)


def incremental_markdown(result: IncrementalResult) -> str:
    """Before/after role identification of the pre-trained characters, the replay check,
    and fusion vs. expansion for the added character."""
    added = result.added
    lines = [f"## Incremental learning: {added} added by expansion", "",
             f"Role identification of the other characters' replies among themselves "
             f"(before {added} existed) and with {added} among the candidates (after):", "",
             "| character | before | after |", "|---|---|---|"]
    lines += [f"| {c} | {_cell(b)} | {_cell(result.after[c])} |"
              for c, b in result.before.items()]
    lines += ["", f"Replies regenerated with {added}'s block removed: {result.identical} of "
              f"{result.replayed} identical to the run's."]
    if result.fusion and result.expansion:
        lines += ["", f"{added} by fusion (the other blocks mixed by role similarity) vs. by "
                  "its own expansion block:", "",
                  "| | " + " | ".join(n for _, n in SUMMARY_COLUMNS) + " |",
                  "|---" * (len(SUMMARY_COLUMNS) + 1) + "|"]
        for label, scores in (("fusion", result.fusion), ("expansion", result.expansion)):
            row = scores.to_dict()
            lines.append(f"| {label} | " + " | ".join(_cell(row[key])
                                                     for key, _ in SUMMARY_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def incremental_plot(result: IncrementalResult) -> bytes:
    """PNG: before/after role identification per pre-trained character, and fusion vs.
    expansion for the added one."""
    panels = 2 if result.fusion and result.expansion else 1
    figure = Figure(figsize=(5 + 4 * panels, 4))
    axes = figure.subplots(1, panels, squeeze=False)[0]
    groups = list(result.before)
    positions = range(len(groups))
    axes[0].bar([i - 0.2 for i in positions], [result.before[g] for g in groups], 0.4,
                label=f"before {result.added}")
    axes[0].bar([i + 0.2 for i in positions], [result.after[g] for g in groups], 0.4,
                label=f"after {result.added}")
    axes[0].set_xticks(list(positions), groups, rotation=20)
    axes[0].set_ylim(0, 1)
    axes[0].set_ylabel("role identification")
    axes[0].legend()
    if panels == 2:
        metrics = [("role_identification", "role-ID"), ("relevance", "relevance"),
                   ("expectation_pass_rate", "expectations"), ("first_person", "first person")]
        for k, (label, scores) in enumerate((("fusion", result.fusion),
                                             ("expansion", result.expansion))):
            row = scores.to_dict()
            axes[1].bar([i + (k - 0.5) * 0.4 for i in range(len(metrics))],
                        [row[key] or 0.0 for key, _ in metrics], 0.4, label=label)
        axes[1].set_xticks(range(len(metrics)), [name for _, name in metrics])
        axes[1].set_ylim(0, 1)
        axes[1].set_title(result.added)
        axes[1].legend()
    return _png(figure)


def judge_table(judged: dict[str, dict[str, float | int]]) -> str:
    """The judge's mean scores (1-7) per system and criterion."""
    criteria = [c for c in next(iter(judged.values())) if c not in ("scored", "unusable")]
    lines = ["| system | " + " | ".join(criteria) + " | scored | unusable |",
             "|---" * (len(criteria) + 3) + "|"]
    for system, row in judged.items():
        lines.append(f"| {system} | " + " | ".join(_cell(row[c]) for c in criteria)
                     + f" | {row['scored']} | {row['unusable']} |")
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, table: dict[str, dict[str, Scores]], title: str,
                 meta: dict, judged: dict[str, dict[str, float | int]] | None = None,
                 perplexity: PerplexityMatrix | None = None,
                 incremental: IncrementalResult | None = None) -> list[Path]:
    """results.json, report.md and its PNG plots in `out_dir`; the paths written."""
    results = {"meta": meta, "scores": {system: {group: scores.to_dict()
                                                 for group, scores in groups.items()}
                                        for system, groups in table.items()},
               "judge": judged,
               "perplexity": vars(perplexity) if perplexity else None,
               "incremental": incremental.to_dict() if incremental else None}
    plots = {"role-identification.png": role_plot(table)}
    text = markdown_report(table, title) + "\n![role identification](role-identification.png)\n"
    if judged:
        text += f"\n## LLM judge ({meta.get('judge')}), 1-7\n\n{judge_table(judged)}"
    if perplexity:
        plots["perplexity.png"] = perplexity_plot(perplexity)
        text += "\n" + perplexity_markdown(perplexity) + "\n![perplexity](perplexity.png)\n"
    if incremental:
        plots["incremental.png"] = incremental_plot(incremental)
        text += ("\n" + incremental_markdown(incremental)
                 + "\n![incremental learning](incremental.png)\n")
    atomic_write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "report.md", text)
    for name, png in plots.items():
        atomic_write_bytes(out_dir / name, png)
    return [out_dir / "results.json", out_dir / "report.md", *(out_dir / n for n in plots)]


def _png(figure: Figure) -> bytes:
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def _cell(value: float | int | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)

