"""Start and stop an `mlflow server` or an `mlflow models serve` (each in its own process group). On a cluster
every node must reach one tracking server: `start_server` runs it with a database backend and proxied artifacts
(`--serve-artifacts`), so workers need no shared disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def start_server(
    root: str = "mlruns",
    host: str = "127.0.0.1",
    port: int = 5000,
    log_path: str | None = None,
    timeout_s: float = 120.0,
    backend_uri: str | None = None,
    workers: int = 1,
) -> tuple[subprocess.Popen, str]:
    """Start `mlflow server` on `host:port` with proxied artifacts under `root`/artifacts (`--serve-artifacts`:
    clients upload and download through the server, so workers need no shared disk) and the run database at
    `backend_uri`: a cluster's PostgreSQL (`postgresql://user@dbhost/mlflow`, needs psycopg2), else the sqlite
    store `root`/mlflow.db (one machine).

    Returns (process, tracking URI). The process runs in its own session; stop it with `stop_server`. For a
    cluster, bind `host` to an address the workers reach (see docs/cluster.md).
    """
    root_p = Path(root).resolve()
    (root_p / "artifacts").mkdir(parents=True, exist_ok=True)
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(exe) if exe.exists() else "mlflow",
        "server",
        "--backend-store-uri",
        backend_uri or f"sqlite:///{root_p}/mlflow.db",
        "--artifacts-destination",
        str(root_p / "artifacts"),
        "--serve-artifacts",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    log = open(log_path or root_p / "server.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://{host}:{port}"
    return proc, _wait_until_up(proc, url, "/health", "mlflow server", log.name, timeout_s)


def serve_model(
    model_uri: str,
    tracking_uri: str,
    host: str = "127.0.0.1",
    port: int = 5001,
    log_path: str | None = None,
    timeout_s: float = 180.0,
    env: dict | None = None,
) -> tuple[subprocess.Popen, str]:
    """`mlflow models serve -m <model_uri> --env-manager local` on `host:port` (its own session; stop it with
    `stop_server`), the model read from `tracking_uri`. Returns (process, base URL) once /ping answers 200."""
    exe = Path(sys.executable).with_name("mlflow")
    cmd = [
        str(exe) if exe.exists() else "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = open(log_path or os.devnull, "ab")
    env = {**(env or os.environ), "MLFLOW_TRACKING_URI": tracking_uri}
    env["PATH"] = f"{exe.parent}{os.pathsep}{env.get('PATH', '')}"  # it starts `uvicorn` from this environment
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    url = f"http://{host}:{port}"
    return proc, _wait_until_up(proc, url, "/ping", "mlflow models serve", log.name, timeout_s)


def _wait_until_up(proc: subprocess.Popen, url: str, path: str, what: str, log_name: str, timeout_s: float) -> str:
    """`url` once GET url+path answers 200; if the process exits or `timeout_s` passes first, stop it and raise
    naming `what` and its log."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log_name}")
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as resp:
                if resp.status == 200:
                    return url
        except OSError:
            time.sleep(0.5)
    stop_server(proc)
    raise RuntimeError(f"{what} did not answer on {url} within {timeout_s:.0f} s; see {log_name}")


def stop_server(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """Stop a server started by `start_server` or `serve_model` (its own process group only)."""
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout_s)
