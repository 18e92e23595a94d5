"""Comparison groups and the protocol their arms train under.

A comparison group is the set of arms compared with one another: the plug-ins (the reference `base` among
them) run on one dataset and model, with the same variant and profiles, matched on seeds. A grid's `protocol`
chooses how their training protocols (`proex.protocol.PROTOCOL_KEYS`, plus `eval_offset`) relate:

  official  each arm keeps its paper/official protocol (`proex.reference`), e.g. base at RLMRec's patience 5
            and ProEx at ProRec's patience 20; the grid prints the differences when it starts and the report
            notes them on each affected row. The Table 2-4 grids use it, to reproduce the paper.
  shared    one protocol for every arm: the values stated in the grid file, and for the keys not stated the
            rule `shared_protocol` documents (the most generous early stopping among the arms).
  auto      (a grid without `protocol`) shared on datasets outside the paper's, official on the paper's.

The shared protocol is one layer of the cell (`shared_layer`), just above the reference configuration and below
the grid's `fixed`, the hparams file and the variant, so `proex config --sources` and every run's config show
it with its source. A later layer that sets a protocol key for one arm only is still reported as a difference.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import ConfigError
from .protocol import PROTOCOL_KEYS, describe_differences, is_borrowed, protocol_differences, protocol_of
from .reference import PAPER_DATASETS

MODES = ("official", "shared", "auto")
# what a shared protocol sets: the protocol keys but `select` (one grid-wide value already), plus when validation
# falls, which must agree for "every eval_every epochs" to mean the same epochs
SHARED_KEYS = tuple(k for k in PROTOCOL_KEYS if k != "select") + ("eval_offset",)
INT_KEYS = {"epochs", "patience", "eval_every", "min_epochs", "batch_size", "eval_offset"}


@dataclass(frozen=True)
class ProtocolSpec:
    """A grid's `protocol`: `official`, `shared`, `{shared: {patience: 20, ...}}` or absent (`auto`)."""

    mode: str = "auto"  # "official" | "shared" | "auto"
    stated: Mapping[str, Any] = field(default_factory=dict)  # shared values given in the grid file

    def mode_for(self, dataset: str) -> str:
        """'official' or 'shared' for a dataset key ('auto': shared outside the paper's datasets)."""
        if self.mode != "auto":
            return self.mode
        return "official" if dataset in PAPER_DATASETS else "shared"


def parse_protocol(value: Any, where: str) -> ProtocolSpec:
    """The grid file's `protocol` value as a ProtocolSpec; errors name the field and the accepted forms."""
    fix = "use protocol: official, protocol: shared, or protocol: {shared: {patience: 20, eval_every: 3}}"
    if value is None:
        return ProtocolSpec()
    if isinstance(value, str):
        if value not in MODES:
            raise ConfigError(f"{where}: {value!r}: {fix}")
        return ProtocolSpec(value)
    if not isinstance(value, dict) or list(value) != ["shared"] or not isinstance(value["shared"], dict):
        raise ConfigError(f"{where}: {value!r}: {fix}")
    stated = dict(value["shared"])
    for key, v in stated.items():
        if key not in SHARED_KEYS:
            raise ConfigError(
                f"{where}.shared.{key}: not a protocol key; use {', '.join(SHARED_KEYS)} "
                "(the selection metric is the grid's `select`)"
            )
        ok = isinstance(v, int) if key in INT_KEYS else isinstance(v, (int, float))
        if not ok or isinstance(v, bool) or v < (0 if key in ("min_epochs", "eval_offset") else 1e-12):
            raise ConfigError(
                f"{where}.shared.{key}: expected a positive {'integer' if key in INT_KEYS else 'number'}, got {v!r}"
            )
    return ProtocolSpec("shared", stated)


@functools.lru_cache(maxsize=256)
def reference_train(model: str, plugin: str, dataset: str) -> tuple[dict, dict]:
    """(train config as a dict, {key: source}) of an arm at its reference configuration alone (cached: read only)."""
    from .experiment import CellConfig, resolve

    r = resolve(CellConfig(dataset=dataset, model=model, plugin=plugin), check_profiles=False)
    return dataclasses.asdict(r.train_cfg), {
        k.split(".", 1)[1]: v for k, v in r.sources.items() if k.startswith("train.")
    }


def shared_protocol(
    arms: Mapping[str, Mapping[str, Any]],
    reference_arm: str | None = None,
    stated: Mapping[str, Any] | None = None,
    label: str = "grid protocol: shared",
) -> dict[str, tuple[Any, str]]:
    """{key: (value, source)} of the one protocol every arm trains under; `label` starts each source.

    arms: {arm name: train config dict} (each arm's own protocol). Rule, for each key not in `stated`:
      epochs, min_epochs  the largest among the arms (no arm is cut shorter than its own protocol allows);
      eval_every          the smallest (the best epoch is picked as finely as any arm picks it);
      patience            the longest stopping window in epochs, max(patience x eval_every), in validations at
                          the shared eval_every (rounded up): base 5 x 3 and ProEx 20 x 3 -> 20;
      lr, batch_size,     the reference arm's (the base's: the comparison asks whether a plug-in improves the
      eval_offset         base as trained): an optimiser setting is part of a method, not of its stopping rule.
    """
    stated = dict(stated or {})
    names = list(arms)
    ref = reference_arm if reference_arm in arms else sorted(names)[0]  # order-free: any arm's command agrees
    out: dict[str, tuple[Any, str]] = {}
    for key, value in stated.items():
        out[key] = (value, f"{label}, stated in the grid file")

    def pick(key: str, fn) -> None:
        if key in out:
            return
        values = {a: arms[a].get(key) for a in names}
        chosen = fn(values.values())
        who = ", ".join(a for a in names if values[a] == chosen)
        detail = ", ".join(f"{a} {values[a]}" for a in names)
        out[key] = (
            chosen,
            f"{label}: {key} {chosen} from {who}, the {'largest' if fn is max else 'smallest'} "
            f"among the arms ({detail})",
        )

    pick("epochs", max)
    pick("min_epochs", max)
    pick("eval_every", min)
    if "patience" not in out:
        every = out["eval_every"][0]
        windows = {a: arms[a]["patience"] * arms[a]["eval_every"] for a in names}
        longest = max(windows.values())
        detail = ", ".join(f"{a} {arms[a]['patience']} x {arms[a]['eval_every']}" for a in names)
        out["patience"] = (
            math.ceil(longest / every),
            f"{label}: patience {math.ceil(longest / every)}, the "
            f"longest stopping window among the arms, {longest} epochs ({detail}), in validations "
            f"every {every} epochs",
        )
    for key in ("lr", "batch_size", "eval_offset"):
        if key not in out:
            out[key] = (
                arms[ref].get(key),
                f"{label}: {key} of the reference arm {ref} ({', '.join(f'{a} {arms[a].get(key)}' for a in names)})",
            )
    return out


def shared_layer(
    model: str,
    plugins: Iterable[str],
    dataset: str,
    reference_arm: str | None,
    stated: Mapping[str, Any] | None = None,
    label: str = "grid protocol: shared",
) -> dict[str, tuple[Any, str]]:
    """The shared protocol of (model, dataset) over the arms `plugins`, each arm at its reference protocol."""
    arms = {p: reference_train(model, p, dataset)[0] for p in dict.fromkeys(plugins)}
    return shared_protocol(arms, reference_arm, stated, label)


def apply_layer(cell, layer: Mapping[str, tuple[Any, str]]):
    """The CellConfig with the shared protocol's train values on it, each key with its own source."""
    from .experiment import with_overrides

    for key, (value, source) in layer.items():
        cell = with_overrides(cell, {"train": {key: value}}, source)
    return cell


def borrowed_values(sources: Mapping[str, str]) -> dict[str, str]:
    """{"section.key": source} of the values whose source says borrowed or extrapolated."""
    return {k: v for k, v in sources.items() if is_borrowed(v)}


def difference_lines(
    arms_by_group: Mapping[str, Mapping[str, Mapping[str, Any]]], modes: Mapping[str, str]
) -> list[str]:
    """One line per comparison group whose arms' protocols differ (protocol_of of each arm's train dict)."""
    lines = []
    for group, arms in arms_by_group.items():
        text = describe_differences(protocol_differences({a: protocol_of(t) for a, t in arms.items()}))
        extra = {a: t.get("eval_offset", 0) for a, t in arms.items()}
        if len(set(extra.values())) > 1:
            text = (
                (text + "; " if text else "protocol differs: ")
                + "eval_offset "
                + " vs ".join(f"{v} ({a})" for a, v in extra.items())
            )
        if not text:
            if modes.get(group) == "shared":
                first = next(iter(arms.values()))
                values = ", ".join(f"{k} {first.get(k)}" for k in SHARED_KEYS + ("select",))
                lines.append(f"{group}: one shared protocol for {', '.join(arms)}: {values}")
            continue
        note = (
            " [official per-arm protocols, as in the paper's tables; `protocol: shared` trains every arm alike]"
            if modes.get(group) == "official"
            else " [shared protocol, changed for some arms by a later layer (fixed, hparams file or variant)]"
        )
        lines.append(f"{group}: {text}{note}")
    return lines
