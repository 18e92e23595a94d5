"""`proex profiles`: the command, its profile-bank subcommands (import-rlmrec, synth, inspect) and the LLM
profile stage's four (estimate, generate, embed, offline: `cli.llm_profiles`).
"""

from __future__ import annotations

import json

from .dataset_flags import add_dataset_args, dataset_spec


def register(sub) -> None:
    p = sub.add_parser(
        "profiles",
        help="LLM profiles (estimate, generate, embed, offline) and profile banks (import-rlmrec, synth, inspect)",
    )
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
    # imported here, not at the top: `python -m proex.cli.llm_profiles` must find it not yet imported by proex.cli
    from .llm_profiles import register as register_llm_profiles  # estimate, generate, embed, offline

    register_llm_profiles(psub)


def run(args) -> int:
    from . import llm_profiles

    if args.profiles_cmd in llm_profiles.COMMANDS:
        return llm_profiles.run(args)
    from ..data.registry import load_dataset
    from ..profiles.bank import load_bank

    if args.profiles_cmd == "import-rlmrec":
        from ..profiles.importers import import_rlmrec

        spec = dataset_spec(args, default=None)
        inter = load_dataset(spec) if spec else None
        bank = import_rlmrec(args.source, inter.n_users if inter else None, inter.n_items if inter else None)
        bank = bank.save(args.out)
    elif args.profiles_cmd == "synth":
        from ..profiles.load import load_profiles

        bank = load_profiles(args.spec, load_dataset(dataset_spec(args))).save(args.out)
    else:
        bank = load_bank(args.bank, verify=args.verify)
    print(
        json.dumps(
            {
                "path": bank.path,
                "bank_id": bank.bank_id,
                "user": list(bank.user.shape),
                "item": list(bank.item.shape),
                **bank.manifest,
            },
            indent=2,
            default=str,
        )
    )
    return 0
