"""Open a Chroma client: embedded on disk by default, or a Chroma server given by URL."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import chromadb
from chromadb.api import ClientAPI
from chromadb.config import Settings

CHROMA_URL_ENV = "NEEKO_CHROMA_URL"
DEFAULT_PORTS = {"http": 8000, "https": 443}


def chroma_settings() -> Settings:
    """Client settings: anonymized telemetry off."""
    return Settings(anonymized_telemetry=False)


def parse_server_url(url: str) -> tuple[str, int, bool]:
    """`(host, port, ssl)` from a URL like `http://127.0.0.1:8000`, else ValueError."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"invalid Chroma server URL {url!r}: expected http(s)://HOST[:PORT]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"invalid Chroma server URL {url!r}: give only scheme, host and port")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as error:
        raise ValueError(f"invalid port in Chroma server URL {url!r}") from error
    return parts.hostname, port, parts.scheme == "https"


def open_client(memory_dir: Path, server_url: str | None = None) -> ClientAPI:
    """A Chroma server client if `server_url` (or `$NEEKO_CHROMA_URL`) is set, else a
    persistent client storing its files under `memory_dir` (created if missing)."""
    url = server_url or os.environ.get(CHROMA_URL_ENV)
    if url:
        host, port, ssl = parse_server_url(url)
        return chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=chroma_settings())
    memory_dir = Path(memory_dir).expanduser()
    memory_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=memory_dir, settings=chroma_settings())
