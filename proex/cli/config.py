"""`proex config`: print the resolved configuration of one cell, optionally with the layer behind every value.

    proex config --model lightgcn --plugin proex --dataset steam
    proex config --model gccf --plugin rlmrec_con --dataset yelp --set layers=3 --sources
"""
from __future__ import annotations

import json

from ..config import parse_overrides

DEFAULT_TEXT_DIM = 1536  # text-embedding-ada-002, the paper's profile embedder


def register(sub) -> None:
    p = sub.add_parser("config", help="print a cell's resolved configuration (JSON); --sources: where each "
                       "value comes from")
    p.add_argument("--model", default="lightgcn", help="gccf, lightgcn, simgcl, multvae, ldiffrec, cvga")
    p.add_argument("--plugin", default="base", help="base, proex, rlmrec_con, rlmrec_gen, kar, alpharec, dmrec_g|c|m")
    p.add_argument("--dataset", default="synthetic", help="amazon, yelp, steam, or any other dataset name or path "
                   "(datasets outside the paper take the Amazon-Book reference rows)")
    p.add_argument("--profiles", default=None, help="profile bank (its width, read from its manifest or spec, sets "
                   "the profile MLP's hidden width)")
    p.add_argument("--text-dim", type=int, default=None,
                   help=f"profile embedding width when no --profiles is given (default {DEFAULT_TEXT_DIM}, ada-002)")
    p.add_argument("--set", dest="model_set", nargs="*", default=[], metavar="KEY=VALUE", help="model overrides")
    p.add_argument("--plugin-set", nargs="*", default=[], metavar="KEY=VALUE", help="plug-in overrides")
    p.add_argument("--train", dest="train_set", nargs="*", default=[], metavar="KEY=VALUE", help="training overrides")
    p.add_argument("--sources", action="store_true", help="print {value, source} for every setting")


def cell_from_args(args, dataset: str | None = None):
    """The CellConfig of `proex train`/`proex config` flags, each override's source recorded as its flag.
    dataset: the dataset string the card flags make (`dataset_flags.dataset_spec`); default `--dataset`."""
    from ..experiment import CellConfig, with_overrides

    cell = CellConfig(dataset=dataset or args.dataset, model=args.model, plugin=args.plugin, profiles=args.profiles)
    for section, flag, items in (("model_config", "--set", args.model_set),
                                 ("plugin_config", "--plugin-set", args.plugin_set),
                                 ("train", "--train", args.train_set)):
        cell = with_overrides(cell, {section: parse_overrides(items, flag)}, f"command line: {flag}")
    for key, flag in (("seed", "seed"), ("device", "device")):
        if getattr(args, flag, None) is not None:
            cell = with_overrides(cell, {"train": {key: getattr(args, flag)}}, f"command line: --{flag}")
    return cell


def run(args) -> int:
    from ..experiment import resolve
    from ..plugins import plugin_class

    cell = cell_from_args(args)
    text_dim = args.text_dim
    if plugin_class(cell.plugin).needs_profiles and text_dim is None:
        if cell.profiles:
            from ..profiles.load import profile_width

            text_dim = profile_width(cell.profiles)
        else:
            text_dim = DEFAULT_TEXT_DIM
    resolved = resolve(cell, where="command line", text_dim=text_dim, check_profiles=False)
    out = resolved.to_dict()
    if args.sources:
        for section in ("model_config", "plugin_config", "train"):
            out[section] = {k: {"value": v, "source": resolved.sources[f"{section}.{k}"]}
                            for k, v in out[section].items()}
    print(json.dumps(out, indent=2, default=str, ensure_ascii=False))
    return 0
