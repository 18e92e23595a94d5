"""The command line as a user runs it: train on the synthetic data, outputs on disk, clear errors."""

import json
import os
import subprocess
import sys

from proex import checkpoint
from proex.cli import main
from proex.data.registry import load_dataset


def test_train_writes_metrics_and_a_loadable_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        [
            "-q",
            "train",
            "--dataset",
            "synthetic:n_users=120,n_items=80,seed=1",
            "--model",
            "gccf",
            "--train",
            "epochs=4",
            "--seed",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    metrics = json.load(open(out / "metrics.json"))
    assert printed["test"] == metrics["test"] and set(metrics["test"]) == {
        "recall@10",
        "ndcg@10",
        "recall@20",
        "ndcg@20",
    }
    assert metrics["config"]["train"]["seed"] == 3 and metrics["config"]["model"] == "gccf"
    assert not os.path.exists(out / "train_state.pt")  # the resume state is removed once the run is complete
    system, _, payload = checkpoint.load(
        str(out / "checkpoint.pt"), load_dataset("synthetic:n_users=120,n_items=80,seed=1")
    )
    assert payload["metrics"]["test"] == metrics["test"]


def test_bad_override_is_a_clear_error(capsys):
    code = main(["train", "--dataset", "synthetic", "--model", "lightgcn", "--set", "layerz=2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "layerz" in err and "valid keys" in err


def test_unknown_model_and_dataset(capsys):
    assert main(["train", "--model", "nope"]) == 2
    assert "known models" in capsys.readouterr().err
    assert main(["data", "inspect", "no-such-dataset"]) == 2
    assert "no-such-dataset" in capsys.readouterr().err


def test_synth_then_inspect_round_trip(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "synth", "--out", str(out), "--set", "n_users=100", "n_items=70", "seed=2"]) == 0
    capsys.readouterr()
    assert main(["data", "inspect", str(out)]) == 0
    info = json.loads(capsys.readouterr().out)
    direct = load_dataset("synthetic:n_users=100,n_items=70,seed=2").summary()
    assert (info["users"], info["items"], info["train"], info["test"]) == (
        direct["users"],
        direct["items"],
        direct["train"],
        direct["test"],
    )


def test_console_script_help():
    res = subprocess.run([sys.executable, "-m", "proex.cli", "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "train" in res.stdout


def test_each_command_module_registers_the_command_it_runs():
    """`proex <cmd>` runs COMMANDS[cmd].run: that module must be the one that parsed the command's flags."""
    import argparse

    from proex.cli import COMMANDS

    for name, module in COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers(dest="cmd")
        module.register(sub)
        assert list(sub.choices) == [name]
