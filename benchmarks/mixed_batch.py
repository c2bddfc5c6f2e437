"""Benchmark 2, mixed batches (prefill and decode).

`python benchmarks/mixed_batch.py [flags]` is `neeko bench mixed-batch [flags]`.
"""

import sys

from neeko_app.cli import main

raise SystemExit(main(["bench", "mixed-batch", *sys.argv[1:]]))
