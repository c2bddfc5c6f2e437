"""Benchmark 3, scale in characters.

`python benchmarks/scale.py [flags]` is `neeko bench scale [flags]`.
"""

import sys

from neeko_app.cli import main

raise SystemExit(main(["bench", "scale", *sys.argv[1:]]))
