#!/usr/bin/env bash
# One prepared GPU session (a lent machine with PyTorch but no Ray): the speed benchmarks on CUDA, then the
# base-model reproductions, several runs sharing the GPU, until a deadline. Everything lands under $OUT.
#
#   OUT=gpu_out PROEX_DATA_DIR=../shared/data WALL=560 bash scripts/gpu_session.sh
#
# WALL: seconds this script may take in all; reproductions stop (losing only unfinished runs) WALL-45 s in.
set -u
OUT=${OUT:-gpu_out}; WALL=${WALL:-560}; DEVICE=${DEVICE:-cuda}; PY=${PY:-python3}; JOBS=${JOBS:-8}
SPEED_EPOCHS=${SPEED_EPOCHS:-3}; MODELS=${MODELS:-"simgcl ldiffrec cvga multvae gccf lightgcn"}
SEEDS=${SEEDS:-"2023 2024 2025 2026 2027"}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$OUT"
t0=$(date +%s)

# 1. Speed: LightGCN+ProEx eager / TF32 / compiled, the six bases, several runs sharing the GPU and the Table 2
#    estimate: scripts/gpu_proex_speed.sh (half the time left; writes $OUT/env.txt and $OUT/gpu_check.txt).
OUT="$OUT" DEVICE="$DEVICE" PY="$PY" EPOCHS="$SPEED_EPOCHS" JOBS="$JOBS" WALL=$(( (WALL - ($(date +%s) - t0)) / 2 )) \
    bash "$(dirname "$0")/gpu_proex_speed.sh" > /dev/null

# 2. Reproductions, seed-major (the first three seeds of every model come before any fourth); runs already
#    in docs/results/runs are skipped.
left=$(( WALL - 45 - ($(date +%s) - t0) ))
[ "$left" -gt 60 ] || { echo "no time left for reproductions ($left s)"; exit 0; }
$PY benchmarks/reproduce_base.py --device "$DEVICE" --jobs "$JOBS" --stop-after "$left" --models $MODELS \
    --seeds $SEEDS --no-table --log-dir "$OUT/logs" > "$OUT/reproduce.txt" 2>&1
tar czf "$OUT/runs.tgz" docs/results/runs/*.json -C "$OUT" logs 2>> "$OUT/reproduce.txt"
rm -rf "$OUT/logs"
echo "done in $(( $(date +%s) - t0 )) s"
