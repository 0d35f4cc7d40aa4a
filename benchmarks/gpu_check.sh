#!/usr/bin/env bash
# The prepared GPU check: one script, at most 8 minutes on one GPU, a table per part.
#
#   1. energies + forces of the torch OpenMM-System energy (compiled float64/float32, eager)
#      against OpenMM's fastest platform (CUDA on a GPU machine) for the alanine dipeptide
#      systems, batches 4,096 and 65,536, and torch MMFF94 against RDKit
#      (benchmarks/energies.py);
#   2. training steps per second of the alanine dipeptide flow, reverse KL and FAB, 1,024
#      samples per step (benchmarks/train_speed.py);
#   3. the wall time of `confflow generate` on ibuprofen with --device cuda, split by stage.
#
# Usage: bash benchmarks/gpu_check.sh [OUT_DIR]   (JSON files land in OUT_DIR, default gpu_check)
# PYTHON selects the interpreter (default .venv/bin/python); its torch must see the GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu_check}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$OUT"

"$PY" - <<'PY'
import torch
if not torch.cuda.is_available():
    raise SystemExit("gpu_check: torch sees no CUDA device")
print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
PY

echo "## 1. energies + forces (s per conformer; ratio = OpenMM / torch)"
timeout 240 "$PY" benchmarks/energies.py --device cuda --batch-sizes 4096 65536 --repeats 3 \
    --json "$OUT/energies.json" || echo "energies: exit $? (timeout 240 s)"

echo "## 2. training steps per second, alanine dipeptide"
timeout 120 "$PY" benchmarks/train_speed.py --device cuda --batch 1024 --steps 20 \
    --json "$OUT/train_speed.json" || echo "train_speed: exit $? (timeout 120 s)"

echo "## 3. confflow generate ibuprofen --device cuda"
start=$(date +%s)
timeout 180 "$PY" -m confflow generate 'CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O' --device cuda \
    --out "$OUT/ibuprofen.sdf" || echo "generate: exit $? (timeout 180 s)"
echo "generate wall time: $(( $(date +%s) - start )) s (stages in $OUT/ibuprofen.json: timings_s)"
