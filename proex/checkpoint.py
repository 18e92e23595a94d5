"""Checkpoints: the trained system's weights with the resolved config that rebuilds it.

A checkpoint is self-describing: `load` rebuilds the model and plug-in from the stored config (no
command-line flags to remember) and refuses a dataset whose shape or training interactions differ from
the one the model was trained on, since ID embeddings are meaningless on other ids.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import torch

from .data.interactions import Interactions

FORMAT = "proex-checkpoint/1"


def fingerprint(inter: Interactions) -> str:
    """A short hash of the training matrix's pattern (shape + CSR arrays)."""
    h = hashlib.sha256(f"{inter.train.shape}".encode())
    h.update(inter.train.indptr.astype("int64").tobytes())
    h.update(inter.train.indices.astype("int64").tobytes())
    return h.hexdigest()[:16]


def save(
    path: str,
    system: torch.nn.Module,
    config: dict,
    inter: Interactions,
    metrics: dict | None = None,
    profile_bank: str | None = None,
    config_hash: str | None = None,
) -> None:
    """Write weights + resolved config (and its hash, the cell's id) + dataset identity (+ the profile bank's
    id) atomically to `path`."""
    payload = {
        "profile_bank": profile_bank,
        "format": FORMAT,
        "config": config,
        "config_hash": config_hash,
        "state_dict": {k: v.detach().cpu() for k, v in system.state_dict().items()},
        "dataset": {
            "name": inter.name,
            "n_users": inter.n_users,
            "n_items": inter.n_items,
            "fingerprint": fingerprint(inter),
        },
        "metrics": metrics or {},
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)


def read(path: str) -> dict[str, Any]:
    """The raw checkpoint dict (config, dataset identity, metrics, state_dict)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no such checkpoint; pass the checkpoint.pt written by `proex train --out`"
        ) from None
    except Exception as exc:  # corrupt or not a proex file
        raise ValueError(f"{path}: not a readable proex checkpoint ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{path}: not a proex checkpoint "
            f"(format {payload.get('format') if isinstance(payload, dict) else None!r}, expected {FORMAT!r})"
        )
    return payload


def load(path: str, inter: Interactions, device: str | torch.device = "cpu", profiles: str | None = None):
    """Rebuild the trained system on `device` for dataset `inter`. Returns (system, TrainData, payload).

    profiles: the profile bank for profile-aware plug-ins; default: the `profiles` the run was trained with.
    """
    from .experiment import CellConfig, build_cell, resolve

    payload = read(path)
    ds = payload["dataset"]
    if (ds["n_users"], ds["n_items"]) != (inter.n_users, inter.n_items) or ds["fingerprint"] != fingerprint(inter):
        raise ValueError(
            f"{path}: trained on dataset {ds['name']!r} ({ds['n_users']} users x {ds['n_items']} items, "
            f"fingerprint {ds['fingerprint']}), but the given dataset {inter.name!r} has {inter.n_users} x "
            f"{inter.n_items} (fingerprint {fingerprint(inter)}). Load it with the dataset it was trained on."
        )
    cfg = payload["config"]
    spec = profiles or cfg.get("profiles")
    cell = CellConfig(
        dataset=cfg["dataset"],
        model=cfg["model"],
        plugin=cfg["plugin"],
        profiles=spec,
        model_config=cfg["model_config"],
        plugin_config=cfg["plugin_config"],
        train={**cfg["train"], "device": str(device)},
    )
    built = build_cell(resolve(cell, where=path), inter, device)
    if built.bank is not None and payload.get("profile_bank") and built.bank.bank_id != payload["profile_bank"]:
        raise ValueError(
            f"{path}: trained with profile bank {payload['profile_bank']}, but {spec!r} is bank "
            f"{built.bank.bank_id}; pass the bank the model was trained with (profiles=...)."
        )
    built.system.load_state_dict(payload["state_dict"])
    built.system.eval()
    return built.system, built.data, payload
