"""Export characters' blocks as PEFT LoRA adapters for a multi-LoRA model server.

The files get the permissions of every other file the app writes (`storage`): those of a
plain write under the umask (0644 with the usual 022). A model server running as another
user reads them unless the umask forbids it; export under the umask you want it to have.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from neeko_app.config import Settings
from neeko_app.model import BaseModel
from neeko_app.moelora import NeekoModel
from neeko_app.moelora.peft_export import export_peft
from neeko_app.moelora.serving_lines import launch_lines, readme
from neeko_app.runtime import Runtime, load_runtime
from neeko_app.storage import atomic_write_text

FUSION_REASON = "no trained block (a fusion character)"


@dataclass
class ExportReport:
    """What `export_all` wrote and left out, and the base model the adapters need."""

    directory: Path
    base_model: str
    rank: int
    adapters: dict[str, Path]
    skipped: dict[str, str]

    def lines(self) -> list[str]:
        """The summary and launch lines printed by `neeko export --all`."""
        out = [f"exported {len(self.adapters)} adapters to {self.directory}: "
               + ", ".join(self.adapters)]
        out += [f"skipped {slug}: {reason}; model servers serve trained adapters only (the "
                "app's remote mode sends it to the nearest trained character)"
                for slug, reason in self.skipped.items()]
        out += [f"wrote {self.directory / 'README.md'}", ""]
        return out + launch_lines(self.base_model, self.adapters, self.directory, self.rank)


def served_base_model(base: BaseModel) -> str:
    """The base a model server must load: the folder of the exact weights the blocks were
    trained on (for the embedded model, its converted copy), else the model's name."""
    return str(base.directory.resolve()) if base.directory else base.model_id


def run_export_command(settings: Settings, args: argparse.Namespace) -> int:
    """`neeko export`: write `args.character`'s adapter (or with --all every trained one's)
    to `args.peft`."""
    if bool(args.character) == args.all:
        raise ValueError("export takes a CHARACTER or --all, not both" if args.all else
                         "export needs a CHARACTER, or --all for every trained one")
    runtime = load_runtime(settings, serving=False)  # the blocks as trained, not rounded
    if args.all:
        print("\n".join(export_all(runtime, args.peft).lines()))
    else:
        path = export_character(runtime, args.character, args.peft)
        print(f"exported {args.character} to {path}")
    return 0


def export_character(runtime: Runtime, slug: str, directory: str | Path) -> Path:
    """Export `slug`'s block into `directory` (file by file, each write atomic)."""
    runtime.character(slug)
    if slug not in runtime.model.block_names:
        reason = runtime.problems.get(slug, FUSION_REASON)
        raise ValueError(f"{slug} has no trained block to export ({reason})")
    return export_peft(runtime.model, slug, directory, served_base_model(runtime.base))


def export_all(runtime: Runtime, directory: str | Path) -> ExportReport:
    """Export every trained character to `directory/<slug>` and write `directory/README.md`;
    characters without a loaded block are reported as skipped."""
    directory = Path(directory).resolve()
    base = served_base_model(runtime.base)
    names = runtime.model.block_names
    trained = [slug for slug in runtime.characters if slug in names]
    if not trained:
        raise ValueError("no character has a trained block to export")
    for slug in trained:
        _refuse_foreign(directory / slug)
    adapters = {slug: write_adapter(runtime.model, slug, directory / slug, base)
                for slug in trained}
    skipped = {slug: runtime.problems.get(slug, FUSION_REASON)
               for slug in runtime.characters if slug not in names}
    report = ExportReport(directory, base, runtime.model.config.rank, adapters, skipped)
    atomic_write_text(directory / "README.md",
                      readme(base, adapters, skipped, directory, report.rank))
    return report


def write_adapter(model: NeekoModel, name: str, target: Path, base: str) -> Path:
    """Export block `name` to the folder `target` all at once: it is written in a hidden
    sibling folder and renamed in, replacing an earlier export (never half an adapter)."""
    _refuse_foreign(target)
    staged = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    old = staged.with_suffix(".old")
    shutil.rmtree(staged, ignore_errors=True)
    try:
        export_peft(model, name, staged, base)
        if target.exists():
            target.rename(old)
        staged.rename(target)
    except BaseException:
        if old.exists() and not target.exists():
            old.rename(target)  # the earlier export stays
        raise
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def _refuse_foreign(target: Path) -> None:
    """ValueError when `target` exists but is not an adapter folder (it is not ours to replace)."""
    if target.exists() and not (target / "adapter_config.json").is_file():
        raise ValueError(f"{target} exists and is not an exported adapter; not replacing it")
