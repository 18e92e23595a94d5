"""`proex recommend`: top-K lists for users from a trained model, a local checkpoint or a finished cell's MLflow run.

    proex recommend --run 3f2c...e1 --users 0 1 2 --k 10  # top-10 lists from a run's best checkpoint
    proex recommend --checkpoint runs/x/checkpoint.pt --users-file users.txt --out recs.csv
    proex recommend --model-uri models:/proex-smoke-lightgcn-proex-synthetic@champion --users 0 1 2

--run and --model-uri (a logged or registered served model: the lists `mlflow models serve` answers with) need the
`infra` extra (MLflow); a local checkpoint needs nothing more.
"""

from __future__ import annotations

import json
import sys
import tempfile

from .dataset_flags import add_dataset_args, dataset_spec


def register(sub) -> None:
    c = sub.add_parser("recommend", help="top-K lists for users from a trained model")
    src = c.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="MLflow run id of a finished cell (its checkpoint artifact is used)")
    src.add_argument("--checkpoint", help="a checkpoint.pt written by `proex train` or a grid")
    src.add_argument(
        "--model-uri",
        help="a served model: models:/<name>@champion, models:/<name>/<version>, "
        "models:/<model id> or a local MLflow model folder",
    )
    who = c.add_mutually_exclusive_group(required=True)
    who.add_argument("--users", nargs="+", type=int, help="dense user indices")
    who.add_argument("--users-file", help="a file with one dense user index per line")
    c.add_argument("--k", type=int, default=20, help="list length (default 20)")
    add_dataset_args(c, default="the dataset the model was trained on")
    c.add_argument("--profiles", default=None, help="profile bank (default: the one the model was trained with)")
    c.add_argument("--device", default="cpu")
    c.add_argument("--tracking-uri", default=None, help="MLflow URI for --run and --model-uri")
    c.add_argument("--out", default=None, help="write .csv or .json instead of printing")


def run(args) -> int:
    from ..recommend import recommend

    users = args.users
    if users is None:
        with open(args.users_file) as f:
            users = [int(line) for line in f if line.strip()]
    if args.model_uri:
        from ..infra.served_model import recommend_from_model

        table = recommend_from_model(args.model_uri, users, args.k, args.tracking_uri)
        return write(table, args, users)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.checkpoint
        if args.run:
            from ..infra.tracker import Tracker

            tracker = Tracker(args.tracking_uri, experiment=None)
            path = tracker.download(args.run, "checkpoint/checkpoint.pt", tmp)
        table = recommend(path, users, args.k, dataset_spec(args, default=None), args.device, args.profiles)
    return write(table, args, users)


def write(table, args, users) -> int:
    if args.out:
        if args.out.endswith(".json"):
            table.to_json(args.out, orient="records", indent=1)
        else:
            table.to_csv(args.out, index=False)
        print(json.dumps({"out": args.out, "users": len(users), "rows": len(table)}))
    else:
        table.to_csv(sys.stdout, index=False, float_format="%.5f")
    return 0
