#!/usr/bin/env bash
# Create .venv and install proex with the experiment system (Ray, MLflow, Optuna), the LLM stage and the test tools.
#   bash scripts/install.sh                     # CPU torch (the default on machines without a GPU)
#   PROEX_TORCH=cuda bash scripts/install.sh   # CUDA torch for GPU nodes
#   PROEX_EXTRAS=test bash scripts/install.sh   # the library and tests only (no Ray, MLflow, Optuna, OpenAI)
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q -r "requirements/${PROEX_TORCH:-cpu}.txt" -e ".[${PROEX_EXTRAS:-test,infra,llm,dashboard}]"
