"""Atomic writes keep the permissions a plain write would give."""

from __future__ import annotations

import os
import stat

from neeko_app.storage import atomic_write_json, atomic_write_text


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def test_a_new_file_gets_the_umask_permissions_not_the_temp_files(tmp_path):
    path = tmp_path / "report.json"
    atomic_write_json(path, {"ok": True})
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~current_umask()
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives, for comparison
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_replacing_a_file_keeps_its_permissions_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "notes.md"
    atomic_write_text(path, "first")
    path.chmod(0o640)
    atomic_write_text(path, "second")
    assert path.read_text() == "second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["notes.md"]
