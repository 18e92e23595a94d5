#!/usr/bin/env bash
# Create .venv and install proex into it.
#   bash scripts/install.sh            # CPU torch (default), the library and the test tools
#   PROEX_TORCH=cuda bash scripts/install.sh   # CUDA torch for GPU nodes
#   PROEX_EXTRAS=test,infra bash scripts/install.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -r "requirements/${PROEX_TORCH:-cpu}.txt" -e ".[${PROEX_EXTRAS:-test}]"
