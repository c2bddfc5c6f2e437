"""Benchmark 1, switching characters.

`python benchmarks/switching.py [flags]` is `neeko bench switching [flags]`.
"""

import sys

from neeko_app.cli import main

raise SystemExit(main(["bench", "switching", *sys.argv[1:]]))
