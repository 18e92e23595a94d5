"""`proex train`: train and evaluate one cell, writing checkpoint.pt and metrics.json to its output folder."""

from __future__ import annotations

import json
import os

from .. import checkpoint
from .config import add_protocol_args, cell_from_args
from .dataset_flags import add_dataset_args, dataset_spec


def register(sub) -> None:
    p = sub.add_parser("train", help="train and evaluate one model on one dataset")
    add_dataset_args(p)
    p.add_argument("--model", default="lightgcn", help="gccf, lightgcn, simgcl, multvae, ldiffrec, cvga")
    p.add_argument(
        "--plugin",
        default="base",
        help="base (the model alone), proex, rlmrec_con, rlmrec_gen, "
        "kar (pairwise bases), alpharec (lightgcn), dmrec_g|c|m (generative bases)",
    )
    p.add_argument(
        "--profiles",
        default=None,
        help="profile bank for profile-aware plug-ins: a bank folder, "
        "rlmrec:<folder with usr_emb_np*.pkl>, or synthetic-latent[:k=4,...] for the synthetic data",
    )
    p.add_argument(
        "--set",
        dest="model_set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="model config overrides, e.g. layers=2 reg_weight=1e-5",
    )
    p.add_argument("--plugin-set", nargs="*", default=[], metavar="KEY=VALUE", help="plug-in config overrides")
    p.add_argument(
        "--train",
        dest="train_set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="training overrides, e.g. epochs=50 patience=10 batch_size=2048",
    )
    p.add_argument("--seed", type=int, help="random seed (default: the model family's reference seed)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1")
    p.add_argument("--out", default=None, help="output directory (default runs/<model>-<plugin>-<dataset>-<hash>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/train_state.pt if present")
    add_protocol_args(p)


def run(args) -> int:
    from ..data.registry import load_dataset
    from ..experiment import dataset_key, resolve, run_cell

    cell = cell_from_args(args, dataset_spec(args))
    resolved = resolve(cell, where="command line")
    out = args.out or os.path.join(
        "runs",
        f"{cell.model}-{cell.plugin}-{dataset_key(cell.dataset)}-s{resolved.train_cfg.seed}-{resolved.config_hash()}",
    )
    os.makedirs(out, exist_ok=True)
    inter = load_dataset(cell.dataset)
    state_path = os.path.join(out, "train_state.pt")
    if not args.resume and os.path.exists(state_path):
        os.remove(state_path)
    result, system = run_cell(resolved, inter, state_path=state_path)
    checkpoint.save(
        os.path.join(out, "checkpoint.pt"),
        system,
        result.config,
        inter,
        {"val": result.val, "test": result.test, "best_epoch": result.best_epoch},
        profile_bank=result.profile_bank,
        config_hash=result.config_hash,
    )
    record = result.to_dict()
    if inter.extras.get("card"):  # every dataset key that ran, not only those the command named
        record["dataset_card"] = inter.extras["card"]
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(record, f, indent=2)
    os.remove(state_path)
    summary = {
        "out": out,
        "model": cell.model,
        "plugin": cell.plugin,
        "dataset": inter.name,
        "seed": resolved.train_cfg.seed,
        "best_epoch": result.best_epoch,
        "val": result.val,
        "test": result.test,
        "wall_seconds": round(result.wall_seconds, 1),
        **({"first_dip": result.first_dip_warning} if result.first_dip else {}),
    }
    print(json.dumps(summary, indent=2))
    return 0
