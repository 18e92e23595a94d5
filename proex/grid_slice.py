"""A slice of a grid (`--only model=lightgcn,gccf --only dataset=amazon`): the cells whose labels match every
`--only` (values within one flag are alternatives), for `ray_jobs/grid.py` and its `--dry-run` plan.
"""

from __future__ import annotations

from .config import ConfigError
from .grid import GridCell

LABELS = ("model", "plugin", "dataset", "seed", "variant", "profiles")  # what `--only` can select on


def parse_only(specs: list[str], flag: str = "--only") -> dict[str, set[str]]:
    """`--only` values -> {label: allowed values}. One flag holds comma-separated `label=value` items, and a
    bare item adds a value to the label before it: 'model=lightgcn,gccf,dataset=amazon' keeps cells whose model
    is lightgcn or gccf AND whose dataset is amazon; repeating the flag adds to the same mapping."""
    only: dict[str, set[str]] = {}
    for spec in specs:
        label = None
        for item in (s.strip() for s in spec.split(",")):
            if not item:
                continue
            if "=" in item:
                label, _, item = (p.strip() for p in item.partition("="))
                if label not in LABELS:
                    raise ConfigError(f"{flag} {spec!r}: unknown label {label!r}; labels: {', '.join(LABELS)}")
            elif label is None:
                raise ConfigError(f"{flag} {spec!r}: start with label=value, e.g. {flag} model=lightgcn,gccf")
            only.setdefault(label, set()).add(item)
    return only


def slice_cells(cells: list[GridCell], only: dict[str, set[str]], flag: str = "--only") -> list[GridCell]:
    """The cells whose labels match every label of `only` (one of its values each). A value that no cell of
    the grid has is an error naming the flag and the values the grid has (a typo would otherwise run nothing)."""

    def values_of(gc: GridCell, label: str) -> set[str]:
        return set(gc.variants) if label == "variant" else {str(gc.labels[label])}

    for label, values in only.items():
        have = {v for gc in cells for v in values_of(gc, label)}
        unknown = sorted(values - have)
        if unknown:
            raise ConfigError(
                f"{flag} {label}={','.join(unknown)}: no cell of the grid has {label} "
                f"{' or '.join(map(repr, unknown))}; the grid's values: {', '.join(sorted(have))}"
            )

    return [gc for gc in cells if all(values_of(gc, k) & vals for k, vals in only.items())]
