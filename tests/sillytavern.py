"""SillyTavern, the pinned npm release, as a real client for interop tests: installed once into
the app's cache, started on a loopback port with a throwaway data folder (a user's own
SillyTavern is never read or written), stopped at the end.

Needs `node` and `npm` on the PATH, and the npm registry for the first install.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from neeko_app.config import Settings
from neeko_app.storage import atomic_write_json
from tests.test_memory import stop
from tests.test_serve_cli import wait_for_page

VERSION = "1.19.0"
INSTALL_TIMEOUT_S = 600
START_TIMEOUT_S = 300  # it compiles its front-end libraries on every fresh data folder
COMPLETE = ".neeko-install-complete"  # written last: an install without it is unfinished

# Local and offline: no login, no browser launch, no downloads, quiet logs. The CSRF check
# stays on: the page fetches its token like any browser does.
CONFIG = """\
listen: false
browserLaunch:
  enabled: false
whitelistMode: true
enableUserAccounts: false
skipContentCheck: false
enableDownloadableTokenizers: false
extensions:
  enabled: true
  autoUpdate: false
  models:
    autoDownload: false
logging:
  enableAccessLog: false
"""


def missing_tools() -> list[str]:
    """The programs SillyTavern needs that are not on the PATH."""
    return [tool for tool in ("node", "npm") if shutil.which(tool) is None]


def install(cache_dir: Path | None = None) -> Path:
    """SillyTavern `VERSION`'s server folder, installed from npm into `cache_dir` (default: the
    app's cache) unless a finished install is there already.

    The layout is SillyTavern's own (its dependencies in `node_modules` under the server
    folder): from `node_modules/sillytavern` it cannot load its WebAssembly image codecs,
    which sit outside its folder there, and imported PNG cards get no thumbnails. It is
    installed into a temporary folder and renamed at the end, so an interrupted install is
    never taken for a finished one.
    """
    cache_dir = cache_dir or Settings.from_env().cache_dir
    final = cache_dir / f"sillytavern-{VERSION}"
    if (final / COMPLETE).is_file():
        return final
    cache_dir.mkdir(parents=True, exist_ok=True)
    prefix = f".sillytavern-{VERSION}-"
    for left in cache_dir.glob(f"{prefix}*"):  # from killed runs: no install lasts this long
        with contextlib.suppress(OSError):
            if time.time() - left.stat().st_mtime > 3 * INSTALL_TIMEOUT_S:
                shutil.rmtree(left, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=prefix, dir=cache_dir))
    try:
        _npm("pack", f"sillytavern@{VERSION}", "--pack-destination", str(staging), cwd=staging)
        [archive] = staging.glob("*.tgz")
        subprocess.run(["tar", "-xzf", str(archive), "-C", str(staging)], check=True)
        server_dir = staging / "package"
        _npm("install", "--omit=dev", cwd=server_dir)
        (server_dir / COMPLETE).write_text(VERSION)
        if (final / COMPLETE).is_file():  # another run finished first
            return final
        if final.exists():  # not from us: a copy that never finished
            shutil.rmtree(final)
        try:
            server_dir.rename(final)
        except OSError:
            if not (final / COMPLETE).is_file():  # not another run finishing first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _npm(*arguments: str, cwd: Path) -> None:
    done = subprocess.run(["npm", *arguments, "--no-audit", "--no-fund", "--loglevel=error"],
                          cwd=cwd, timeout=INSTALL_TIMEOUT_S, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"npm {' '.join(arguments)} failed:\n{done.stdout}{done.stderr}")


def write_user_settings(server_dir: Path, data_root: Path, stopping_strings: Sequence[str]
                        ) -> Path:
    """Seed the default user's settings.json: SillyTavern's own defaults with the first-run
    dialog done and `stopping_strings` as the custom stopping strings. The file written."""
    settings = json.loads((server_dir / "default" / "content" / "settings.json").read_text())
    settings["firstRun"] = False
    settings["power_user"]["custom_stopping_strings"] = json.dumps(list(stopping_strings))
    path = data_root / "default-user" / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, settings)
    return path


@contextmanager
def running(server_dir: Path, home: Path, port: int,
            stopping_strings: Sequence[str] = ()) -> Iterator[str]:
    """SillyTavern on 127.0.0.1:`port`, its config and data under `home`; yields its page URL
    and stops it at the end."""
    data_root = home / "data"
    config = home / "config.yaml"
    config.write_text(CONFIG)
    write_user_settings(server_dir, data_root, stopping_strings)
    log = home / "sillytavern.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            ["node", "server.js", "--configPath", str(config), "--dataRoot", str(data_root),
             "--port", str(port), "--browserLaunchEnabled", "false"],
            cwd=server_dir, stdout=output, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_page(server, url, timeout_s=START_TIMEOUT_S, log=log)
        yield url
    finally:
        stop(server, timeout_s=30)
