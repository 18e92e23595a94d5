"""A grid a slice at a time (`--only`), its plan's pieces and the report's cost / incomplete sections (fast: no
Ray, no MLflow; the end-to-end versions are in test_grid_ops.py)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from proex.config import ConfigError
from proex.grid import load_grid
from proex.grid_slice import parse_only, slice_cells
from proex.report_cost import cost_section, incomplete_section, union_seconds

GRIDS = os.path.join(os.path.dirname(__file__), "..", "grids")


def table2():
    return load_grid(os.path.join(GRIDS, "table2.yaml")).expand()


def test_only_selects_by_any_label_with_several_values():
    cells = table2()
    only = parse_only(["model=lightgcn,gccf,dataset=amazon", "seed=2023,2024"])
    assert only == {"model": {"lightgcn", "gccf"}, "dataset": {"amazon"}, "seed": {"2023", "2024"}}
    picked = slice_cells(cells, only)
    assert {(c.config.model, c.labels["dataset"], c.seed) for c in picked} == {
        (m, "amazon", s) for m in ("lightgcn", "gccf") for s in (2023, 2024)
    }
    assert len(picked) == 2 * 2 * 2  # x 2 plug-ins
    assert len(slice_cells(cells, parse_only(["plugin=proex"]))) == 180


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("modle=lightgcn", "--only 'modle=lightgcn': unknown label 'modle'; labels: model, plugin"),
        ("lightgcn", "--only 'lightgcn': start with label=value"),
    ],
)
def test_only_rejects_bad_syntax_naming_the_flag(spec, needle):
    with pytest.raises(ConfigError) as e:
        parse_only([spec])
    assert needle in str(e.value)


def test_only_value_no_cell_has_is_an_error_listing_the_grid_values():
    with pytest.raises(ConfigError) as e:
        slice_cells(table2(), parse_only(["model=lightgnc"]))
    assert "--only model=lightgnc" in str(e.value) and "lightgcn" in str(e.value) and "gccf" in str(e.value)


def test_union_of_run_intervals():
    assert union_seconds([(0, 10), (5, 12), (20, 25)]) == 17
    assert union_seconds([]) == 0


def test_cost_section_sums_device_hours_retries_and_lost_time():
    cost = pd.DataFrame(
        [
            {
                "model": "lightgcn",
                "plugin": "base",
                "dataset": "a",
                "seed": 0,
                "start_s": 0,
                "end_s": 3600,
                "paused_s": 0,
                "attempts": 1,
                "lost_s": 0,
            },
            {
                "model": "lightgcn",
                "plugin": "base",
                "dataset": "a",
                "seed": 1,
                "start_s": 0,
                "end_s": 7200,
                "paused_s": 3600,
                "attempts": 3,
                "lost_s": 1800,
            },
        ]
    )
    text = cost_section(cost, 0.5, "GPU")
    assert "| lightgcn | base | a | 2 | 2.000 | 1.000 | 2 | 0.250 |" in text  # (3600 + 3600) s x 0.5 GPU
    assert "| **grid** |  |  | 2 | 2.000 | 1.000 | 2 | 0.250 |" in text


def test_incomplete_section_names_comparisons_with_cells_left():
    rows = [
        {
            "dataset": "a",
            "model": "m",
            "plugin": p,
            "variant": "",
            "seed": s,
            "state": "pending" if (p, s) == ("proex", 1) else "finished",
        }
        for p in ("base", "proex")
        for s in (0, 1)
    ]
    rows += [
        {"dataset": "b", "model": "m", "plugin": p, "variant": "", "seed": 0, "state": "finished"}
        for p in ("base", "proex")
    ]
    text = incomplete_section(pd.DataFrame(rows), "base")
    assert "- a / m: proex vs base: 1/2 seeds matched (1 pending)" in text
    assert "b / m" not in text
    assert incomplete_section(pd.DataFrame(rows[4:]), "base") == ""
