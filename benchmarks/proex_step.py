"""Where a LightGCN+ProEx training step's time goes, as ratios measured in one process (robust to a shared CPU).

    python benchmarks/proex_step.py            # 600 x 9000 table, ~100 interactions per user, 384-d profiles, K = 4

Times training steps (forward, backward, Adam) of: the base LightGCN; ProEx as configured; ProEx without its
Ω term (reg_weight = 0); ProEx with Ω's P = exp(z zᵀ) formed whole instead of walked in cached blocks
(`proex.plugins.uniformity.CPU_BLOCK`), to measure that change in the same process. Rounds are
interleaved (a, b, c, d, a, b, ...) and the median per configuration is reported with its ratio to the base, so
that other jobs on the machine slow every configuration alike. Also prints the batch's Ω shapes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from proex.data.registry import load_dataset  # noqa: E402
from proex.data.tensors import TrainData  # noqa: E402
from proex.experiment import CellConfig, build_system, resolve  # noqa: E402
from proex.plugins import uniformity as proex_mod  # noqa: E402
from proex.profiles.load import load_profiles  # noqa: E402
from proex.runtime import seed_everything  # noqa: E402
from proex.train import make_optimizer, training_batches  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="synthetic:n_users=600,n_items=9000,mean_interactions=100")
    p.add_argument("--profiles", default="synthetic-latent:dim=384")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3, help="training steps per configuration and round")
    args = p.parse_args()
    inter = load_dataset(args.dataset)
    data = TrainData(inter)
    bank = load_profiles(args.profiles, inter)

    def setup(plugin: str, **plugin_config):
        r = resolve(
            CellConfig(
                dataset=args.dataset,
                model="lightgcn",
                plugin=plugin,
                plugin_config=plugin_config,
                profiles=args.profiles if plugin != "base" else None,
                train={"device": "cpu"},
            )
        )
        seed_everything(0)
        system = build_system(r, data, bank if plugin != "base" else None)
        opt = make_optimizer(system, r.train_cfg.lr, data.device)
        batches = list(training_batches(system, data, r.train_cfg.batch_size))
        return system, opt, batches

    block = proex_mod.CPU_BLOCK
    whole = 1 << 30  # larger than any n: P formed whole, as on a GPU
    configs = {
        "base LightGCN": (setup("base"), block),
        "ProEx": (setup("proex"), block),
        "ProEx without Ω": (setup("proex", reg_weight=0.0), block),
        "ProEx, Ω's P formed whole": (setup("proex"), whole),
    }
    b = configs["ProEx"][0][2][0]
    rows = b.distinct()
    pos = rows.pos.numel()
    print(
        f"{inter.name}: {inter.n_users} users, {inter.n_items} items, {inter.train.nnz} train; batch {b.users.numel()} "
        f"triples: Ω over [K={bank.k}, {rows.users.numel()} users] and [K={bank.k}, {pos} positive items] "
        f"-> [{bank.k}, {pos}, {pos}] exp matrix; torch threads {torch.get_num_threads()}"
    )
    times: dict[str, list[float]] = {k: [] for k in configs}
    for _ in range(args.rounds):
        for name, ((system, opt, batches), cpu_block) in configs.items():
            proex_mod.CPU_BLOCK = cpu_block
            system.train()
            t0 = time.perf_counter()
            for i in range(args.steps):
                loss = sum(system.loss_terms(batches[i % len(batches)]).values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            times[name].append((time.perf_counter() - t0) / args.steps)
    proex_mod.CPU_BLOCK = block
    base = statistics.median(times["base LightGCN"])
    print(f"{'configuration':28s} {'s/step (median)':>16s} {'x base':>8s}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:28s} {m:16.3f} {m / base:8.1f}")


if __name__ == "__main__":
    main()
