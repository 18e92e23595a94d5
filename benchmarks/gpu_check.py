"""The prepared GPU run, in one call of at most `--wall` seconds: ProEx's speed, the six bases' speed, several
`proex train` processes sharing the GPU, and from these an estimate of the paper's Table 2 grid on one GPU.

    python benchmarks/gpu_check.py --device cuda --out gpu_out --wall 470    # on a lent GPU (about 8 minutes)
    python benchmarks/gpu_check.py --dry --out /tmp/gpu_dry                  # CPU, tiny data, seconds (the tests)

It prints, in this order (the most informative first, so a short budget cuts the least useful):
1. LightGCN+ProEx (K=4, E=3, 1536-d random profiles of the dataset's shape) s/epoch amortised over a
   validation every 3 epochs, eager / TF32 / compiled / compiled+TF32, each as a ratio to the official
   LightGCN-ProEx's 2.39 s on one H100 (benchmarks/speed.py, one process per variant);
2. the six bases' s/epoch (benchmarks/speed.py);
3. one `proex train` of LightGCN+ProEx alone, then `--jobs` of them at once on the same GPU: wall per run
   against the run alone, and the throughput gain of sharing;
4. the Table 2 grid (6 models x Amazon/Yelp/Steam x 10 seeds x {base, ProEx}) on one GPU, with its assumptions.
Every step is a subprocess with a time cap (a compile that hangs costs its cap, not the call); Ray is not
needed. `--dry` runs every step on the CPU with a tiny synthetic dataset and 32-d profiles, so the script is
exercised by the test suite (tests/test_gpu_check.py) and cannot rot; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OFFICIAL_PROEX_H100 = 2.39  # s/epoch amortised, the official LightGCN-ProEx on one H100
MODELS = ["gccf", "lightgcn", "simgcl", "multvae", "ldiffrec", "cvga"]
PAPER_INTERACTIONS = {"amazon": 200_860, "yelp": 277_535, "steam": 525_922}  # ProEx paper, Table 1
SEEDS = 10
ENV = dict(os.environ)  # the subprocesses' environment (--dry adds TORCHDYNAMO_DISABLE=1)
VARIANTS = [
    ("eager", []),
    ("tf32", ["--tf32"]),
    ("compiled", ["--compile"]),
    ("compiled_tf32", ["--compile", "--tf32"]),
]


@dataclass
class Plan:
    device: str
    dataset: str
    profiles: str
    epochs: int  # timed epochs per speed measurement
    validations: int
    jobs: int  # concurrent `proex train` processes
    train_epochs: int  # epochs of each of those runs
    caps: dict  # step -> seconds it may take at most


def make_plan(args) -> Plan:
    if args.dry:
        return Plan(
            "cpu",
            "synthetic:n_users=120,n_items=90",
            "random:k=4,dim=32",
            1,
            1,
            2,
            3,
            {"proex": 120, "bases": 120, "train": 120},
        )
    return Plan(
        args.device,
        args.dataset,
        "random:k=4,dim=1536",
        args.epochs,
        2,
        args.jobs,
        15,
        {"proex": 90, "compiled": 180, "bases": 100, "train": 150},
    )


class Budget:
    """Seconds left of the call's wall budget; a step gets min(its cap, what is left - 10 s)."""

    def __init__(self, wall: float):
        self.t0, self.wall = time.time(), wall

    def cap(self, want: float) -> float | None:
        left = self.wall - 10 - (time.time() - self.t0)
        return min(want, left) if left > 20 else None


def sh(cmd: list[str], cap: float, log: Path) -> tuple[int, float, str]:
    """Run `cmd` with a time limit; its output goes to `log` and is returned. rc 124 = cut at the cap."""
    t = time.time()
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=cap)
        rc, out = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        rc, out = 124, (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    log.write_text(out)
    return rc, time.time() - t, out


def speed(plan: Plan, budget: Budget, out: Path, name: str, args: list[str], cap: float) -> list[dict]:
    """benchmarks/speed.py in its own process; its rows (model, epoch_s, validation_s, amortised_s)."""
    limit = budget.cap(cap)
    if limit is None:
        print(f"{name}: skipped (no time left)", flush=True)
        return []
    path = out / f"speed_{name}.json"
    cmd = [
        sys.executable,
        "benchmarks/speed.py",
        "--dataset",
        plan.dataset,
        "--device",
        plan.device,
        "--epochs",
        str(plan.epochs),
        "--validations",
        str(plan.validations),
        "--json",
        str(path),
        *args,
    ]
    rc, secs, text = sh(cmd, limit, out / f"speed_{name}.log")
    if rc != 0 or not path.exists():
        print(f"{name}: failed (rc {rc}, {secs:.0f} s): {text.strip().splitlines()[-1:] or ''}", flush=True)
        return []
    return json.loads(path.read_text())["rows"]


def proex_speed(plan: Plan, budget: Budget, out: Path, name: str, extra: list[str], found: dict) -> None:
    """Time one LightGCN+ProEx variant; print it against the official H100 figure; record it in `found`."""
    cap = plan.caps.get("compiled" if "--compile" in extra else "proex", plan.caps["proex"])
    rows = speed(plan, budget, out, f"proex_{name}", ["--models", "lightgcn", *proex_args(plan), *extra], cap)
    if rows:
        found[name] = rows[0]["amortised_s"]
        print(
            f"LightGCN+ProEx {name:14s} {rows[0]['epoch_s']:8.4f} s/epoch  {found[name]:8.4f} s amortised  "
            f"{OFFICIAL_PROEX_H100 / found[name]:6.2f}x the official {OFFICIAL_PROEX_H100} s (one H100)",
            flush=True,
        )


def proex_args(plan: Plan) -> list[str]:
    return ["--plugin", "proex", "--profiles", plan.profiles, "--plugin-set", "num_envs=3"]


def train_cmd(plan: Plan, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "proex.cli",
        "train",
        "--dataset",
        plan.dataset,
        "--model",
        "lightgcn",
        *proex_args(plan),
        "--device",
        plan.device,
        "--out",
        str(out),
        "--train",
        f"epochs={plan.train_epochs}",
        "eval_every=3",
        "patience=1000",
    ]


def shared_gpu(plan: Plan, budget: Budget, out: Path) -> dict | None:
    """One `proex train` alone, then plan.jobs at once: {alone_s, each_s [per run], batch_s, fit_*}."""
    limit = budget.cap(plan.caps["train"])
    if limit is None:
        print("shared GPU: skipped (no time left)", flush=True)
        return None
    env = {**ENV, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    t = time.time()
    alone = subprocess.run(
        train_cmd(plan, out / "train_alone"), cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit
    )
    alone_s = time.time() - t
    if alone.returncode != 0:
        print(f"shared GPU: the run alone failed: {alone.stderr.strip().splitlines()[-1:]}", flush=True)
        return None
    limit = budget.cap(max(limit - alone_s, 0))
    if limit is None:
        return None
    t, procs = time.time(), []
    for i in range(plan.jobs):
        log = open(out / f"train_{i}.log", "w")
        procs.append(
            (
                subprocess.Popen(
                    train_cmd(plan, out / f"train_{i}"), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                ),
                log,
            )
        )
    each = []
    for proc, log in procs:
        try:
            rc = proc.wait(max(1.0, limit - (time.time() - t)))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        log.close()
        each.append(time.time() - t if rc == 0 else None)
    if None in each:
        print(f"shared GPU: {each.count(None)} of {plan.jobs} runs failed or were cut (logs in {out})", flush=True)
        return None

    def fit(d: Path) -> float:
        return json.loads((d / "metrics.json").read_text())["wall_seconds"]

    fits = [fit(out / f"train_{i}") for i in range(plan.jobs)]
    # throughput gain of sharing: runs finished per training second, together against alone (training time
    # only: start-up and data loading run on the CPU cores and overlap anyway)
    return {
        "alone_s": alone_s,
        "alone_fit_s": fit(out / "train_alone"),
        "each_s": each,
        "batch_s": max(each),
        "each_fit_s": fits,
        "gain": plan.jobs * fit(out / "train_alone") / max(fits),
    }


def table2_estimate(bases: dict, proex_s: float, shared: dict | None, plan: Plan) -> list[str]:
    """Hours for the Table 2 grid on one GPU from the measured s/epoch, and the assumptions behind them."""
    from proex.experiment import CellConfig, resolve

    factor = proex_s / bases["lightgcn"]
    gain = shared["gain"] if shared else 1.0
    serial, lines = 0.0, []
    for model in MODELS:
        epochs = resolve(CellConfig(dataset="amazon", model=model)).train_cfg.epochs
        per_amazon = bases[model] * epochs  # seconds of one base run on amazon
        runs = sum(per_amazon * PAPER_INTERACTIONS[d] / PAPER_INTERACTIONS["amazon"] for d in PAPER_INTERACTIONS)
        model_s = SEEDS * runs * (1 + factor)
        serial += model_s
        lines.append(
            f"  {model:9s} {epochs:4d} epochs  {bases[model]:.4f} s/epoch on {plan.dataset}  "
            f"-> {model_s / 3600:6.2f} h (base + ProEx, 3 datasets, {SEEDS} seeds)"
        )
    lines += [
        f"  one run at a time:           {serial / 3600:7.2f} h of GPU",
        f"  {plan.jobs} runs sharing the GPU:     {serial / gain / 3600:7.2f} h "
        f"(throughput gain {gain:.2f}x measured on LightGCN+ProEx)"
        if shared
        else "  runs sharing the GPU:        not measured",
        "  assumptions: every run trains its reference maximum of epochs (early stopping only shortens it);",
        "  an epoch's time scales with the training interactions (paper Table 1: yelp 1.38x, steam 2.62x amazon);",
        f"  ProEx costs {factor:.2f}x its base's epoch for every model (measured on LightGCN only); start-up, "
        "data loading and final testing are not counted; the sharing gain holds for all models.",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--dataset", default="amazon")
    p.add_argument("--epochs", type=int, default=5, help="timed epochs per speed measurement")
    p.add_argument("--jobs", type=int, default=8, help="`proex train` processes sharing the GPU")
    p.add_argument("--wall", type=float, default=470, help="seconds the whole call may take")
    p.add_argument("--out", default="gpu_out", help="folder for the JSON rows and logs")
    p.add_argument("--dry", action="store_true", help="every step on the CPU with tiny data (tests)")
    args = p.parse_args(argv)
    plan, budget, out = make_plan(args), Budget(args.wall), Path(args.out).resolve()
    if args.dry:  # torch.compile on a CPU builds C++ for a minute: the dry run checks the plumbing only
        ENV["TORCHDYNAMO_DISABLE"] = "1"
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"gpu_check: device {plan.device}, dataset {plan.dataset}, profiles {plan.profiles}, "
        f"{'DRY RUN (figures mean nothing)' if args.dry else f'wall {args.wall:.0f} s'}",
        flush=True,
    )
    proex: dict[str, float] = {}
    for name, extra in VARIANTS[:3]:
        proex_speed(plan, budget, out, name, extra, proex)
    rows = speed(plan, budget, out, "bases", ["--models", *MODELS], plan.caps["bases"])
    bases = {r["model"]: r["amortised_s"] for r in rows}
    for r in rows:
        print(f"base {r['model']:9s} {r['epoch_s']:8.4f} s/epoch  {r['amortised_s']:8.4f} s amortised", flush=True)
    shared = shared_gpu(plan, budget, out)
    if shared:
        each, fits = sum(shared["each_s"]) / plan.jobs, sum(shared["each_fit_s"]) / plan.jobs
        print(
            f"proex train alone: {shared['alone_s']:.1f} s wall, {shared['alone_fit_s']:.1f} s training; "
            f"{plan.jobs} at once: {each:.1f} s wall, {fits:.1f} s training per run ({each / shared['alone_s']:.2f}x, "
            f"{fits / shared['alone_fit_s']:.2f}x the run alone), all done in {shared['batch_s']:.1f} s; "
            f"throughput {shared['gain']:.2f}x one run at a time",
            flush=True,
        )
    proex_speed(plan, budget, out, *VARIANTS[3], proex)  # the least needed variant last
    summary = {
        "plan": plan.__dict__,
        "dry": args.dry,
        "proex_amortised_s": proex,
        "bases_amortised_s": bases,
        "shared": shared,
    }
    if "eager" in proex and set(MODELS) <= set(bases):
        print("Table 2 grid on one GPU (estimate, from the default eager fp32 configuration):", flush=True)
        lines = table2_estimate(bases, proex["eager"], shared, plan)
        print("\n".join(lines), flush=True)
        summary["table2_estimate"] = lines
    else:
        print("Table 2 grid: no estimate (a speed step is missing)", flush=True)
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=1))
    print(f"done in {time.time() - budget.t0:.0f} s; rows and logs in {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
