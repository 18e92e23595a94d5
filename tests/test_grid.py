"""Grid files: the shipped grids load, bad files fail with errors naming the file and field, expansion is
ordered with stable ids, hparams files and variants merge as documented."""

from __future__ import annotations

import os
import textwrap

import pytest
import yaml

from proex.config import ConfigError
from proex.data.cards import load_card_file
from proex.data.interactions import DataError
from proex.experiment import resolve
from proex.grid import apply_params, load_grid, parse_select

GRIDS = os.path.join(os.path.dirname(__file__), "..", "grids")


def write(tmp_path, body: str, name: str = "g.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


MINIMAL = """
name: t
axes: {model: [lightgcn], plugin: [base, proex], dataset: [synthetic], seed: [0, 1]}
fixed: {profiles: synthetic-latent, train: {epochs: 3}}
"""


@pytest.mark.parametrize(
    "name,n",
    [
        ("smoke", 8),
        ("table2", 360),
        ("table3", 90),
        ("table4", 75),
        ("ablation", 110),
        ("sensitivity", 102),
        ("tune_smoke", 1),
    ],
)
def test_shipped_grids_load_and_expand(name, n):
    grid = load_grid(os.path.join(GRIDS, f"{name}.yaml"))
    cells = grid.expand()
    assert len(cells) == n and len({c.cell_id for c in cells}) == n
    for c in cells:
        assert c.config.train["select"] == grid.select and c.config.train["seed"] == c.seed


def test_table2_covers_the_paper_matrix_and_fills_profiles_per_dataset(tmp_path):
    cells = load_grid(os.path.join(GRIDS, "table2.yaml")).expand()
    assert {(c.config.model, c.config.plugin, c.config.dataset) for c in cells} == {
        (m, p, d)
        for m in ("gccf", "lightgcn", "simgcl", "multvae", "ldiffrec", "cvga")
        for p in ("base", "proex")
        for d in ("amazon", "yelp", "steam")
    }
    proex = next(c for c in cells if c.config.plugin == "proex" and c.config.dataset == "yelp")
    assert proex.config.profiles == "rlmrec:{data_dir}/{dataset}"  # ids do not depend on the machine
    assert proex.runnable(data_dir=str(tmp_path)).profiles == f"rlmrec:{tmp_path}/yelp"
    assert next(c for c in cells if c.config.plugin == "base").config.profiles is None


def test_expansion_order_and_ids_are_stable(tmp_path):
    a = load_grid(write(tmp_path, MINIMAL)).expand()
    b = load_grid(write(tmp_path, MINIMAL, "copy.yaml")).expand()
    assert [c.cell_id for c in a] == [c.cell_id for c in b]
    assert [(c.config.plugin, c.seed) for c in a] == [("base", 0), ("proex", 0), ("base", 1), ("proex", 1)]
    assert all(c.cell_id == resolve(c.config).config_hash() for c in a)


def test_hparams_file_merges_between_fixed_and_variant(tmp_path):
    (tmp_path / "hp").mkdir()
    (tmp_path / "hp" / "lightgcn-proex-synthetic.yaml").write_text(
        yaml.safe_dump({"model_config": {"layers": 2}, "plugin_config": {"num_envs": 5}, "train": {"lr": 0.01}})
    )
    body = MINIMAL + "hparams: hp\n"
    body = body.replace("seed: [0, 1]}", "seed: [0], variant: [{name: a}, {name: b, plugin_config: {num_envs: 2}}]}")
    cells = load_grid(write(tmp_path, body)).expand()
    proex = [c for c in cells if c.config.plugin == "proex"]
    assert [c.config.plugin_config["num_envs"] for c in proex] == [5, 2]  # variant beats hparams
    assert proex[0].config.model_config == {"layers": 2} and proex[0].config.train["lr"] == 0.01
    base = [c for c in cells if c.config.plugin == "base"]
    assert len(base) == 1 and base[0].variants == ("a", "b")  # base ignores plug-in variants: one cell, two labels


@pytest.mark.parametrize(
    "patch,needle",
    [
        ({"nmae": "x"}, "unknown key(s) ['nmae']"),
        ({"axes": {"model": ["lightgnc"], "dataset": ["synthetic"]}}, "axes.model[0]: unknown model 'lightgnc'"),
        ({"axes": {"model": ["lightgcn"], "plugin": ["proexx"]}}, "axes.plugin[0]: unknown plugin 'proexx'"),
        ({"axes": {"model": ["lightgcn"], "seeds": [1]}}, "axes: unknown key(s) ['seeds']"),
        ({"axes": {"model": ["lightgcn"], "seed": ["a"]}}, "axes.seed[0]: seeds are integers"),
        ({"select": "test/recall@20"}, "is a test metric"),
        ({"select": "val/hit@20"}, "use val/recall@K"),
        ({"select": "val/recall@50"}, "needs K in train.ks"),
        ({"resources": {"cpu": 1, "gpu": 1.5}}, "resources:"),
        ({"resources": {"cpus": 1}}, "resources: unknown key(s) ['cpus']"),
        ({"fixed": {"train": {"seed": 3}}}, "fixed.train.seed: set it with axes.seed"),
        ({"fixed": {"model_config": {"layerz": 2}}}, "model_config: unknown key(s) ['layerz']"),
        ({"fixed": {"profiles": None}, "axes": {"model": ["lightgcn"], "plugin": ["proex"]}}, "needs a profile bank"),
        ({"report": {"figures": ["pie"]}}, "report.figures: unknown ['pie']"),
        ({"report": {"test": "t-test"}}, "report.test: 't-test' is not allowed; use one of 'ttest', 'wilcoxon'"),
        (
            {"fixed": {"profiles": "synthetic-latent", "plugin_config": {"env_reduce": "avg"}}},
            "plugin_config.env_reduce: 'avg' is not allowed; use one of 'sum', 'mean'",
        ),
        (
            {"fixed": {"profiles": "synthetic-latent", "plugin_config": {"num_envs": 0}}},
            "plugin_config.num_envs: must be >= 1, got 0",
        ),
        ({"study": {"space": {"lr": {"low": 1, "high": 2}}}}, "study.space.lr: keys are model_config."),
        ({"study": {"space": {"train.lr": {"low": 2, "high": 1}}}}, "give low <= high"),
        ({"study": {"space": {"train.lr": {"low": 1, "high": 2, "dist": "x"}}}}, "unknown key(s) ['dist']"),
    ],
)
def test_bad_grid_files_name_the_file_and_field(tmp_path, patch, needle):
    raw = yaml.safe_load(textwrap.dedent(MINIMAL))
    raw.update(patch)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as err:
        load_grid(str(path)).expand()
    assert str(path) in str(err.value) and needle in str(err.value)


def test_bad_hparams_file_names_itself(tmp_path):
    (tmp_path / "hp").mkdir()
    bad = tmp_path / "hp" / "lightgcn-base-synthetic.yaml"
    bad.write_text(yaml.safe_dump({"train": {"seed": 4}}))
    with pytest.raises(ConfigError, match="lightgcn-base-synthetic.yaml: train.seed"):
        load_grid(write(tmp_path, MINIMAL + "hparams: hp\n")).expand()
    bad.write_text(yaml.safe_dump({"modle_config": {}}))
    with pytest.raises(ConfigError, match=r"lightgcn-base-synthetic.yaml: unknown key\(s\) \['modle_config'\]"):
        load_grid(write(tmp_path, MINIMAL + "hparams: hp\n")).expand()


def test_a_value_outside_its_allowed_set_fails_when_the_grid_loads_before_ray_starts(tmp_path):
    """A typo in a setting with a fixed set of values (declared Literal on the plug-in's Config) fails at grid
    expansion, naming the file, the key, the bad value and the allowed ones; `run_grid` never reaches Ray."""
    body = MINIMAL.replace("train: {epochs: 3}", "train: {epochs: 3}, plugin_config: {reg_form: offical}")
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        load_grid(path).expand()
    msg = str(err.value)
    assert path in msg and "plugin_config.reg_form: 'offical' is not allowed; use one of 'official', 'paper'" in msg
    (tmp_path / "hp").mkdir()  # the same typo in a hyperparameter file names that layer's cell and value
    (tmp_path / "hp" / "lightgcn-proex-synthetic.yaml").write_text(yaml.safe_dump({"plugin_config": {"reg_form": "x"}}))
    with pytest.raises(ConfigError, match=r"reg_form: 'x' is not allowed; use one of 'official', 'paper'"):
        load_grid(write(tmp_path, MINIMAL + "hparams: hp\n", "h.yaml")).expand()
    ray = pytest.importorskip("ray", reason="the Ray half of this test needs the infra extra")
    from proex.infra.tune_grid import run_grid

    with pytest.raises(ConfigError, match="offical"):
        run_grid(load_grid(path), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", address="local", num_cpus=1)
    assert not ray.is_initialized()


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="no such grid file"):
        load_grid(str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_grid(write(tmp_path, "name: [unclosed"))
    # Grid files, hyperparameter files and dataset cards share one reader: each names its file and its keys.
    listed = write(tmp_path, "- lightgcn\n- proex\n")
    with pytest.raises(ConfigError, match=r"a grid file is a mapping of keys \(name, axes, fixed, ...\), not a list"):
        load_grid(listed)
    with pytest.raises(ConfigError, match=r"a dataset card is a mapping of keys \(interactions, user_col"):
        load_card_file(listed)
    with pytest.raises(DataError, match="no such dataset card"):
        load_card_file(tmp_path / "nope.yaml")
    (tmp_path / "hp").mkdir()
    (tmp_path / "hp" / "lightgcn-base-synthetic.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"lightgcn-base-synthetic.yaml: a hyperparameter file is a mapping"):
        load_grid(write(tmp_path, MINIMAL + "hparams: hp\n")).expand()


def test_select_parsing_and_study_params():
    assert parse_select("val_ndcg_at_10", "x") == "ndcg@10" and parse_select("recall@20", "x") == "recall@20"
    cell = load_grid(os.path.join(GRIDS, "tune_smoke.yaml")).expand()[0].config
    tuned = apply_params(cell, {"train.lr": 0.005, "model_config.layers": 1})
    assert tuned.train["lr"] == 0.005 and tuned.model_config["layers"] == 1 and cell.model_config == {}
