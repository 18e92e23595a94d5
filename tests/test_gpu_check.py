"""The prepared GPU run (scripts/gpu_proex_speed.sh -> benchmarks/gpu_check.py) in its dry mode: every step on
the CPU with tiny data, so the script a lent GPU runs cannot rot. Slow (it starts ~8 Python processes), kept in
CI. The figures it prints mean nothing here; the test checks that each step ran and was reported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_gpu_script_dry_run_reports_every_step_and_the_table2_estimate(tmp_path):
    env = {
        **os.environ,
        "DRY": "1",
        "OUT": str(tmp_path),
        "PY": sys.executable,
        "DEVICE": "cpu",
        "WALL": "600",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        ["bash", "scripts/gpu_proex_speed.sh"], cwd=REPO, env=env, capture_output=True, text=True, timeout=700
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    assert "DRY RUN (figures mean nothing)" in out
    for variant in ("eager", "tf32", "compiled", "compiled_tf32"):  # each with its ratio to the official 2.39 s
        assert any(
            ln.startswith(f"LightGCN+ProEx {variant} ") and "x the official 2.39 s" in ln for ln in out.splitlines()
        ), (variant, out[-3000:])
    for model in ("gccf", "lightgcn", "simgcl", "multvae", "ldiffrec", "cvga"):
        assert f"base {model} " in out
    assert "2 at once:" in out and "throughput" in out
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert summary["dry"] and set(summary["proex_amortised_s"]) == {"eager", "tf32", "compiled", "compiled_tf32"}
    assert len(summary["shared"]["each_s"]) == 2 and summary["shared"]["gain"] > 0
    estimate = "\n".join(summary["table2_estimate"])
    assert "one run at a time:" in estimate and "2 runs sharing the GPU:" in estimate and "assumptions:" in estimate
    assert (tmp_path / "env.txt").exists()
