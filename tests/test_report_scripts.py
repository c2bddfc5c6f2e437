"""The scripts kept under reports/ reproduce finished experiments. None may rot silently:
each still imports against today's app (without running, loading a model or changing the
app's modules), and each report folder says in its README what it asked, how and what came
out. Tools still in use live in neeko_app/evaluation/ and benchmarks/, with their own tests."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import pytest

import neeko_app.embedding
import neeko_app.model
import neeko_app.model.loader
import neeko_app.runtime
from neeko_app.config import PROJECT_ROOT

REPORTS = PROJECT_ROOT / "reports"
FOLDERS = sorted(p for p in REPORTS.iterdir() if p.is_dir() and p.name != "latest")
SCRIPTS = sorted(REPORTS.glob("*/**/*.py"))


def name_of(path: Path) -> str:
    return str(path.relative_to(REPORTS))


def has_main_guard(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
               and ast.unparse(node.test).replace("'", '"') == '__name__ == "__main__"'
               for node in tree.body)


def app_imports(tree: ast.Module) -> list[str]:
    """The neeko_app modules a script imports at its top level."""
    names = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("neeko_app"):
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names if a.name.startswith("neeko_app")]
    return names


def app_state() -> dict[str, dict[str, object]]:
    return {name: dict(vars(module)) for name, module in list(sys.modules.items())
            if name.startswith("neeko_app") and isinstance(module, types.ModuleType)}


def test_every_report_folder_has_a_readme_naming_its_scripts():
    assert FOLDERS, REPORTS
    for folder in FOLDERS:
        readme = folder / "README.md"
        assert readme.is_file(), f"{folder.name} has no README.md"
        text = readme.read_text(encoding="utf-8")
        for script in folder.glob("*.py"):
            assert script.name in text, f"{folder.name}/README.md does not name {script.name}"


def test_the_knowledge_scripts_are_among_those_checked():
    assert {"quiz_curve.py", "unseen_replies.py"} <= {p.name for p in SCRIPTS}


@pytest.mark.parametrize("path", SCRIPTS, ids=name_of)
def test_a_report_script_imports_without_running(path, monkeypatch):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    assert has_main_guard(tree), f"{name_of(path)}: no `if __name__ == \"__main__\":` guard"
    for module in app_imports(tree):  # an import error here: the script uses a removed name
        importlib.import_module(module)

    def no_model(*args, **kwargs):
        raise AssertionError(f"{name_of(path)} loads a model when imported")

    for module, name in ((neeko_app.runtime, "load_runtime"),
                         (neeko_app.model, "load_base_model"),
                         (neeko_app.model.loader, "load_base_model"),
                         (neeko_app.embedding, "sentence_encoder")):
        monkeypatch.setattr(module, name, no_model)
    before = app_state()

    spec = importlib.util.spec_from_file_location(f"report_script_{path.stem}", path)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)
    spec.loader.exec_module(script)

    after = app_state()
    changed = [f"{name}.{key}" for name, names in before.items()
               for key, value in after[name].items()
               if key in names and names[key] is not value
               or key not in names and not isinstance(value, types.ModuleType)]
    assert not changed, f"importing {name_of(path)} changed the app: {changed}"
