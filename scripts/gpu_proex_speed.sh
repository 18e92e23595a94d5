#!/usr/bin/env bash
# The short GPU check of issue #3's speed criterion: LightGCN+ProEx (K=4, E=3, real-shape 1536-d random
# profiles) on amazon, eager and with the compiled loss, each in exact fp32 and with TF32 matmuls, plus base
# LightGCN on the same warm GPU for scale and an operator profile. Every line prints its ratio to the official
# LightGCN-ProEx's 2.39 s per epoch on one H100 (target: 10x).
#
#   OUT=gpu_out PROEX_DATA_DIR=../shared/data WALL=540 bash scripts/gpu_proex_speed.sh   # about 4-6 minutes
#
# WALL: seconds the script may take in all; a run gets at most what is left (minus 10 s), so the most
# informative runs come first and the later ones are cut short rather than the whole call.
set -u
OUT=${OUT:-gpu_out}; DEVICE=${DEVICE:-cuda}; PY=${PY:-python3}; EPOCHS=${EPOCHS:-5}; WALL=${WALL:-540}
PROFILES=${PROFILES:-random:k=4,dim=1536}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
t0=$(date +%s)
{ date; nvidia-smi 2>&1 | head -15; $PY -c "import torch; print('torch', torch.__version__, torch.cuda.is_available())"; } > "$OUT/env.txt" 2>&1
run() {  # run CAP_SECONDS JSON_NAME ARGS...: one benchmark process, capped by the time left
  local left=$(( WALL - 10 - ($(date +%s) - t0) )) cap=$1 json=$2
  [ "$left" -lt "$cap" ] && cap=$left
  [ "$cap" -gt 20 ] || { echo "skipped (no time left): ${*:3}"; return; }
  echo "== ${*:3}"
  timeout "$cap" $PY benchmarks/speed.py --device "$DEVICE" --epochs "$EPOCHS" --models lightgcn ${json:+--json "$OUT/$json"} "${@:3}" 2>&1
}
PROEX=(--plugin proex --profiles "$PROFILES" --plugin-set num_envs=3)
{
  run 120 speed_proex.json "${PROEX[@]}"
  run 120 speed_proex_tf32.json "${PROEX[@]}" --tf32
  run 240 speed_proex_compiled_tf32.json "${PROEX[@]}" --compile --tf32
  run 60 speed_lightgcn.json --validations 2
  run 240 speed_proex_compiled.json "${PROEX[@]}" --compile
  run 90 "" "${PROEX[@]}" --epochs 1 --profile-ops
  echo "done in $(( $(date +%s) - t0 )) s"
} | tee "$OUT/speed_proex.txt"
