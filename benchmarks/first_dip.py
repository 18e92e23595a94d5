"""Does a plug-in stop in its first dip? Validation curve, loss terms, best epoch and test Recall@20 of
LightGCN base vs a plug-in, with the official stopping rule (patience only) and with a warm-up / more patience.

    python benchmarks/first_dip.py                          # RLMRec-Con on a 600 x 9000 table, 384-d profiles
    python benchmarks/first_dip.py --seeds 0 1 2 --plugin rlmrec_con --profiles synthetic-latent:dim=384

Each row: arm, seed, stopping rule, epochs run, best epoch, first-dip flag, test Recall@20; with --curves the
validation Recall@20 and loss terms at every validation. Results and the command are written up in the issue note.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from proex.data.registry import load_dataset  # noqa: E402
from proex.experiment import CellConfig, run_cell  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="synthetic:n_users=600,n_items=9000,mean_interactions=100")
    p.add_argument("--plugin", default="rlmrec_con")
    p.add_argument("--profiles", default="synthetic-latent:dim=384")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--rules",
        nargs="+",
        default=["patience=5", "min_epochs=30,patience=5", "patience=20"],
        help="stopping rules: comma-separated TrainConfig overrides",
    )
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--curves", action="store_true", help="print every validation")
    p.add_argument("--arms", nargs="+", default=None, help="plug-ins to run (default: base and --plugin)")
    args = p.parse_args()
    if args.curves:  # each validation as it happens (proex.train logs it)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    inter = load_dataset(args.dataset)
    print(f"{args.dataset}: {inter.n_users} users, {inter.n_items} items, {inter.train.nnz} train")
    print(f"{'arm':<12} {'seed':>4} {'rule':<24} {'epochs':>6} {'best':>5} {'dip':>4} {'test R@20':>9}")
    for seed in args.seeds:
        for plugin in args.arms or ("base", args.plugin):
            for rule in args.rules:
                train = {"epochs": args.epochs, "seed": seed, "device": "cpu"}
                for kv in rule.split(","):
                    k, v = kv.split("=")
                    train[k] = int(v)
                cell = CellConfig(
                    dataset=args.dataset,
                    model="lightgcn",
                    plugin=plugin,
                    train=train,
                    profiles=args.profiles if plugin != "base" else None,
                )
                r = run_cell(cell, inter)[0].to_dict()
                print(
                    f"{plugin:<12} {seed:>4} {rule:<24} {r['epochs_run']:>6} {r['best_epoch']:>5} "
                    f"{'yes' if r['first_dip'] else 'no':>4} {r['test']['recall@20']:>9.4f}",
                    flush=True,
                )
                if args.curves:
                    for h in r["history"]:
                        losses = " ".join(f"{k[5:]} {v:.4f}" for k, v in h.items() if k.startswith("loss_"))
                        print(f"    epoch {h['epoch']:>4}  val R@20 {h['val_recall@20']:.4f}  {losses}")


if __name__ == "__main__":
    main()
