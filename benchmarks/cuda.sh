#!/usr/bin/env bash
# Benchmarks 1-3 and 5 (switching, mixed batch, scale, compiled step) on a GPU host, in one
# go and within 8 minutes, without installing anything: it needs only torch (CUDA build),
# transformers, peft, safetensors, pyyaml, tqdm and matplotlib, as a bare GPU image has them;
# the app's serving stack (Chroma, LangChain, Gradio) is not imported.
#
#   bash benchmarks/cuda.sh [OUT_DIR]     # default OUT_DIR: benchmarks/results
#
# Writes <benchmark>-cuda.json, summary-cuda.png and bench-cuda.log to OUT_DIR (a path
# relative to the repository, or absolute). Each benchmark runs in its own process under its
# own time limit (seconds: SWITCHING_S, MIXED_S, SCALE_S, COMPILED_S), so one that fails or
# runs long does not cost the others. ROUNDS (3) sets the timing rounds; SHAPE (llama-7b),
# BATCH (32) and LAYERS (all) change the model; DEVICE=cpu and BENCH_FLAGS (more `neeko bench`
# flags, e.g. "--quick --rounds 1") make a dry run of the script on any machine; PYTHON names
# the interpreter (python3).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
device=${DEVICE:-cuda}
flags=(--device "$device" --shape "${SHAPE:-llama-7b}" --batch "${BATCH:-32}"
       --rounds "${ROUNDS:-3}" --out "$out")
[[ -n "${LAYERS:-}" ]] && flags+=(--layers "$LAYERS")
read -ra extra <<< "${BENCH_FLAGS:-}"
flags+=("${extra[@]}")

{
  date -u +%FT%TZ
  "$python" - "$device" <<'PY' || exit 2
import sys

import peft
import torch
import transformers

if sys.argv[1] == "cuda":
    assert torch.cuda.is_available(), "no CUDA GPU visible to torch"
    print(torch.cuda.get_device_name(), "cuda", torch.version.cuda)
print("torch", torch.__version__, "transformers", transformers.__version__,
      "peft", peft.__version__)
PY
  failed=0
  for run in switching:"${SWITCHING_S:-80}" mixed_batch:"${MIXED_S:-130}" \
             scale:"${SCALE_S:-120}" compiled_step:"${COMPILED_S:-110}"; do
    name=${run%%:*} limit=${run##*:}
    echo "== $name (at most $limit s) =="
    timeout "$limit" "$python" "benchmarks/$name.py" "${flags[@]}" || {
      echo "$name failed: exit $?"; failed=1; }
  done
  exit $failed
} 2>&1 | tee "$out/bench-$device.log"
