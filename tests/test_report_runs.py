"""`proex report <folder>` on ad-hoc `proex train` outputs: the grid report's files, with paired t-tests over the
seeds that match, computed from the metrics.json files; and clear errors for folders it cannot pair."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
from scipy import stats

from proex.cli import main

DATA = "synthetic:n_users=120,n_items=80,seed=1"


PATIENCE = {"base": 5, "proex": 20}  # the arms stop by different rules: the report must say so


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for seed in (0, 1, 2):
        for plugin in ("base", "proex"):
            extra = ["--profiles", "synthetic-latent"] if plugin == "proex" else []
            assert (
                main(
                    [
                        "-q",
                        "train",
                        "--dataset",
                        DATA,
                        "--model",
                        "lightgcn",
                        "--plugin",
                        plugin,
                        *extra,
                        "--train",
                        "epochs=3",
                        f"patience={PATIENCE[plugin]}",
                        "--seed",
                        str(seed),
                        "--out",
                        str(root / f"{plugin}-{seed}"),
                    ]
                )
                == 0
            )
    return root


def test_report_of_a_folder_of_train_outputs(runs, tmp_path, capsys):
    capsys.readouterr()
    assert main(["-q", "report", str(runs), "--out", str(tmp_path / "rep")]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    assert set(files) == {"report.md", "summary.csv", "comparison.csv", "table.tex", "curves.png"}
    metrics = {
        (p.parent.name.split("-")[0], int(p.parent.name.split("-")[1])): json.loads(p.read_text())["test"]
        for p in runs.glob("*/metrics.json")
    }
    comp = pd.read_csv(files["comparison.csv"])
    row = comp[(comp.metric == "recall@20") & (comp.arm == "proex")].iloc[0]
    base = [metrics[("base", s)]["recall@20"] for s in (0, 1, 2)]
    proex = [metrics[("proex", s)]["recall@20"] for s in (0, 1, 2)]
    assert row["n"] == 3 and row["dataset"] == "synthetic" and row["model"] == "lightgcn"
    assert row["mean"] == pytest.approx(sum(proex) / 3, rel=1e-5) and row["ref_mean"] == pytest.approx(
        sum(base) / 3, rel=1e-5
    )
    assert row["p_value"] == pytest.approx(stats.ttest_rel(proex, base).pvalue, rel=1e-4)
    md = open(files["report.md"]).read()
    assert (
        "Paired tests (paired t-test)" in md
        and "improv. proex" in md
        and "\\toprule" in open(files["table.tex"]).read()
    )
    # --test applies to folders too
    assert main(["-q", "report", str(runs), "--out", str(tmp_path / "rep-w"), "--test", "wilcoxon"]) == 0
    comp = pd.read_csv(json.loads(capsys.readouterr().out)["files"]["comparison.csv"])
    row = comp[(comp.metric == "recall@20") & (comp.arm == "proex")].iloc[0]
    assert row["test"] == "wilcoxon" and row["p_value"] == pytest.approx(stats.wilcoxon(proex, base).pvalue, rel=1e-4)


def test_folder_report_prints_the_protocol_note_intervals_and_holm_p(runs, tmp_path, capsys):
    """Three seeds of base (patience 5) and ProEx (patience 20) from `proex train --out`: `proex report <folder>`
    prints each comparison with its 95% interval, raw and Holm-adjusted p and the protocol note."""
    capsys.readouterr()
    assert main(["-q", "report", str(runs), "--out", str(tmp_path / "rep")]) == 0
    out = json.loads(capsys.readouterr().out)
    comp = pd.read_csv(out["files"]["comparison.csv"])
    lines = out["comparisons"]
    assert len(lines) == len(comp) == 4  # recall/ndcg @10/@20, proex vs base
    line = next(x for x in lines if "recall@20" in x)
    row = comp[comp.metric == "recall@20"].iloc[0]
    metrics = {p.parent.name: json.loads(p.read_text())["test"]["recall@20"] for p in runs.glob("*/metrics.json")}
    d = [metrics[f"proex-{s}"] - metrics[f"base-{s}"] for s in (0, 1, 2)]
    low, high = stats.t.interval(0.95, 2, loc=sum(d) / 3, scale=stats.sem(d))
    assert (row.ci_low, row.ci_high) == pytest.approx((low, high), rel=1e-4, abs=1e-9)
    holm = sorted(comp.p_value)  # family of 4: Holm's smallest adjusted p is 4 x the smallest raw p
    assert comp.p_holm.min() == pytest.approx(min(1.0, 4 * holm[0]), rel=1e-4)
    ref = row.ref_mean
    assert line.startswith("synthetic lightgcn: proex vs base recall@20: ")
    assert f"95% CI [{100 * low / ref:+.1f}, {100 * high / ref:+.1f}]%" in line
    assert f"(p={row.p_value:.2e}, Holm {row.p_holm:.2e})" in line
    assert line.endswith("; protocol differs: patience 5 (base) vs 20 (proex)")
    md = open(out["files"]["report.md"]).read()
    assert "## Protocol and tuning" in md and "by hand (command line): train.epochs, train.patience" in md
    assert "- † synthetic lightgcn, proex vs base: protocol differs: patience 5 (base) vs 20 (proex)" in md


def test_folder_errors_are_clear(runs, tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    shutil.copytree(runs / "base-0", tmp_path / "a" / "base-0")
    shutil.copytree(runs / "base-0", tmp_path / "a" / "base-0-again")
    assert main(["report", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "base-0-again" in err and "seed 0" in err and "another folder" in err
    assert main(["report", str(runs / "proex-0")]) == 2
    assert "no run with plug-in 'base'" in capsys.readouterr().err
