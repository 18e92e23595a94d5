"""What a grid cost and what is still missing, as report sections (pure pandas: no MLflow, no Ray).

Input `cost`: one row per cell run (any state) with the label columns model, plugin, dataset, seed, and
  start_s, end_s   the run's start and end (epoch seconds; end = now for a running run)
  paused_s         the time it sat interrupted between a stopped grid and its rerun (not device time)
  attempts         how many times a trial worked on it (1 = no retry)
  lost_s           time spent by attempts whose work a later attempt redid: from the later attempt's start back
                   to the last validation checkpoint before it, less the pause (`proex.infra.run_frames.cost_frame`)
Device time of a run = end - start - paused; device-hours = device time x the share of a device one trial asks
(its GPU fraction, or its CPUs when it asks no GPU). The grid's wall time is the union of its runs' intervals.

Input `states`: one row per cell of the whole grid with the label columns and `state` (finished, running,
interrupted, failed, pending: `proex.infra.grid_plan.run_state`).
"""

from __future__ import annotations

import pandas as pd

GROUP = ["model", "plugin", "dataset"]


def union_seconds(intervals: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end] intervals: the time at least one of them was open."""
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            total += (cur_e - cur_s) if cur_e is not None else 0.0
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + ((cur_e - cur_s) if cur_e is not None else 0.0)


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.3f}"


def cost_section(cost: pd.DataFrame, share: float, unit: str) -> str:
    """'## Cost': per (model, plug-in, dataset) and for the grid: cells, wall time, device-hours, retries and
    the time they lost. share: devices one trial asks; unit: 'GPU' or 'CPU'."""
    if cost.empty:
        return ""
    c = cost.assign(device_s=(cost["end_s"] - cost["start_s"] - cost["paused_s"]).clip(lower=0))
    rows = []
    for key, g in c.groupby(GROUP, sort=True):
        rows.append(
            [
                *key,
                len(g),
                _h(union_seconds(list(zip(g["start_s"], g["end_s"])))),
                _h(g["device_s"].sum() * share),
                int((g["attempts"] - 1).clip(lower=0).sum()),
                _h(g["lost_s"].sum() * share),
            ]
        )
    total = [
        "**grid**",
        "",
        "",
        len(c),
        _h(union_seconds(list(zip(c["start_s"], c["end_s"])))),
        _h(c["device_s"].sum() * share),
        int((c["attempts"] - 1).clip(lower=0).sum()),
        _h(c["lost_s"].sum() * share),
    ]
    head = ["model", "plug-in", "dataset", "runs", "wall h", f"{unit}-h", "retries", f"lost to retries {unit}-h"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows + [total]]
    return (
        "\n## Cost\n\nWall time: while at least one run of the row was open; device-hours: each run's time "
        f"(less the time it sat interrupted) x {share:g} {unit} per trial; retries: later attempts at a run; lost: "
        "the work those attempts redid, from the last validation before each restart.\n\n" + "\n".join(lines) + "\n"
    )


def incomplete_section(states: pd.DataFrame, reference: str, arm: str = "plugin") -> str:
    """'## Incomplete comparisons': each (dataset, model, arm vs reference) with a cell not finished, and how
    many of its seeds both arms have finished so far."""
    if states.empty or (states["state"] == "finished").all():
        return ""
    states = states.assign(variant=states.get("variant", "").fillna("") if "variant" in states else "")
    keys = ["dataset", "model"] + (["plugin"] if arm == "variant" else ["variant"])
    lines = []
    for key, g in states.groupby(keys, sort=False):
        ref = g[g[arm] == reference]
        ref_done = set(ref.loc[ref["state"] == "finished", "seed"])
        for name, a in g[g[arm] != reference].groupby(arm, sort=False):
            cells = pd.concat([ref, a])
            left = cells[cells["state"] != "finished"]
            if left.empty:
                continue
            matched = ref_done & set(a.loc[a["state"] == "finished", "seed"])
            seeds = len(set(cells["seed"]))
            what = ", ".join(f"{n} {s}" for s, n in left["state"].value_counts().items())
            label = " / ".join(str(k) for k in key if k != "")
            lines.append(f"- {label}: {name} vs {reference}: {len(matched)}/{seeds} seeds matched ({what})")
    if not lines:
        return ""
    return (
        "\n## Incomplete comparisons\n\nThe grid is not finished; these comparisons cover only the seeds "
        "both arms have finished:\n\n" + "\n".join(lines) + "\n"
    )
