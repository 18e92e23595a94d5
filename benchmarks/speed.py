"""Seconds per training epoch and per full validation pass, for base models or a plug-in, on a real dataset.

    python benchmarks/speed.py                                  # all six bases on amazon, auto device
    python benchmarks/speed.py --models lightgcn --device cuda --epochs 5
    python benchmarks/speed.py --models lightgcn --plugin proex --profiles random:k=4,dim=1536 \
        --plugin-set num_envs=3                                 # LightGCN+ProEx, real-shape random profiles
    python benchmarks/speed.py ... --compile                    # the same with the loss torch.compile'd
    python benchmarks/speed.py ... --tf32                       # CUDA fp32 matmuls on TF32 tensor cores

Prints the amortised figure (epoch + validation / 3: validation every 3 epochs as in the reference protocol)
and its ratio to the reference: for bases, the official LightGCN code on this project's 2-core CPU (measured
for this project: 1.5 s/epoch, 1.9 s/validation, 2.2 s amortised); for ProEx, the official LightGCN-ProEx on
one H100 (2.39 s amortised, measured for this project), which only means something when this runs on an H100. Runs
unchanged on CUDA (timings synchronise the device).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from proex.config import parse_overrides  # noqa: E402
from proex.data.registry import load_dataset  # noqa: E402
from proex.data.tensors import TrainData  # noqa: E402
from proex.experiment import CellConfig, build_system, resolve  # noqa: E402
from proex.metrics import RankingEvaluator  # noqa: E402
from proex.models import MODELS  # noqa: E402
from proex.profiles.load import load_profiles  # noqa: E402
from proex.runtime import cuda_matmul_precision, resolve_device, seed_everything  # noqa: E402
from proex.train import make_optimizer, training_batches, training_loss  # noqa: E402

OFFICIAL_LIGHTGCN_CPU = {"epoch": 1.5, "validation": 1.9, "amortised": 2.2}
OFFICIAL_PROEX_H100_AMORTISED = 2.39


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_model(
    name: str,
    inter,
    device: torch.device,
    epochs: int,
    validations: int,
    plugin: str = "base",
    profiles: str | None = None,
    plugin_config: dict | None = None,
    profile_ops: bool = False,
    compile: bool = False,
) -> dict:
    r = resolve(
        CellConfig(
            dataset=inter.name,
            model=name,
            plugin=plugin,
            profiles=profiles,
            plugin_config=plugin_config or {},
            train={"device": str(device)},
        )
    )
    seed_everything(0)
    data = TrainData(inter, device)
    bank = load_profiles(profiles, inter) if profiles else None
    system = build_system(r, data, bank)
    opt = make_optimizer(system, r.train_cfg.lr, device)
    batch_size = r.train_cfg.batch_size
    loss_terms = training_loss(system, compile)  # what the Trainer runs (compiled during the warm-up epoch)

    def epoch() -> int:
        system.train()
        n = 0
        for batch in training_batches(system, data, batch_size):
            n += 1
            loss = sum(loss_terms(batch).values())  # the Σ‖θ‖² penalty is Adam's weight decay
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return n

    evaluator = RankingEvaluator(data, "val", r.train_cfg.ks)

    def validate() -> None:
        system.eval()
        with torch.no_grad():
            evaluator(system.scorer(), needs_rows=system.model.family != "pairwise")

    epoch(), validate()  # warm-up (allocations, kernels)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    _sync(device)
    t1 = time.perf_counter()
    for _ in range(validations):
        validate()
    _sync(device)
    t2 = time.perf_counter()
    ep, va = (t1 - t0) / epochs, (t2 - t1) / validations
    if profile_ops:  # one more epoch under the profiler: where the time goes
        acts = [torch.profiler.ProfilerActivity.CPU] + (
            [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else []
        )
        with torch.profiler.profile(activities=acts) as prof:
            n_batches = epoch()
            _sync(device)
        averages = prof.key_averages()
        if device.type == "cuda":  # where the device's time goes, then where the host's goes
            print(averages.table(sort_by="self_cuda_time_total", row_limit=20), flush=True)
        print(averages.table(sort_by="self_cpu_time_total", row_limit=25), flush=True)
        # On a GPU these small models are bound by operator dispatch, so ops per batch predicts s/epoch, and
        # every wait of the host for the device (a sync, a device-to-host copy) stops it from running ahead.
        per = 1 / max(n_batches, 1)
        ops = sum(e.count for e in averages if e.key.startswith("aten::"))
        waits = sum(e.count for e in averages if "Synchronize" in e.key or e.key == "aten::_local_scalar_dense")
        print(
            f"{name}: {ops * per:.0f} aten ops and {waits * per:.2f} host waits (synchronize calls, "
            f"tensor-to-Python reads) per training batch ({n_batches} batches)",
            flush=True,
        )
    return {"model": name, "epoch_s": ep, "validation_s": va, "amortised_s": ep + va / r.train_cfg.eval_every}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="amazon")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--device", default="auto")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--validations", type=int, default=2)
    p.add_argument("--plugin", default="base")
    p.add_argument("--profiles", default=None, help="profile bank spec, e.g. random:k=4,dim=1536")
    p.add_argument("--plugin-set", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--json", default=None, help="also write the rows to this file")
    p.add_argument(
        "--profile-ops",
        action="store_true",
        help="print a torch.profiler table of one more epoch and the aten operators per training batch",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the training loss, as TrainConfig.compile does (compiled in the untimed warm-up epoch)",
    )
    p.add_argument(
        "--tf32",
        action="store_true",
        help="CUDA float32 matmuls on TF32 tensor cores, as TrainConfig.tf32 does (no effect on a CPU)",
    )
    args = p.parse_args()
    device = resolve_device(args.device)
    inter = load_dataset(args.dataset)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"dataset {inter.name}, device {name}, torch {torch.__version__}")
    ref, ref_name = (
        (OFFICIAL_LIGHTGCN_CPU["amortised"], "official LightGCN, 2-core CPU")
        if args.plugin == "base"
        else (OFFICIAL_PROEX_H100_AMORTISED, "official LightGCN-ProEx, one H100")
    )
    print(f"plugin {args.plugin}, profiles {args.profiles}, compiled loss: {args.compile}, tf32: {args.tf32}")
    print(
        f"{'model':10s} {'s/epoch':>9s} {'s/valid':>9s} {'amortised':>10s}  speed-up vs {ref_name} ({ref} s amortised)"
    )
    rows = []
    for m in args.models:
        with cuda_matmul_precision(args.tf32):
            row = time_model(
                m,
                inter,
                device,
                args.epochs,
                args.validations,
                args.plugin,
                args.profiles,
                parse_overrides(args.plugin_set, "--plugin-set"),
                args.profile_ops,
                args.compile,
            )
        rows.append(row)
        ratio = ref / row["amortised_s"]
        print(
            f"{m:10s} {row['epoch_s']:9.3f} {row['validation_s']:9.3f} {row['amortised_s']:10.3f}  {ratio:5.1f}x",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "device": name,
                    "dataset": inter.name,
                    "plugin": args.plugin,
                    "profiles": args.profiles,
                    "compile": args.compile,
                    "tf32": args.tf32,
                    "rows": rows,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
