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
    proex recommend --model-uri models:/proex-smoke-lightgcn-proex-synthetic@champion --users 0 1 2
    proex models register --grid grids/smoke.yaml [--promote <run id>]

This module builds the parser and dispatches; each subcommand is one module of this package with
`register(subparsers)` and `run(args) -> exit status`: train, data, profiles (banks; the LLM stage in
llm_profiles), report, recommend, models (the model registry), config. `dataset_flags` holds the dataset flags
several of them share.
The library never reads argv; this package is the only place that does.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..config import ConfigError
from ..data.interactions import DataError
from . import config, data, models, profiles, recommend, report, train

# subcommand -> its module, in the order `proex --help` lists them
COMMANDS = {
    "train": train,
    "data": data,
    "profiles": profiles,
    "report": report,
    "recommend": recommend,
    "models": models,
    "config": config,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="proex", description=__doc__.split("\n")[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="only print the final JSON")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for command in COMMANDS.values():
        command.register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    try:
        return COMMANDS[args.cmd].run(args)
    except (ConfigError, DataError, ValueError, FileNotFoundError) as exc:
        print(f"proex: error: {exc}", file=sys.stderr)
        return 2
