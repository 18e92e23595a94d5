"""`proex data synth|inspect|fetch`: generate the synthetic dataset, check a dataset, download one."""

from __future__ import annotations

import argparse
import json

from ..config import ConfigError, parse_overrides
from ..data.public import PUBLIC
from .dataset_flags import add_dataset_args, dataset_spec


def register(sub) -> None:
    p = sub.add_parser("data", help="dataset tools")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    s = dsub.add_parser("synth", help="generate the synthetic text-attributed dataset")
    s.add_argument("--out", required=True, help="directory to write (RLMRec pickles + text tables)")
    s.add_argument(
        "--set",
        dest="synth_set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="SyntheticConfig overrides, e.g. n_users=2000 seed=3",
    )
    i = dsub.add_parser("inspect", help="print counts, sparsity and checks of a dataset")
    add_dataset_args(i, positional=True)
    names = ", ".join(PUBLIC)
    f = dsub.add_parser(
        "fetch",
        help="download and verify the RLMRec archive (amazon, yelp, steam), or a public dataset as a card: " + names,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="public datasets (their files, URLs and checksums: proex.data.public):\n"
        + "\n".join(f"  {n:20s}{d.note}" for n, d in PUBLIC.items()),
    )
    f.add_argument("name", nargs="?", default=None, help=f"a public dataset ({names}); none: the RLMRec archive")
    f.add_argument("--dest", default=None, help="where to unpack (default: the registry's data directory)")
    f.add_argument(
        "--url",
        default=None,
        help="a mirror (default: the official location): the archive URL, or for "
        "a public dataset of several files the folder holding them; GroupLens checksums are read from "
        "<archive URL>.md5, the others are pinned or recorded (see proex.data.public)",
    )
    f.add_argument(
        "--refresh",
        action="store_true",
        help="public dataset: download again although installed, "
        "checked against the same checksums (Steam, Amazon: the SHA-256 recorded at the first download)",
    )


def run(args) -> int:
    from ..data import registry

    if args.data_cmd == "inspect":
        spec = dataset_spec(args, default=None)
        if spec is None:
            raise ConfigError("data inspect: name a dataset (a registry name, a path or a table) or --card FILE")
        inter = registry.load_dataset(spec)
        info = inter.summary()
        info["expected_mismatches"] = registry.check_expected(inter)
        if inter.extras.get("card"):
            info.update(
                dataset=spec,
                counts=inter.extras.get("counts"),
                card=inter.extras["card"],
                text_columns={
                    s: list(t.columns)
                    for s, t in (("user", inter.user_text), ("item", inter.item_text))
                    if t is not None
                },
            )
        print(json.dumps(info, indent=2, default=str))
        return 0
    if args.data_cmd == "synth":
        from ..config import build
        from ..data.export import save_rlmrec
        from ..data.synthetic import SyntheticConfig, make_synthetic

        inter = make_synthetic(build(SyntheticConfig, parse_overrides(args.synth_set), "--set"))
        written = save_rlmrec(inter, args.out)
        print(json.dumps({"out": args.out, "files": written, **inter.summary()}, indent=2, default=str))
        return 0
    if args.data_cmd == "fetch":
        if args.name:
            from ..data.public import fetch_public

            card = fetch_public(args.name, args.dest, url=args.url, refresh=args.refresh)
            print(
                json.dumps(
                    {"fetched": args.name, "card": str(card), "next": f"proex data inspect --card {card}"}, indent=2
                )
            )
            return 0
        from ..data.fetch import RLMREC_URL, fetch_rlmrec

        done = fetch_rlmrec(args.dest, url=args.url or RLMREC_URL)
        print(json.dumps({"fetched": done}, indent=2))
        return 0
