"""Benchmark 5, the decode step eager and compiled (and the memory-bound limit).

`python benchmarks/compiled_step.py [flags]` is `neeko bench compiled-step [flags]`.
"""

import sys

from neeko_app.cli import main

raise SystemExit(main(["bench", "compiled-step", *sys.argv[1:]]))
