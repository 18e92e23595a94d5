"""The training protocol of an arm, and the words that mark a borrowed setting.

A comparison is fair only if its arms train under the same protocol: how long they may train, when they stop,
how often they validate and which validation metric picks the best epoch. `PROTOCOL_KEYS` are those
`TrainConfig` fields; grids print differences when they start and the report notes them on each affected row.

A setting copied from another model or dataset, or extrapolated beyond what an official file gives, carries a
source text that starts with one of `BORROWED_PREFIXES` (e.g. "borrowed from DMRec multvae.yml: ...",
"extrapolated: ..."), so `proex config --sources`, the grid's start and the report can list it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROTOCOL_KEYS = ("epochs", "patience", "eval_every", "min_epochs", "batch_size", "lr", "select")
BORROWED_PREFIXES = ("borrowed", "extrapolated")


def protocol_of(train: Mapping[str, Any]) -> dict[str, Any]:
    """The protocol part of a resolved train config (a `TrainConfig` as a dict)."""
    return {k: train.get(k) for k in PROTOCOL_KEYS}


def protocol_differences(arms: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """{key: {arm: value}} for every protocol key on which the arms' protocols (`protocol_of` dicts) differ."""
    diffs: dict[str, dict[str, Any]] = {}
    for key in PROTOCOL_KEYS:
        values = {arm: proto.get(key) for arm, proto in arms.items()}
        if len({repr(v) for v in values.values()}) > 1:
            diffs[key] = values
    return diffs


def describe_differences(diffs: Mapping[str, Mapping[str, Any]]) -> str:
    """'protocol differs: patience 5 (base) vs 20 (proex); lr ...', or '' when the arms agree."""
    if not diffs:
        return ""
    parts = [f"{key} " + " vs ".join(f"{v} ({arm})" for arm, v in values.items()) for key, values in diffs.items()]
    return "protocol differs: " + "; ".join(parts)


def is_borrowed(source: str) -> bool:
    """Whether a value's source text says it was borrowed from another model/dataset or extrapolated."""
    return str(source).lower().startswith(BORROWED_PREFIXES)
