"""`proex` command line: train one cell, and generate, inspect or fetch datasets.

    proex train --dataset amazon --model lightgcn --set layers=2 --train patience=10 --seed 1
    proex data synth --out data/synth --set n_users=2000
    proex data inspect amazon
    proex data fetch --dest ../shared/data
    proex data fetch movielens-small --dest data    # a public dataset as a card (data/movielens-small/*.yaml)
    proex profiles estimate|generate|embed|offline ...   (LLM profile stage)
    proex config --model lightgcn --plugin proex --dataset steam --sources
    proex report grids/table2.yaml
    proex recommend --run <mlflow run id> --users 0 1 2 --k 10

The library never reads argv; this module is the only place that does.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from . import checkpoint, cli_config, cli_grid
from .cli_dataset import add_dataset_args, dataset_spec
from .config import ConfigError, parse_overrides
from .data.interactions import DataError
from .data.public import PUBLIC as _PUBLIC

PUBLIC_NAMES = tuple(_PUBLIC)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train and evaluate one model on one dataset")
    add_dataset_args(p)
    p.add_argument("--model", default="lightgcn", help="gccf, lightgcn, simgcl, multvae, ldiffrec, cvga")
    p.add_argument("--plugin", default="base", help="base (the model alone), proex, rlmrec_con, rlmrec_gen, "
                   "kar (pairwise bases), alpharec (lightgcn), dmrec_g|c|m (generative bases)")
    p.add_argument("--profiles", default=None, help="profile bank for profile-aware plug-ins: a bank folder, "
                   "rlmrec:<folder with usr_emb_np*.pkl>, or synthetic-latent[:k=4,...] for the synthetic data")
    p.add_argument("--set", dest="model_set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="model config overrides, e.g. layers=2 reg_weight=1e-5")
    p.add_argument("--plugin-set", nargs="*", default=[], metavar="KEY=VALUE", help="plug-in config overrides")
    p.add_argument("--train", dest="train_set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="training overrides, e.g. epochs=50 patience=10 batch_size=2048")
    p.add_argument("--seed", type=int, help="random seed (default: the model family's reference seed)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1")
    p.add_argument("--out", default=None, help="output directory (default runs/<model>-<plugin>-<dataset>-<hash>)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/train_state.pt if present")


def _add_data(sub) -> None:
    p = sub.add_parser("data", help="dataset tools")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    s = dsub.add_parser("synth", help="generate the synthetic text-attributed dataset")
    s.add_argument("--out", required=True, help="directory to write (RLMRec pickles + text tables)")
    s.add_argument("--set", dest="synth_set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="SyntheticConfig overrides, e.g. n_users=2000 seed=3")
    i = dsub.add_parser("inspect", help="print counts, sparsity and checks of a dataset")
    add_dataset_args(i, positional=True)
    f = dsub.add_parser("fetch", help="download and verify the RLMRec archive (amazon, yelp, steam), or a public "
                        "dataset as a card: " + ", ".join(PUBLIC_NAMES),
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog="public datasets (their files, URLs and checksums: proex.data.public):\n" + "\n".join(
                            f"  {n:20s}{d.note}" for n, d in _PUBLIC.items()))
    f.add_argument("name", nargs="?", default=None, help=f"a public dataset ({', '.join(PUBLIC_NAMES)}); "
                   "none: the RLMRec archive")
    f.add_argument("--dest", default=None, help="where to unpack (default: the registry's data directory)")
    f.add_argument("--url", default=None, help="a mirror (default: the official location): the archive URL, or for "
                   "a public dataset of several files the folder holding them; GroupLens checksums are read from "
                   "<archive URL>.md5, the others are pinned or recorded (see proex.data.public)")
    f.add_argument("--refresh", action="store_true", help="public dataset: download again although installed, "
                   "checked against the same checksums (Steam, Amazon: the SHA-256 recorded at the first download)")


def _add_profiles(sub) -> None:
    p = sub.add_parser("profiles", help="LLM profiles (estimate, generate, embed, offline) and profile banks "
                       "(import-rlmrec, synth, inspect)")
    psub = p.add_subparsers(dest="profiles_cmd", required=True)
    i = psub.add_parser("import-rlmrec", help="stack usr/itm_emb_np[_k].pkl of RLMRec/ProEx into a bank")
    i.add_argument("source", help="folder holding usr_emb_np.pkl, itm_emb_np.pkl and optionally *_np_1..K-1.pkl")
    i.add_argument("--out", required=True, help="bank folder to write")
    add_dataset_args(i, default="none; name one to check the row counts against")
    s = psub.add_parser("synth", help="write a bank of latent views for a synthetic dataset (labelled synthetic)")
    add_dataset_args(s)
    s.add_argument("--spec", default="synthetic-latent", help="e.g. synthetic-latent:k=4,dim=64,noise_profiles=0")
    s.add_argument("--out", required=True)
    n = psub.add_parser("inspect", help="print a bank's manifest and shapes")
    n.add_argument("bank")
    n.add_argument("--verify", action="store_true", help="recompute checksums")
    from .cli_profiles import register as register_llm_profiles  # estimate, generate, embed, offline

    register_llm_profiles(psub)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="proex", description=__doc__.split("\n")[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="only print the final JSON")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_train(sub)
    _add_data(sub)
    _add_profiles(sub)
    cli_grid.register(sub)  # report, recommend
    cli_config.register(sub)  # config
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    try:
        handled = cli_grid.run(args)
        if handled is not None:
            return handled
        if args.cmd == "config":
            return cli_config.run(args)
        if args.cmd == "train":
            return _train(args)
        if args.cmd == "profiles":
            return _profiles(args)
        return _data(args)
    except (ConfigError, DataError, ValueError, FileNotFoundError) as exc:
        print(f"proex: error: {exc}", file=sys.stderr)
        return 2


def _train(args) -> int:
    from .data.registry import load_dataset
    from .experiment import dataset_key, resolve, run_cell

    cell = cli_config.cell_from_args(args, dataset_spec(args))
    resolved = resolve(cell, where="command line")
    out = args.out or os.path.join("runs", f"{cell.model}-{cell.plugin}-{dataset_key(cell.dataset)}"
                                          f"-s{resolved.train_cfg.seed}-{resolved.config_hash()}")
    os.makedirs(out, exist_ok=True)
    inter = load_dataset(cell.dataset)
    state_path = os.path.join(out, "train_state.pt")
    if not args.resume and os.path.exists(state_path):
        os.remove(state_path)
    result, system = run_cell(cell, inter, state_path=state_path)
    checkpoint.save(os.path.join(out, "checkpoint.pt"), system, result["config"], inter,
                    {"val": result["val"], "test": result["test"], "best_epoch": result["best_epoch"]},
                    profile_bank=result.get("profile_bank"))
    if inter.extras.get("card"):  # every dataset key that ran, not only those the command named
        result["dataset_card"] = inter.extras["card"]
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(result, f, indent=2)
    os.remove(state_path)
    summary = {"out": out, "model": cell.model, "plugin": cell.plugin, "dataset": inter.name,
               "seed": resolved.train_cfg.seed, "best_epoch": result["best_epoch"],
               "val": result["val"], "test": result["test"], "wall_seconds": round(result["wall_seconds"], 1),
               **({"first_dip": result["first_dip"]} if result.get("first_dip") else {})}
    print(json.dumps(summary, indent=2))
    return 0


def _profiles(args) -> int:
    from . import cli_profiles

    if args.profiles_cmd in cli_profiles.COMMANDS:
        return cli_profiles.run(args)
    from .data.registry import load_dataset
    from .profiles.bank import load_bank

    if args.profiles_cmd == "import-rlmrec":
        from .profiles.importers import import_rlmrec

        spec = dataset_spec(args, default=None)
        inter = load_dataset(spec) if spec else None
        bank = import_rlmrec(args.source, inter.n_users if inter else None, inter.n_items if inter else None)
        bank = bank.save(args.out)
    elif args.profiles_cmd == "synth":
        from .profiles.load import load_profiles

        bank = load_profiles(args.spec, load_dataset(dataset_spec(args))).save(args.out)
    else:
        bank = load_bank(args.bank, verify=args.verify)
    print(json.dumps({"path": bank.path, "bank_id": bank.bank_id, "user": list(bank.user.shape),
                      "item": list(bank.item.shape), **bank.manifest}, indent=2, default=str))
    return 0


def _data(args) -> int:
    from .data import registry

    if args.data_cmd == "inspect":
        spec = dataset_spec(args, default=None)
        if spec is None:
            raise ConfigError("data inspect: name a dataset (a registry name, a path or a table) or --card FILE")
        inter = registry.load_dataset(spec)
        info = inter.summary()
        info["expected_mismatches"] = registry.check_expected(inter)
        if inter.extras.get("card"):
            info.update(dataset=spec, counts=inter.extras.get("counts"), card=inter.extras["card"],
                        text_columns={s: list(t.columns) for s, t in (("user", inter.user_text),
                                                                        ("item", inter.item_text)) if t is not None})
        print(json.dumps(info, indent=2, default=str))
        return 0
    if args.data_cmd == "synth":
        from .config import build
        from .data.export import save_rlmrec
        from .data.synthetic import SyntheticConfig, make_synthetic

        inter = make_synthetic(build(SyntheticConfig, parse_overrides(args.synth_set), "--set"))
        written = save_rlmrec(inter, args.out)
        print(json.dumps({"out": args.out, "files": written, **inter.summary()}, indent=2, default=str))
        return 0
    if args.data_cmd == "fetch":
        if args.name:
            from .data.public import fetch_public

            card = fetch_public(args.name, args.dest, url=args.url, refresh=args.refresh)
            print(json.dumps({"fetched": args.name, "card": str(card),
                              "next": f"proex data inspect --card {card}"}, indent=2))
            return 0
        from .data.fetch import RLMREC_URL, fetch_rlmrec

        done = fetch_rlmrec(args.dest, url=args.url or RLMREC_URL)
        print(json.dumps({"fetched": done}, indent=2))
        return 0
    raise AssertionError(args.data_cmd)


if __name__ == "__main__":
    raise SystemExit(main())
