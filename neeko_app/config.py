"""Settings: defaults, overridden by environment variables, overridden by CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("local", "openai")  # where replies are generated: this process, or a model server


def _default_root() -> Path:
    """The checkout (editable install) when it has `characters/`, else the working directory."""
    return PROJECT_ROOT if (PROJECT_ROOT / "characters").is_dir() else Path.cwd()


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "neeko-app"


@dataclass(frozen=True)
class Settings:
    """Where things live and which model runs where."""

    base_model: str = "embedded"  # "embedded", "tiny", or a local Hugging Face model directory
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    dtype: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU), "float32", "bfloat16", "float16"
    cache_dir: Path = field(default_factory=_default_cache)
    characters_dir: Path = field(default_factory=lambda: _default_root() / "characters")
    memory_dir: Path = field(default_factory=lambda: _default_root() / "memory")
    sessions_dir: Path = field(default_factory=lambda: _default_root() / "memory" / "sessions")
    reports_dir: Path = field(default_factory=lambda: _default_root() / "reports")
    chroma_url: str = ""  # empty: embedded store in memory_dir; else a `chroma run` server
    backend: str = "local"  # "local": this process generates; "openai": a model server does
    backend_url: str = ""  # the server's OpenAI-compatible base URL, e.g. http://gpu:8000/v1
    host: str = "127.0.0.1"
    port: int = 7860

    @property
    def app_dir(self) -> Path:
        """Where the web app keeps what it makes: uploads, staging, avatars of new characters."""
        return self.cache_dir / "app"

    @property
    def upload_dir(self) -> Path:
        """Where the web app's uploads land (under generated names)."""
        return self.app_dir / "uploads"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Defaults < `NEEKO_<FIELD>` environment variables < non-None `overrides`."""
        settings = cls()
        from_env = {}
        for f in fields(cls):
            value = os.environ.get(f"NEEKO_{f.name.upper()}")
            if value:
                from_env[f.name] = value
        settings = replace(settings, **_typed(from_env))
        return replace(settings, **_typed({k: v for k, v in overrides.items() if v is not None}))


def _typed(values: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in values.items():
        if name.endswith("_dir"):
            out[name] = Path(str(value)).expanduser()
        elif name == "port":
            out[name] = int(str(value))
        else:
            out[name] = str(value)
    return out
