"""The device a Ray trial trains on, from what Ray assigned it (proex.infra.devices.trial_device): the GPU
it was given when CUDA is there, the CPU with a warning when the node only declares logical GPUs, a clear
error where the cell demanded CUDA it cannot have, and never a GPU Ray did not give."""

from __future__ import annotations

import pytest

from proex.infra.devices import DeviceError, device_tags, trial_device


def test_auto_takes_the_assigned_gpu_or_falls_back_to_the_cpu_with_a_warning():
    assert trial_device("auto", ["0"], cuda_available=True) == ("cuda:0", None)
    device, warning = trial_device("auto", [1], cuda_available=False, where="cell abc")
    assert (
        device == "cpu"
        and warning == "cell abc: Ray assigned GPU 1 but torch finds no CUDA on this node: training on the CPU"
    )
    assert trial_device("auto", [], cuda_available=True) == ("cpu", None)  # no GPU given: do not take one
    assert trial_device("cpu", ["0"], cuda_available=True) == ("cpu", None)


def test_a_cell_demanding_cuda_fails_clearly_where_it_cannot_have_it():
    assert trial_device("cuda", ["0"], cuda_available=True) == ("cuda", None)
    with pytest.raises(
        DeviceError,
        match=r"cell x: train.device is 'cuda' and Ray assigned GPU 0, but torch finds no "
        r"CUDA.*set train.device: auto",
    ):
        trial_device("cuda", ["0"], cuda_available=False, where="cell x")
    with pytest.raises(DeviceError, match=r"resources.gpu gives its trials no GPU; set resources: \{gpu: 0.25\}"):
        trial_device("cuda:0", [], cuda_available=True)


def test_device_tags_say_where_a_trial_trained(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert device_tags("cuda:0", ["3"], "n1") == {
        "device": "cuda:0",
        "ray_gpu_ids": "3",
        "cuda_visible_devices": "3",
        "node": "n1",
    }
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert (
        device_tags("cpu", [], "n2")["ray_gpu_ids"] == "none"
        and device_tags("cpu", [], "n2")["cuda_visible_devices"] == "unset"
    )
