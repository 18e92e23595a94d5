"""Which device a Ray trial trains on, given what Ray assigned it, and the tags that record it on its run.

Ray gives a trial that asked for `gpu: 0.25` a share of one GPU: `ray.get_gpu_ids()` names it and Ray sets
`CUDA_VISIBLE_DEVICES` to it before the trial starts, so inside the trial that GPU is `cuda:0`. A node may
declare logical GPUs it does not have (`ray start --num-gpus 1`, `ray.init(num_gpus=1)`): the scheduling is
the same, but torch finds no CUDA. The rule (`trial_device`):

| cell's train.device | Ray gave a GPU, CUDA present | Ray gave a GPU, no CUDA | no GPU given |
|---|---|---|---|
| auto (default)      | cuda:0                      | cpu, with one warning line | cpu (never a GPU Ray did not give) |
| cuda / cuda:N       | cuda:0 / cuda:N             | error                      | error |
| cpu                 | cpu                         | cpu                        | cpu |
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger("proex.infra.devices")


class DeviceError(RuntimeError):
    """A cell demanded CUDA where its trial cannot have it."""


def trial_device(
    requested: str, gpu_ids: list, cuda_available: bool, where: str = "the cell"
) -> tuple[str, str | None]:
    """(device the trial trains on, a warning to log or None). `gpu_ids`: `ray.get_gpu_ids()` in the trial."""
    requested = requested or "auto"
    if requested == "cpu":
        return "cpu", None
    if requested.startswith("cuda"):
        if not gpu_ids:
            raise DeviceError(
                f"{where}: train.device is {requested!r} but the grid's resources.gpu gives its trials "
                "no GPU; set resources: {gpu: 0.25} (or more), or train.device: auto"
            )
        if not cuda_available:
            raise DeviceError(
                f"{where}: train.device is {requested!r} and Ray assigned GPU {_ids(gpu_ids)}, but "
                "torch finds no CUDA on this node (a node declaring logical GPUs, a CPU build of "
                "torch, or no driver); set train.device: auto to fall back to the CPU"
            )
        return requested, None
    if requested != "auto":
        return requested, None
    if gpu_ids and cuda_available:
        return "cuda:0", None  # the assigned GPU, renumbered 0 by CUDA_VISIBLE_DEVICES
    if gpu_ids:
        return "cpu", (
            f"{where}: Ray assigned GPU {_ids(gpu_ids)} but torch finds no CUDA on this node: training on the CPU"
        )
    return "cpu", None


def _ids(gpu_ids: list) -> str:
    return ",".join(str(g) for g in gpu_ids)


def device_tags(device: str, gpu_ids: list, node_id: str) -> dict[str, str]:
    """The run tags that say where a trial trained: device, Ray's GPU ids, CUDA_VISIBLE_DEVICES, Ray node."""
    return {
        "device": device,
        "ray_gpu_ids": _ids(gpu_ids) or "none",
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "unset") or "empty",
        "node": node_id,
    }


def assign(requested: str, where: str) -> tuple[str, dict[str, str]]:
    """Inside a Ray trial: the device to train on (logging the CPU fallback once) and its tags."""
    import ray
    import torch

    gpu_ids = list(ray.get_gpu_ids())
    device, warning = trial_device(requested, gpu_ids, torch.cuda.is_available(), where)
    if warning:
        log.warning(warning)
    return device, device_tags(device, gpu_ids, ray.get_runtime_context().get_node_id())
