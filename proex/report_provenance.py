"""What each arm of a comparison trained under, and where its settings came from (pure pandas, no MLflow).

The runs frame (`proex.infra.run_frames.runs_frame`, `proex.report_runs.train_outputs_frame`) carries per run
`protocol` (`proex.protocol.protocol_of` of the resolved train config) and `sources` (the per-value source texts
`proex.experiment.resolve` records, "section.key" -> text). From them:

* protocol parity — `row_notes` gives a comparison row "protocol differs: patience 5 (base) vs 20 (proex)"
  (`proex.protocol.describe_differences`) when the arm's protocol is not the reference's;
* tuning parity — `tuning_of` sorts a run's values by the layer that set them: searched (an hparams file, with
  the budget of the study that wrote it, or a study trial), by hand (grid fixed / grid variant / command line)
  or neither (reference table, code default, derived); `row_notes` flags arms whose searched budgets, or whose
  hand-set model/train keys, differ;
* borrowed values — sources marked by `proex.protocol.is_borrowed`, listed once under the report's tables;
* `protocol_section` — the report's "Protocol and tuning" section: every arm's protocol, tuning and best epoch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .protocol import PROTOCOL_KEYS, describe_differences, is_borrowed, protocol_differences
from .report_format import to_markdown

SEARCH_LAYERS = ("hparams file", "study trial")
HAND_LAYERS = ("grid fixed", "grid variant", "command line", "cell")
NOT_TUNING = ("train.seed", "train.device")  # set per run by the seed axis / the machine, never tuned


@dataclass(frozen=True)
class Tuning:
    """One run's (or one arm's) tuning: searched = {"study X (20 complete trials)": keys}, hand = {layer: keys},
    borrowed = ((key, source), ...)."""

    searched: tuple[tuple[str, tuple[str, ...]], ...] = ()
    hand: tuple[tuple[str, tuple[str, ...]], ...] = ()
    borrowed: tuple[tuple[str, str], ...] = ()
    budgets: tuple[str, ...] = ()  # the searched budgets alone ("20 complete trials"), compared across arms


@functools.lru_cache(maxsize=256)
def study_budget(hparams_path: str) -> tuple[str, str]:
    """(label, budget) of an hparams file from its `source` block (written by `proex.infra.studies`)."""
    from .hparams import load_hparams

    try:
        src = load_hparams(Path(hparams_path)).source
    except Exception:  # the file moved since the run: say so rather than guess
        return f"hparams file {hparams_path} (unreadable now: budget unknown)", "unknown budget"
    if src.get("study") and src.get("complete_trials") is not None:
        budget = f"{src['complete_trials']} complete trials"
        return f"study {src['study']} ({budget})", budget
    return f"hparams file {hparams_path} (no study recorded: set by hand)", "hparams file without a study"


def _layer(source: str) -> str:
    text = str(source)
    if text.startswith("grid variant"):
        return text.split(":")[0]
    return next((layer for layer in SEARCH_LAYERS + HAND_LAYERS if text == layer or text.startswith(layer + ":")), "")


def tuning_of(sources: dict | None) -> Tuning:
    """The tuning of one run from its per-value sources (None or {}: a run that did not record them)."""
    searched: dict[str, list[str]] = {}
    hand: dict[str, list[str]] = {}
    borrowed, budgets = [], set()
    for key, source in sorted((sources or {}).items()):
        text = str(source)
        if is_borrowed(text) or is_borrowed(text.removeprefix("reference: ")):
            borrowed.append((key, text))
        layer = _layer(text)
        if key in NOT_TUNING or not layer:
            continue
        if layer == "hparams file":
            label, budget = study_budget(text.partition(":")[2].strip())
        elif layer == "study trial":
            label, budget = "a study trial", "study trial"
        else:
            hand.setdefault(layer, []).append(key)
            continue
        searched.setdefault(label, []).append(key)
        budgets.add(budget)
    pack = lambda d: tuple((k, tuple(v)) for k, v in sorted(d.items()))  # noqa: E731
    return Tuning(pack(searched), pack(hand), tuple(borrowed), tuple(sorted(budgets)))


def describe_tuning(t: Tuning) -> str:
    """'reference table; study X (20 complete trials): model_config.layers; by hand (command line): train.epochs'."""
    parts = ["reference table"] + [f"{label}: {', '.join(keys)}" for label, keys in t.searched]
    parts += [f"by hand ({layer}): {', '.join(keys)}" for layer, keys in t.hand]
    return "; ".join(parts)


def _distinct(rows: pd.DataFrame, column: str) -> list:
    if column not in rows:
        return []
    out = {}
    for value in rows[column]:
        if isinstance(value, dict):
            out.setdefault(repr(sorted(value.items())), value)
    return list(out.values())


def arm_protocol(rows: pd.DataFrame) -> dict | None:
    """The protocol of an arm's runs (one value per key; runs that disagree read 'a|b'), None if unrecorded."""
    protos = _distinct(rows, "protocol")
    if not protos:
        return None
    return {
        k: "|".join(dict.fromkeys(str(p.get(k)) for p in protos))
        if len({repr(p.get(k)) for p in protos}) > 1
        else protos[0].get(k)
        for k in PROTOCOL_KEYS
    }


def arm_tuning(rows: pd.DataFrame) -> Tuning | None:
    """The tuning of an arm's runs (the first run's when they agree, which they do within one grid), None if
    the runs recorded no sources."""
    tunings = list(dict.fromkeys(tuning_of(s) for s in _distinct(rows, "sources")))
    if not tunings:
        return None
    if len(tunings) == 1:
        return tunings[0]
    merge = lambda f: tuple(dict.fromkeys(x for t in tunings for x in getattr(t, f)))  # noqa: E731
    return Tuning(merge("searched"), merge("hand"), merge("borrowed"), tuple(sorted(set(merge("budgets")))))


def _hand_keys(t: Tuning) -> set[str]:
    return {k for _, keys in t.hand for k in keys if not k.startswith("plugin_config.")}


def row_notes(ref_rows: pd.DataFrame, arm_rows: pd.DataFrame, ref_name: str, arm_name: str) -> tuple[str, str]:
    """(protocol note, tuning note) of an arm against the reference; '' where they agree or were not recorded.

    Tuning differs when the arms' searched budgets differ (one arm from a study and the other from none, or
    studies of different sizes) or they set different model/train keys by hand (plug-in keys are the arm's own)."""
    protos = {ref_name: arm_protocol(ref_rows), arm_name: arm_protocol(arm_rows)}
    protocol = describe_differences(protocol_differences(protos)) if None not in protos.values() else ""
    tref, tarm = arm_tuning(ref_rows), arm_tuning(arm_rows)
    if tref is None or tarm is None:
        return protocol, ""
    parts = []
    if tref.budgets != tarm.budgets:
        show = lambda t: ", ".join(t.budgets) or "reference table only"  # noqa: E731
        parts.append(f"searched {show(tarm)} ({arm_name}) vs {show(tref)} ({ref_name})")
    if _hand_keys(tref) != _hand_keys(tarm):
        show = lambda t: ", ".join(sorted(_hand_keys(t))) or "none"  # noqa: E731
        parts.append(f"set by hand {show(tarm)} ({arm_name}) vs {show(tref)} ({ref_name})")
    return protocol, ("tuning differs: " + "; ".join(parts)) if parts else ""


def protocol_table(runs: pd.DataFrame, group: list[str], arm: str) -> pd.DataFrame:
    """One row per group and arm: its protocol, its tuning and mean best epoch (columns of strings)."""
    rows = []
    for key, g in runs.groupby(group + [arm], observed=True, sort=True):
        proto, tuning = arm_protocol(g), arm_tuning(g)
        best = pd.to_numeric(g["best_epoch"], errors="coerce").mean() if "best_epoch" in g else float("nan")
        rows.append(
            {
                **dict(zip(group + [arm], map(str, key))),
                "protocol": ", ".join(f"{k} {v}" for k, v in proto.items()) if proto else "not recorded",
                "tuning": describe_tuning(tuning) if tuning else "not recorded",
                "mean best epoch": "" if pd.isna(best) else f"{best:.0f}",
            }
        )
    return pd.DataFrame(rows)


def borrowed_table(runs: pd.DataFrame, group: list[str], arm: str) -> pd.DataFrame:
    """Every borrowed or extrapolated value once: the group labels, the arm, setting, source."""
    rows = {}
    for _, r in runs.iterrows():
        for key, source in (tuning_of(r.get("sources")) if isinstance(r.get("sources"), dict) else Tuning()).borrowed:
            rows.setdefault(tuple(str(r[c]) for c in group + [arm]) + (key,), source)
    return pd.DataFrame([(*k, v) for k, v in rows.items()], columns=group + [arm, "setting", "source"])


def protocol_section(matched: pd.DataFrame, arm: str, group: list[str]) -> str:
    """'Protocol and tuning': every arm's training protocol, where its settings came from (and the budget of
    any study behind them), its mean best epoch; then the borrowed or extrapolated values, once."""
    text = (
        "## Protocol and tuning\n\nThe training protocol each arm ran under (compared row by row above: "
        "'protocol differs'), where its settings came from (reference table; a study, with its trial budget; "
        "or set by hand) and its mean best epoch over the matched seeds.\n\n"
        f"{to_markdown(protocol_table(matched, group, arm), index=False)}"
    )
    borrowed = borrowed_table(matched, group, arm)
    if not borrowed.empty:
        text += (
            "\nBorrowed or extrapolated settings (not from the arm's own official configuration for this "
            f"dataset):\n\n{to_markdown(borrowed, index=False)}"
        )
    return text + "\n"
