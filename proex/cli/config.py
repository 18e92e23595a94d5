"""`proex config`: print the resolved configuration of one cell, optionally with the layer behind every value.

    proex config --model lightgcn --plugin proex --dataset steam
    proex config --model gccf --plugin rlmrec_con --dataset yelp --set layers=3 --sources
    proex config --model lightgcn --plugin base --dataset amazon --compare-with proex              # official protocols
    proex config --model lightgcn --plugin base --dataset amazon --protocol shared --compare-with proex

The "protocol" block says which protocol the cell trains under and, with --compare-with, how it differs from
the other arms'. `proex train` takes the same --protocol/--compare-with, so both resolve the same cell.
"""

from __future__ import annotations

import json

from ..config import parse_overrides

DEFAULT_TEXT_DIM = 1536  # text-embedding-ada-002, the paper's profile embedder


def register(sub) -> None:
    p = sub.add_parser(
        "config", help="print a cell's resolved configuration (JSON); --sources: where each value comes from"
    )
    p.add_argument("--model", default="lightgcn", help="gccf, lightgcn, simgcl, multvae, ldiffrec, cvga")
    p.add_argument("--plugin", default="base", help="base, proex, rlmrec_con, rlmrec_gen, kar, alpharec, dmrec_g|c|m")
    p.add_argument(
        "--dataset",
        default="synthetic",
        help="amazon, yelp, steam, or any other dataset name or path "
        "(datasets outside the paper take the Amazon-Book reference rows)",
    )
    p.add_argument(
        "--profiles",
        default=None,
        help="profile bank (its width, read from its manifest or spec, sets the profile MLP's hidden width)",
    )
    p.add_argument(
        "--text-dim",
        type=int,
        default=None,
        help=f"profile embedding width when no --profiles is given (default {DEFAULT_TEXT_DIM}, ada-002)",
    )
    p.add_argument("--set", dest="model_set", nargs="*", default=[], metavar="KEY=VALUE", help="model overrides")
    p.add_argument("--plugin-set", nargs="*", default=[], metavar="KEY=VALUE", help="plug-in overrides")
    p.add_argument("--train", dest="train_set", nargs="*", default=[], metavar="KEY=VALUE", help="training overrides")
    add_protocol_args(p)
    p.add_argument("--sources", action="store_true", help="print {value, source} for every setting")


def add_protocol_args(p) -> None:
    """--protocol and --compare-with, shared by `proex train` and `proex config`."""
    p.add_argument(
        "--protocol",
        choices=("official", "shared"),
        default="official",
        help="official: this arm's own paper protocol (default); shared: the one protocol of the arms "
        "--plugin and --compare-with (the most generous early stopping among them, proex.comparisons), "
        "so every arm's command trains alike",
    )
    p.add_argument(
        "--compare-with",
        nargs="+",
        default=[],
        metavar="PLUGIN",
        help="the other arms of the comparison (e.g. base proex): the shared protocol is theirs too, "
        "and `proex config` prints the protocol differences with them",
    )


def cell_from_args(args, dataset: str | None = None):
    """The CellConfig of `proex train`/`proex config` flags, each override's source recorded as its flag.
    dataset: the dataset string the card flags make (`dataset_flags.dataset_spec`); default `--dataset`."""
    from ..comparisons import apply_layer, shared_layer
    from ..experiment import CellConfig, with_overrides
    from ..plugins import check_pair

    for plugin in (args.plugin, *args.compare_with):
        check_pair(args.model, plugin)  # the refusal `proex train` and `proex config` share, before any data
    if args.protocol == "shared" and not args.compare_with:
        raise ValueError("--protocol shared: name the other arms with --compare-with (e.g. --compare-with base)")
    cell = CellConfig(dataset=dataset or args.dataset, model=args.model, plugin=args.plugin, profiles=args.profiles)
    if args.protocol == "shared":
        cell = apply_layer(
            cell,
            shared_layer(
                args.model,
                sorted({args.plugin, *args.compare_with}),
                cell.dataset,
                "base",
                label="command line: --protocol shared",
            ),
        )
    for section, flag, items in (
        ("model_config", "--set", args.model_set),
        ("plugin_config", "--plugin-set", args.plugin_set),
        ("train", "--train", args.train_set),
    ):
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
    out["protocol"] = protocol_block(args, resolved)
    if args.sources:
        for section in ("model_config", "plugin_config", "train"):
            out[section] = {
                k: {"value": v, "source": resolved.sources[f"{section}.{k}"]} for k, v in out[section].items()
            }
    print(json.dumps(out, indent=2, default=str, ensure_ascii=False))
    return 0


def protocol_block(args, resolved) -> dict:
    """{mode, values, and with --compare-with: each arm's protocol and the differences} for `proex config`."""
    import dataclasses

    from ..comparisons import SHARED_KEYS
    from ..experiment import resolve
    from ..protocol import describe_differences, protocol_differences, protocol_of

    def values(r) -> dict:
        train = dataclasses.asdict(r.train_cfg)
        return {**protocol_of(train), "eval_offset": train["eval_offset"]}

    block = {"mode": args.protocol, "values": values(resolved)}
    if args.compare_with:
        arms = {args.plugin: block["values"]}
        for plugin in args.compare_with:
            other = argparse_copy(args, plugin=plugin)
            arms[plugin] = values(resolve(cell_from_args(other), where="--compare-with", check_profiles=False))
        block["arms"] = arms
        diffs = protocol_differences({a: {k: v for k, v in p.items() if k != "eval_offset"} for a, p in arms.items()})
        if len({p["eval_offset"] for p in arms.values()}) > 1:
            diffs["eval_offset"] = {a: p["eval_offset"] for a, p in arms.items()}
        block["differences"] = describe_differences(diffs) or f"none: one protocol ({', '.join(SHARED_KEYS)})"
    return block


def argparse_copy(args, **changes):
    """args with `changes` applied and the other arms as --compare-with (the same comparison, seen from one arm)."""
    import argparse

    ns = argparse.Namespace(**vars(args))
    for key, value in changes.items():
        setattr(ns, key, value)
    ns.compare_with = [p for p in dict.fromkeys([args.plugin, *args.compare_with]) if p != ns.plugin]
    return ns
