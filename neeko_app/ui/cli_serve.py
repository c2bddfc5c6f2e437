"""`neeko serve`: the web app on the chat engine, until interrupted.

This module does not import Gradio: the command imports it once its upload folder is set."""

from __future__ import annotations

import argparse
import os

from neeko_app.cli import server_engine
from neeko_app.config import Settings


def run_serve_command(settings: Settings, args: argparse.Namespace) -> int:
    """Serve the web app on `settings.host:settings.port` (--auth: behind a login)."""
    # Gradio reads this when it is imported: uploads land in the app's own data dir
    os.environ.setdefault("GRADIO_TEMP_DIR", str(settings.upload_dir))
    from neeko_app.ui.app import parse_auth, serve

    auth = parse_auth(args.auth) if args.auth else None
    engine = server_engine(settings, args)
    try:
        serve(engine, settings, auth, args.concurrency)
    finally:
        engine.close()
    return 0
