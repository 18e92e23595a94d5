#!/usr/bin/env bash
# The short GPU check, one call of at most WALL seconds (about 8 minutes): benchmarks/gpu_check.py prints
# LightGCN+ProEx (K=4, E=3, 1536-d random profiles of the dataset's shape) s/epoch eager, TF32 and compiled,
# each as a ratio to the official LightGCN-ProEx's 2.39 s on one H100 (target: 10x); the six bases' s/epoch;
# JOBS `proex train` processes sharing the GPU against one alone; and an estimate of the paper's Table 2 grid
# on one GPU with its assumptions. No Ray needed.
#
#   OUT=gpu_out PROEX_DATA_DIR=../shared/data WALL=470 bash scripts/gpu_proex_speed.sh   # on a lent GPU
#   DRY=1 OUT=/tmp/gpu_dry bash scripts/gpu_proex_speed.sh          # every step on the CPU, tiny (the tests)
#
# WALL: seconds the script may take in all; each step gets at most what is left, the most informative first.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}; DEVICE=${DEVICE:-cuda}; PY=${PY:-python3}; EPOCHS=${EPOCHS:-5}; WALL=${WALL:-470}; JOBS=${JOBS:-8}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
t0=$(date +%s)
{ date; command -v nvidia-smi >/dev/null && nvidia-smi 2>&1 | head -15
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/env.txt" 2>&1
$PY benchmarks/gpu_check.py --device "$DEVICE" --epochs "$EPOCHS" --jobs "$JOBS" --out "$OUT" \
    --wall $(( WALL - ($(date +%s) - t0) )) ${DRY:+--dry} 2>&1 | tee "$OUT/gpu_check.txt"
