"""The report's protocol and tuning parity (proex.report_provenance), borrowed values, and the reproduction
column against the paper's transcribed values (proex.paper_values) on a hand-made frame with known numbers."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import yaml

from proex import report
from proex.grid import ReportSpec
from proex.paper_values import PAPER, TABLES, paper_value
from proex.report_provenance import describe_tuning, tuning_of

TRAIN = {
    "epochs": 1000,
    "patience": 5,
    "eval_every": 3,
    "min_epochs": 0,
    "batch_size": 4096,
    "lr": 0.001,
    "select": "recall@20",
}
REF = {
    "train.epochs": "reference: RLMRec lightgcn.yml",
    "train.patience": "reference: RLMRec lightgcn.yml",
    "train.seed": "grid axes.seed: g.yaml",
}


def frame(proto: dict[str, dict], sources: dict[str, dict], lift: float = 0.01) -> pd.DataFrame:
    """lightgcn on amazon, base and proex over 3 seeds, each arm with its protocol and sources."""
    rows = []
    for seed, noise in ((1, 0.001), (2, -0.002), (3, 0.0)):
        for plugin in ("base", "proex"):
            r = 0.14 + noise + (lift + noise / 2) * (plugin == "proex")
            rows.append(
                {
                    "dataset": "amazon",
                    "model": "lightgcn",
                    "plugin": plugin,
                    "seed": seed,
                    "variant": "",
                    "recall@20": r,
                    "ndcg@20": r / 2,
                    "best_epoch": 90 if plugin == "base" else 230,
                    "protocol": proto[plugin],
                    "sources": sources[plugin],
                }
            )
    return pd.DataFrame(rows)


def test_rows_whose_arms_ran_different_patience_carry_the_protocol_note(tmp_path):
    runs = frame({"base": TRAIN, "proex": {**TRAIN, "patience": 20}}, {"base": REF, "proex": REF})
    files, cmp = report.write_report(runs, str(tmp_path), ReportSpec(metrics=("recall@20", "ndcg@20")), title="p")
    assert (cmp.protocol == "protocol differs: patience 5 (base) vs 20 (proex)").all()
    assert (cmp.tuning == "").all()
    md = open(files["report.md"]).read()
    assert "(Holm " in md and " †" in md.split("## Paired tests")[0]
    assert "- † amazon lightgcn, proex vs base: protocol differs: patience 5 (base) vs 20 (proex)" in md
    section = md.split("## Protocol and tuning")[1].split("##")[0]
    assert "| amazon | lightgcn |  | proex | epochs 1000, patience 20, eval_every 3" in section
    assert "| 230 |" in section and "| 90 |" in section  # the mean best epochs: how long each arm trained
    assert "protocol differs" in pd.read_csv(files["comparison.csv"]).protocol[0]
    same = frame({"base": TRAIN, "proex": TRAIN}, {"base": REF, "proex": REF})
    assert (report.compare(same, ["recall@20"]).protocol == "").all()


def test_tuning_parity_names_the_study_budget_and_flags_unequal_tuning(tmp_path):
    hp = tmp_path / "lightgcn-proex-amazon.yaml"
    hp.write_text(
        yaml.safe_dump(
            {
                "model_config": {"layers": 2},
                "source": {"study": "table2-lightgcn-proex-amazon-ab12", "trial": 7, "complete_trials": 20},
            }
        )
    )
    tuned = {**REF, "model_config.layers": f"hparams file: {hp}", "train.epochs": "command line: --train"}
    t = tuning_of(tuned)
    assert t.budgets == ("20 complete trials",)
    assert describe_tuning(t) == (
        "reference table; study table2-lightgcn-proex-amazon-ab12 (20 complete trials): "
        "model_config.layers; by hand (command line): train.epochs"
    )
    runs = frame({"base": TRAIN, "proex": TRAIN}, {"base": REF, "proex": tuned})
    files, cmp = report.write_report(runs, str(tmp_path / "r"), ReportSpec(metrics=("recall@20",)), title="t")
    assert cmp.tuning[0] == (
        "tuning differs: searched 20 complete trials (proex) vs reference table only (base); "
        "set by hand train.epochs (proex) vs none (base)"
    )
    md = open(files["report.md"]).read()
    assert "study table2-lightgcn-proex-amazon-ab12 (20 complete trials): model_config.layers" in md
    # both arms tuned by studies of the same budget, same hand keys: no flag
    runs = frame({"base": TRAIN, "proex": TRAIN}, {"base": tuned, "proex": tuned})
    assert (report.compare(runs, ["recall@20"]).tuning == "").all()


def test_borrowed_values_are_listed_once_under_the_tables(tmp_path):
    src = {
        **REF,
        "model_config.beta": "reference: borrowed from DMRec mult_vae_godm.yml: Mult-VAE's beta",
        "train.lr": "extrapolated: the yelp temperature from amazon's",
    }
    runs = frame({"base": TRAIN, "proex": TRAIN}, {"base": src, "proex": REF})
    files, _ = report.write_report(runs, str(tmp_path), ReportSpec(metrics=("recall@20",)), title="b")
    md = open(files["report.md"]).read()
    listed = md.split("Borrowed or extrapolated settings")[1].split("##")[0]
    assert listed.count("| amazon | lightgcn |  | base | model_config.beta | reference: borrowed from DMRec") == 1
    assert "| train.lr | extrapolated: the yelp temperature" in listed and "| proex |" not in listed


def test_paper_values_are_transcribed_once_and_agree_where_printed_twice():
    cite = "ProEx paper (KDD'26) Table "
    assert paper_value("gccf", "proex", "amazon", "recall@20") == (0.1443, cite + "2, row GCCF+ProEx")
    assert paper_value("cvga", "proex", "steam", "ndcg@20")[0] == 0.0991
    assert paper_value("ldiffrec", "base", "yelp", "recall@10") == (0.0721, cite + "2, row L-DiffRec base")
    assert paper_value("lightgcn", "rlmrec_con", "yelp", "ndcg@20") == (0.0776, cite + "3, row RLMRec-C")
    assert paper_value("multvae", "dmrec_m", "steam", "recall@20") == (0.1536, cite + "4, row DMRec-M")
    assert paper_value("lightgcn", "kar", "yelp", "recall@10") is None  # Table 3 prints @20 only
    assert paper_value("gccf", "base", "ml", "recall@20") is None
    assert len(TABLES[2]) == 6 * 2 * 3 * 4 and len(TABLES[3]) == 5 * 3 * 2 and len(TABLES[4]) == 4 * 3 * 2
    for table in (3, 4):  # ProEx rows of Tables 3 and 4 repeat Table 2's
        for key, (value, _) in TABLES[table].items():
            if key in TABLES[2]:
                assert TABLES[2][key][0] == value and PAPER[key][1].startswith("ProEx paper (KDD'26) Table 2")


def test_reproduction_column_on_a_golden_frame(tmp_path):
    """Hand numbers: base 0.1400/0.1410/0.1420 -> mean 0.1410, sd 0.0010, 95% CI 0.1410 ± 4.3027 · 0.0010/√3 =
    [0.13852, 0.14348] holds the paper's 0.1411 (diff -0.07%); proex 0.1600/0.1610/0.1620 -> [0.15852, 0.16348]
    misses the paper's 0.1533 (+5.02%); movielens and the variant-labelled runs have no paper value."""
    rows = [
        {"dataset": d, "model": "lightgcn", "plugin": p, "seed": s, "variant": "", "recall@20": v + 0.001 * i}
        for d in ("amazon", "movielens")
        for p, v in (("base", 0.1400), ("proex", 0.1600))
        for i, s in enumerate((1, 2, 3))
    ]
    files, _ = report.write_report(pd.DataFrame(rows), str(tmp_path), ReportSpec(metrics=("recall@20",)), title="r")
    summary = pd.read_csv(files["summary.csv"], keep_default_na=False)
    amazon = summary[summary.dataset == "amazon"].set_index("plugin")
    half = 4.302652729911275 * 0.001 / math.sqrt(3)
    bounds = amazon.loc["base", ["ci_low", "ci_high"]].astype(float).tolist()
    assert bounds == pytest.approx([0.141 - half, 0.141 + half], rel=1e-5)
    assert float(amazon.loc["base", "paper"]) == 0.1411 and amazon.loc["base", "paper_in_ci"] == "yes"
    assert float(amazon.loc["base", "paper_diff_pct"]) == pytest.approx(100 * (0.141 - 0.1411) / 0.1411, rel=1e-4)
    assert float(amazon.loc["proex", "paper_diff_pct"]) == pytest.approx(100 * (0.161 - 0.1533) / 0.1533, rel=1e-4)
    assert amazon.loc["proex", "paper_in_ci"] == "no"
    assert amazon.loc["proex", "paper_source"] == "ProEx paper (KDD'26) Table 2, row LightGCN+ProEx"
    assert (summary[summary.dataset == "movielens"].paper_source == "").all()
    md = open(files["report.md"]).read()
    assert "1 of 2 cells reproduce" in md
    row = "| amazon | lightgcn | {} |  | recall@20 | 3 | {} | [{}, {}] | {} | {} | {} |"
    assert row.format("proex", "0.1610", "0.1585", "0.1635", "0.1533", "+5.02%", "no") in md
    assert row.format("base", "0.1410", "0.1385", "0.1435", "0.1411", "-0.07%", "yes") in md
