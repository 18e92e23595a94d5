"""Study pieces without Ray: a study file's pruner and arms are checked with clear errors, the worker's hook
reports validations to the trial and stops a hopeless one, arms expand to one study cell per plug-in, storage
passwords are redacted, and a study report says so when importances cannot be computed."""

from __future__ import annotations

import os
import textwrap

import pytest

optuna = pytest.importorskip("optuna")
pytest.importorskip("mlflow")

from proex.config import ConfigError  # noqa: E402
from proex.grid import load_grid  # noqa: E402
from proex.infra.pruning import PruneTarget, make_pruner, pruning_hook  # noqa: E402
from proex.infra.studies import open_storage, study_cells, study_name  # noqa: E402
from proex.infra.study_report import dashboard_command, write_study_report  # noqa: E402
from proex.infra.tracker import Tracker, redact  # noqa: E402
from proex.study_spec import PrunerSpec  # noqa: E402
from proex.train import StopTraining, ValidationReport  # noqa: E402

STUDY = """
name: s
axes: {{model: [lightgcn], plugin: {plugins}, dataset: [synthetic], seed: [0]}}
fixed: {{profiles: synthetic-latent}}
study:
  space: {{train.lr: {{low: 1.0e-4, high: 1.0e-2, log: true}}}}
{extra}
"""


def grid_file(tmp_path, extra: str = "", plugins: str = "[base]"):
    path = tmp_path / "study.yaml"
    path.write_text(STUDY.format(plugins=plugins, extra=textwrap.indent(textwrap.dedent(extra), "  ")))
    return str(path)


def test_pruner_defaults_to_median_and_rejects_settings_of_another_pruner(tmp_path):
    grid = load_grid(grid_file(tmp_path))
    assert grid.study.pruner == PrunerSpec()
    assert isinstance(make_pruner(grid.study.pruner), optuna.pruners.MedianPruner)
    hb = load_grid(grid_file(tmp_path, "pruner: {type: hyperband, max_resource: 30, reduction_factor: 2}"))
    assert isinstance(make_pruner(hb.study.pruner), optuna.pruners.HyperbandPruner)
    with pytest.raises(
        ConfigError,
        match=r"study.yaml: study.pruner: \['n_warmup_steps'\] do not apply to the "
        r"successive_halving pruner",
    ):
        load_grid(grid_file(tmp_path, "pruner: {type: successive_halving, n_warmup_steps: 3}"))
    with pytest.raises(ConfigError, match=r"study.pruner.type: 'mediam'; use one of none, median"):
        load_grid(grid_file(tmp_path, "pruner: {type: mediam}"))
    with pytest.raises(ConfigError, match=r"study.pruner: unknown key\(s\) \['warmup'\]"):
        load_grid(grid_file(tmp_path, "pruner: {warmup: 3}"))


def test_arms_are_tuned_as_one_study_each_with_their_own_extra_space(tmp_path):
    grid = load_grid(
        grid_file(
            tmp_path,
            """
        arms: [base, proex]
        arm_space: {proex: {plugin_config.reg_weight: {low: 0.1, high: 1.0}}}
    """,
        )
    )
    cells = study_cells(grid)
    assert [gc.config.plugin for gc in cells] == ["base", "proex"]
    names = [study_name(grid, gc) for gc in cells]
    assert names[0].startswith("s/lightgcn-base-") and names[1].startswith("s/lightgcn-proex-")
    with pytest.raises(
        ConfigError,
        match=r"axes.plugin lists \['kar'\], which study.arms \['base', 'proex'\] does "
        r"not tune",
    ):
        study_cells(load_grid(grid_file(tmp_path, "arms: [base, proex]", plugins="[base, kar]")))
    with pytest.raises(ConfigError, match=r"study.arm_space.kar: not one of study.arms"):
        load_grid(grid_file(tmp_path, "arms: [base]\narm_space: {kar: {train.lr: {low: 1, high: 2}}}"))
    with pytest.raises(ConfigError, match=r"study.arms\[1\]: unknown plug-in 'proexx'"):
        load_grid(grid_file(tmp_path, "arms: [base, proexx]"))


def report(epoch: int, value: float) -> ValidationReport:
    return ValidationReport(epoch, {"recall@20": value}, {}, 0, value, 5, 0.0, 0.0)


def test_the_worker_hook_reports_every_validation_and_stops_a_trial_below_the_median(tmp_path):
    url = f"sqlite:///{tmp_path}/o.db"
    spec = PrunerSpec(n_startup_trials=2, n_warmup_steps=3)
    study = optuna.create_study(
        study_name="s", storage=open_storage(url), direction="maximize", pruner=make_pruner(spec)
    )
    for _ in range(2):  # two finished trials reached 0.3 at epoch 3
        t = study.ask()
        t.report(0.1, 0)
        t.report(0.3, 3)
        study.tell(t, 0.3)
    good, bad = study.ask(), study.ask()
    hook = pruning_hook(PruneTarget(url, "s", good._trial_id, spec, "recall@20"), open_storage)
    hook(report(0, 0.01))  # before the warm-up: never pruned
    hook(report(3, 0.35))
    assert study.trials[good.number].intermediate_values == {0: 0.01, 3: 0.35}
    hopeless = pruning_hook(PruneTarget(url, "s", bad._trial_id, spec, "recall@20"), open_storage)
    hopeless(report(0, 0.01))
    with pytest.raises(StopTraining, match="pruned by the median pruner after epoch 3"):
        hopeless(report(3, 0.01))
    none = PruneTarget(url, "s", bad._trial_id, PrunerSpec(type="none"), "recall@20")
    pruning_hook(none, open_storage)(report(6, 0.0))  # the none pruner never stops a trial


def test_storage_passwords_stay_out_of_what_is_printed_and_recorded():
    url = "postgresql://proex:s3cret@db:5432/optuna"
    assert redact(url) == "postgresql://proex:***@db:5432/optuna" and "s3cret" not in dashboard_command(url)
    assert dashboard_command("sqlite:////x/o.db") == "optuna-dashboard sqlite:////x/o.db --host 127.0.0.1 --port 8080"


def test_a_report_of_one_complete_trial_says_why_it_has_no_importances(tmp_path):
    study = optuna.create_study(study_name="s/one", direction="maximize")
    t = study.ask()
    t.suggest_float("train.lr", 1e-4, 1e-2, log=True)
    t.report(0.2, 0)
    study.tell(t, 0.2)
    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "proex-s")
    files = write_study_report(study, tracker, str(tmp_path / "rep"), "recall@20")
    text = open(files["report.md"]).read()
    assert "No parameter importances: parameter importances need at least 2 COMPLETE trials; this study has 1." in text
    assert "param_importances.png" not in files and os.path.exists(files["optimization_history.png"])
    assert "## Best trial: #0, val/recall@20 = 0.2000" in text
