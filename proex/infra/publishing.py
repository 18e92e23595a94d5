"""A grid's report put on its MLflow parent run: the files (proex.report) as artifacts under report/, raw and
Holm-adjusted p-values and improvements as metrics, and report.md with its figures as the run's description
(rendered by the UI).
"""

from __future__ import annotations

import os
import urllib.parse

from .grid_plan import cell_runs, run_state
from .run_frames import cost_frame, curves_frame, runs_frame
from .tracker import Tracker, is_finished, metric_key

DESCRIPTION_LIMIT = 8000  # MLflow truncates a tag value past this many characters (MAX_TAG_VAL_LENGTH)


def describe_run(tracker: Tracker, run_id: str, report_md: str, figures: list[str]) -> None:
    """The run's description (tag mlflow.note.content, rendered as Markdown on its page): the report's
    text, then its figures as images served by the tracking server (`get-artifact`, relative to the UI).
    A report longer than a tag holds keeps its leading sections whole and names the ones left out, which
    stay in the run's artifact report/report.md: never a table cut mid-row."""
    images = [
        f"![{os.path.splitext(f)[0]}](get-artifact?"
        f"{urllib.parse.urlencode({'path': f'report/{f}', 'run_uuid': run_id})})"
        for f in figures
    ]
    figures_md = "\n## Figures\n\n" + "\n\n".join(images) + "\n" if images else ""
    body = report_md + figures_md
    if len(body) > DESCRIPTION_LIMIT:
        head, *sections = report_md.split("\n## ")
        kept, left = head, []
        for section in sections:
            if left or len(kept) + len(section) + len(figures_md) + 400 > DESCRIPTION_LIMIT:
                left.append(section.partition("\n")[0])
            else:
                kept += "\n## " + section
        more = f"\n\n*The full report is the artifact report/report.md; not shown here: {'; '.join(left)}.*\n"
        body = (kept + more + figures_md)[:DESCRIPTION_LIMIT]
    tracker.set_tags(run_id, {"mlflow.note.content": body})


def publish_report(
    grid, tracker: Tracker, out_dir: str, cells: list | None = None, log: bool = True, found: list | None = None
) -> dict[str, str]:
    """Read the grid's finished runs back, write the report (proex.report) to `out_dir` and, with `log`, put
    its files on the grid's parent run (artifacts under report/) with p-values and improvements as metrics
    (`pvalue/<metric>/<dataset>/<model>/<arm>`, Holm-adjusted under `pvalue_holm/`). found: the caller's current
    `tracker.find(kind="cell")` (one search of 360 runs takes seconds on a tracking server), else it is read here.
    Returns {file name: path}."""
    from .. import report

    cells = cells if cells is not None else grid.expand()
    found = tracker.find(kind="cell") if found is None else found  # read once: frames and sections share it
    runs = runs_frame(tracker, cells, {r.data.tags["key"]: r for r in found if is_finished(r)})
    curves = (
        curves_frame(tracker, runs, f"val_{grid.select}")
        if "curves" in grid.report.figures and not runs.empty
        else None
    )
    files, comparison = report.write_report(runs, out_dir, grid.report, curves, title=grid.name)
    append_progress_sections(grid, tracker, cells, files["report.md"], cell_runs(tracker, found))
    parents = tracker.find(kind="grid", key=grid.name)
    if log and parents:
        run_id = parents[0].info.run_id
        tracker.log_files(run_id, files.values(), "report")
        with open(files["report.md"]) as f:
            describe_run(tracker, run_id, f.read(), [n for n in files if n.endswith(".png")])
        stats = {}
        for _, r in comparison.iterrows():
            name = f"{metric_key(r['metric'])}/{r['dataset']}/{r['model']}/{r['arm']}"
            if r.get("variant") and r["arm"] != r.get("variant"):
                name += f"/{r['variant']}"
            stats[metric_key(f"pvalue/{name}")] = r["p_value"]
            stats[metric_key(f"pvalue_holm/{name}")] = r["p_holm"]
            stats[metric_key(f"improvement_pct/{name}")] = r["improvement_pct"]
        tracker.log_metrics(run_id, stats, step=len(runs))
        tracker.set_tags(run_id, {"report_runs": len(runs)})
    return files


def append_progress_sections(grid, tracker: Tracker, cells: list, report_md: str, runs: dict) -> None:
    """Add to report.md what the grid cost (`report_cost.cost_section`) and, while cells are left, the
    comparisons still incomplete (`report_cost.incomplete_section`). runs: cell id -> run (`cell_runs`)."""
    import pandas as pd

    from ..report_cost import cost_section, incomplete_section

    states = pd.DataFrame(
        [{**gc.labels, "variant": v, "state": run_state(runs.get(gc.cell_id))} for gc in cells for v in gc.variants]
    )
    r = grid.resources
    share, unit = (r.gpu, "GPU") if r.gpu > 0 else (r.cpu, "CPU")
    arm, reference = (
        ("variant", grid.report.reference_variant)
        if grid.report.reference_variant
        else ("plugin", grid.report.reference)
    )
    text = incomplete_section(states, reference, arm) + cost_section(cost_frame(tracker, cells, runs), share, unit)
    with open(report_md, "a") as f:
        f.write(text)
