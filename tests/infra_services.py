"""Helpers for the slow infrastructure tests: free loopback ports, a token-authenticated Ray head on 127.0.0.1
(`ray start --head --block` in its own session, stopped by its own pid / process group, never `ray stop`,
which would also stop other Ray clusters on the machine), drivers run as subprocesses, MLflow polling."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[1])
BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def base_env(token: str | None = None) -> dict:
    """The environment for Ray, drivers and `ray job submit`: loopback only, one thread per process, and
    the same token authentication for every Ray process and client."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env.update(
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN=token or secrets.token_hex(16),
        RAY_USAGE_STATS_ENABLED="0",
        TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S="0",
        PYTHONPATH=REPO + os.pathsep + env.get("PYTHONPATH", ""),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def stop_group(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait_s: float = 60.0) -> None:
    """Stop a process we started in its own session, then anything left in its process group."""
    try:
        if proc.poll() is None:
            os.kill(proc.pid, sig)
            proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(10)


class RayHead:
    """`ray start --head --block` on 127.0.0.1 with a dashboard (for `ray job submit`) and token auth."""

    def __init__(self, num_cpus: int = 2):
        self.env = base_env()
        self.temp = tempfile.mkdtemp(prefix="pxr", dir="/tmp")  # short: Ray's socket paths have a length limit
        p = free_ports(9)
        self.dashboard = f"http://127.0.0.1:{p[1]}"
        self.address = f"127.0.0.1:{p[0]}"  # for drivers that attach with ray.init(address=...)
        cmd = [
            str(BIN / "ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(p[0]),
            "--num-cpus",
            str(num_cpus),
            "--include-dashboard=true",
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(p[1]),
            "--dashboard-agent-listen-port",
            str(p[2]),
            "--dashboard-agent-grpc-port",
            str(p[3]),
            "--ray-client-server-port",
            str(p[4]),
            "--runtime-env-agent-port",
            str(p[5]),
            "--metrics-export-port",
            str(p[6]),
            "--node-manager-port",
            str(p[7]),
            "--object-manager-port",
            str(p[8]),
            "--temp-dir",
            self.temp,
            "--disable-usage-stats",
        ]
        self.log = open(os.path.join(self.temp, "ray-start.log"), "wb")
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
        )
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited {self.proc.returncode}: {open(self.log.name).read()[-3000:]}")
            if self.jobs_api_up():
                return
            time.sleep(1)
        self.stop()
        raise RuntimeError("the Ray head did not come up within 180 s")

    def jobs_api_up(self) -> bool:
        req = urllib.request.Request(
            f"{self.dashboard}/api/jobs/", headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=3) as resp:
                return resp.status == 200
        except OSError:
            return False

    def submit(self, args: list[str], env_vars: dict, timeout: float = 600) -> subprocess.CompletedProcess:
        import json

        cmd = [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            self.dashboard,
            "--working-dir",
            REPO,
            "--runtime-env-json",
            json.dumps({"env_vars": env_vars}),
            "--",
            sys.executable,
            *args,
        ]
        return subprocess.run(cmd, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        import shutil

        stop_group(self.proc)
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


def start_driver(args: list[str], log_path: str, env: dict | None = None) -> subprocess.Popen:
    """A driver script (ray_jobs/*.py) in its own session, with a local Ray on loopback."""
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, *args],
        env=env or base_env(),
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for(
    predicate,
    timeout: float,
    what: str,
    interval: float = 1.0,
    proc: subprocess.Popen | None = None,
    log_path: str | None = None,
):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            tail = open(log_path).read()[-4000:] if log_path else ""
            raise AssertionError(f"driver exited ({proc.returncode}) while waiting for {what}\n{tail}")
        time.sleep(interval)
    tail = open(log_path).read()[-4000:] if log_path else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
