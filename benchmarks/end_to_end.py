"""Benchmark 4, end to end on the embedded model.

`python benchmarks/end_to_end.py [flags]` is `neeko bench end-to-end [flags]`.
"""

import sys

from neeko_app.cli import main

raise SystemExit(main(["bench", "end-to-end", *sys.argv[1:]]))
