"""Settings: defaults, overridden by environment variables, overridden by CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("local", "openai")  # where replies are generated: this process, or a model server


def _default_root() -> Path:
    """The checkout (editable install) when it has `characters/`, else the working directory."""
    return PROJECT_ROOT if (PROJECT_ROOT / "characters").is_dir() else Path.cwd()


def _default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "neeko-app"


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/neeko-app`, else `~/.local/share/neeko-app`."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "neeko-app"


DECODE_MODES = ("auto", "merged", "eager", "compiled")


@dataclass(frozen=True)
class Settings:
    """Where things live and which model runs where."""

    base_model: str = "embedded"  # "embedded", "tiny", or a local Hugging Face model directory
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    # "auto": bf16 on CUDA; on a CPU, bf16 for chat where the CPU multiplies it natively
    # (avx512_bf16 or AMX), else fp32, and fp32 for training. Or "float32", "bfloat16", "float16".
    dtype: str = "auto"
    # "merged": as "eager", and a batch of one character runs its block merged into the
    # weights (one more copy of the adapted weights in memory), and on a CPU the layers
    # multiply by copies laid out for oneDNN (`model.prepacked`); "eager": decode steps follow
    # the batch's shape, always through the gate; "compiled": one torch.compile'd step of
    # fixed shape per batch size and length (compiled on first use: tens of seconds on a
    # CPU); "auto": merged on a CPU, eager on a GPU (whose memory a larger model fills)
    decode: str = "auto"
    cache_dir: Path = field(default_factory=_default_cache)
    # The characters that come with the app; the app itself never writes there.
    characters_dir: Path = field(default_factory=lambda: _default_root() / "characters")
    # The user's data: characters added in the app or by `neeko add-character`, memory and
    # saved sessions (memory_dir and sessions_dir follow it unless set themselves).
    data_dir: Path = field(default_factory=default_data_dir)
    memory_dir: Path = field(default_factory=lambda: default_data_dir() / "memory")
    sessions_dir: Path = field(default_factory=lambda: default_data_dir() / "sessions")
    reports_dir: Path = field(default_factory=lambda: _default_root() / "reports")
    chroma_url: str = ""  # empty: embedded store in memory_dir; else a `chroma run` server
    # What embeds the knowledge notes and the messages that search them: "auto" is MiniLM
    # with characters_dir/knowledge-encoder.safetensors merged in when that file exists
    # (`neeko tune-retriever` makes it), "plain" is MiniLM alone, else an adapter file's path.
    knowledge_encoder: str = "auto"
    backend: str = "local"  # "local": this process generates; "openai": a model server does
    backend_url: str = ""  # the server's OpenAI-compatible base URL, e.g. http://gpu:8000/v1
    host: str = "127.0.0.1"
    port: int = 7860
    # The most body one HTTP request may send, to either server, counted as it is read: above
    # the web app's largest upload (8 MiB) with room for the form around it.
    max_request_bytes: int = 10 * 2**20

    def __post_init__(self) -> None:
        if self.decode not in DECODE_MODES:
            raise ValueError(f"decode (NEEKO_DECODE) must be one of {DECODE_MODES}, "
                             f"got {self.decode!r}")

    def merges_single_blocks(self, device_type: str) -> bool:
        """Serve a batch of one character through its merged block, on a device of
        `device_type` ("cpu", "cuda", ...)."""
        return self.decode == "merged" or (self.decode == "auto" and device_type == "cpu")

    @property
    def compile_decode(self) -> bool:
        """Decode with the compiled fixed-shape step (`chat.static_decode`)."""
        return self.decode == "compiled"

    @property
    def user_characters_dir(self) -> Path:
        """Where added characters go."""
        return self.data_dir / "characters"

    @property
    def character_dirs(self) -> tuple[Path, ...]:
        """The folders characters are listed from: the shipped ones, then the user's (once,
        when both are the same folder)."""
        if self.user_characters_dir.resolve() == self.characters_dir.resolve():
            return (self.characters_dir,)
        return (self.characters_dir, self.user_characters_dir)

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
        """Defaults < `NEEKO_<FIELD>` environment variables < non-None `overrides`.

        A data folder given either way also moves memory and sessions into it, unless
        those are given themselves."""
        values = {}
        for f in fields(cls):
            value = os.environ.get(f"NEEKO_{f.name.upper()}")
            if value:
                values[f.name] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        values = _typed(values)
        if "data_dir" in values:
            values.setdefault("memory_dir", values["data_dir"] / "memory")
            values.setdefault("sessions_dir", values["data_dir"] / "sessions")
        return replace(cls(), **values)


def _typed(values: dict[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name.endswith("_dir"):
            out[name] = Path(str(value)).expanduser()
        elif name in ("port", "max_request_bytes"):
            out[name] = _whole_number(name, value)
        else:
            out[name] = str(value)
    return out


def _whole_number(name: str, value: object) -> int:
    """`value` as a whole number of at least 1; ValueError naming the setting otherwise."""
    text = str(value).strip()
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{name} (NEEKO_{name.upper()}) must be a whole number of at least 1, "
                         f"got {value!r}")
    return int(text)
