#!/usr/bin/env bash
# The short GPU check of issue #3's speed criterion: LightGCN+ProEx (K=4, E=3, real-shape 1536-d random
# profiles) on amazon, eager and with the compiled loss, plus base LightGCN on the same warm GPU for scale.
# Every line prints its ratio to the official LightGCN-ProEx's 2.39 s per epoch on one H100 (target: 10x).
#
#   OUT=gpu_out PROEX_DATA_DIR=../shared/data bash scripts/gpu_proex_speed.sh      # about 3-5 minutes
set -u
OUT=${OUT:-gpu_out}; DEVICE=${DEVICE:-cuda}; PY=${PY:-python3}; EPOCHS=${EPOCHS:-5}
PROFILES=${PROFILES:-random:k=4,dim=1536}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
{ date; nvidia-smi 2>&1 | head -15; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"; } > "$OUT/env.txt" 2>&1
run() { timeout "$1" $PY benchmarks/speed.py --device "$DEVICE" --epochs "$EPOCHS" --models lightgcn "${@:2}" 2>&1; }
{
  run 90 --validations 2 --json "$OUT/speed_lightgcn.json"
  run 120 --plugin proex --profiles "$PROFILES" --plugin-set num_envs=3 --json "$OUT/speed_proex.json"
  run 240 --plugin proex --profiles "$PROFILES" --plugin-set num_envs=3 --compile --json "$OUT/speed_proex_compiled.json"
  run 90 --plugin proex --profiles "$PROFILES" --plugin-set num_envs=3 --epochs 1 --profile-ops
} | tee "$OUT/speed_proex.txt"
