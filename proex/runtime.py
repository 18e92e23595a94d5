"""Device choice, CUDA matmul precision and seeding: the pieces of process state a run depends on."""

from __future__ import annotations

import contextvars
import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" -> CUDA when available, else CPU; anything else is passed to torch.device ("cpu", "cuda:1")."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    return dev


@contextmanager
def cuda_matmul_precision(tf32: bool) -> Iterator[None]:
    """Within the block, CUDA float32 matmuls use TensorFloat-32 tensor cores if `tf32` (10-bit mantissa inputs,
    float32 accumulation), else full float32 ("ieee", PyTorch's default and the official code's). Restores the
    previous setting on exit. No effect on a CPU. Why an option: ProEx's 1536 -> hidden profile mapping is the
    largest matmul of a training step; TF32 runs it several times faster on Ampere and later GPUs.
    Uses `fp32_precision` where torch has it (2.9+, which refuses mixing it with the legacy flag), else the
    legacy `allow_tf32` (we support torch >= 2.4)."""
    matmul = torch.backends.cuda.matmul
    if hasattr(matmul, "fp32_precision"):
        attr, value = "fp32_precision", ("tf32" if tf32 else "ieee")
    else:
        attr, value = "allow_tf32", tf32
    before = getattr(matmul, attr)
    setattr(matmul, attr, value)
    try:
        yield
    finally:
        setattr(matmul, attr, before)


@contextmanager
def deterministic_algorithms(on: bool) -> Iterator[None]:
    """Within the block, if `on`, torch runs deterministic kernels (`torch.use_deterministic_algorithms`, warning
    instead of failing where an operator has none); the previous setting is restored on exit. If not `on`,
    nothing changes.

    Why: seeding alone does not make a CPU run repeat exactly. With several threads, the backward of advanced
    indexing with repeated rows (the same user in several BPR triples) accumulates in thread order, so two runs
    with one seed drift apart in the last digits of the weights and metrics (docs/results/speed.md). On CUDA,
    deterministic cuBLAS also needs CUBLAS_WORKSPACE_CONFIG=:4096:8 in the environment."""
    if not on:
        yield
        return
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices), so a run repeats on the same device (HKUDS/RLMRec
    encoder/trainer/trainer.py init_seed)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def rng_state() -> dict:
    """Python, NumPy and torch generator states in tensors and plain containers only, so that a file holding
    them loads with `torch.load(weights_only=True)` (NumPy's MT19937 key array travels as an int64 tensor)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    numpy_state = (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.int64).astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_REFERENCE_KERNELS = contextvars.ContextVar("proex_reference_kernels", default=False)


@contextmanager
def reference_kernels(on: bool = True) -> Iterator[None]:
    """Within the block (when `on`), every hand-written fast path runs its plain reference version instead:
    `plugins.uniformity.uniformity` (Ω) and `data.distinct_epoch.epoch_distinct` (a batch's distinct rows), so a
    suspected kernel bug is one flag away from being ruled out (`TrainConfig.reference_kernels`,
    `--train reference_kernels=true`)."""
    token = _REFERENCE_KERNELS.set(on)
    try:
        yield
    finally:
        _REFERENCE_KERNELS.reset(token)


def reference_kernels_on() -> bool:
    """Whether the innermost `reference_kernels()` block asks for the reference versions."""
    return _REFERENCE_KERNELS.get()
