"""The report of a scripted run: `results.json`, a Markdown summary and matplotlib plots."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: nothing global, no display needed

from neeko_app.evaluation.scoring import Scores
from neeko_app.storage import atomic_write_bytes, atomic_write_json, atomic_write_text

SUMMARY_COLUMNS = [
    ("role_identification", "role-ID"), ("relevance", "relevance"),
    ("expectation_pass_rate", "expectations met"), ("first_person", "first person"),
    ("distinct_1", "distinct-1"), ("distinct_2", "distinct-2"), ("looping", "looping"),
    ("mean_words", "words"), ("tokens_per_second", "tokens/s per reply"),
]


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
    lines += ["", "Role identification per character", "",
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
    figure.tight_layout()
    buffer = BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


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
                 meta: dict, judged: dict[str, dict[str, float | int]] | None = None
                 ) -> list[Path]:
    """results.json, report.md and role-identification.png in `out_dir`; the paths."""
    results = {"meta": meta, "scores": {system: {group: scores.to_dict()
                                                 for group, scores in groups.items()}
                                        for system, groups in table.items()},
               "judge": judged}
    paths = [out_dir / "results.json", out_dir / "report.md",
             out_dir / "role-identification.png"]
    atomic_write_json(paths[0], results)
    judge_part = (f"\nLLM judge ({meta.get('judge')}), 1-7\n\n{judge_table(judged)}"
                  if judged else "")
    atomic_write_text(paths[1], markdown_report(table, title) + judge_part
                      + "\n![role identification](role-identification.png)\n")
    atomic_write_bytes(paths[2], role_plot(table))
    return paths


def _cell(value: float | int | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)

