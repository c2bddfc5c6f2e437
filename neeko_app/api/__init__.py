"""OpenAI-compatible HTTP API over the chat engine (model name = character id)."""

from neeko_app.api.server import DEFAULT_PORT, create_app, serve

__all__ = ["DEFAULT_PORT", "create_app", "serve"]
