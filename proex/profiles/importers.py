"""Build ProfileBanks from the files researchers already hold.

* RLMRec / ProEx layout (HKUDS/RLMRec and BlueGhostYi/ProRec data/): `usr_emb_np.pkl`, `itm_emb_np.pkl` (the
  original profile, pickled numpy [n, 1536]) and ProEx's extra profiles `usr_emb_np_{k}.pkl`, `itm_emb_np_{k}.pkl`,
  k = 1..K-1.
  Read with the same allowlisting unpickler as the datasets (`proex.data.safe_pickle`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..data.interactions import DataError
from ..data.safe_pickle import safe_load
from .bank import ProfileBank


def _read_array(path: Path) -> np.ndarray:
    arr = safe_load(path)
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise DataError(
            f"{path}: expected a pickled 2-d numpy array [n, dim], got {type(arr).__name__}{getattr(arr, 'shape', '')}"
        )
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: contains NaN or inf values; re-export the embeddings.")
    return arr.astype(np.float32, copy=False)


def rlmrec_profile_files(directory: str | Path) -> list[tuple[Path, Path]]:
    """[(usr_emb_np.pkl, itm_emb_np.pkl), (usr_emb_np_1.pkl, itm_emb_np_1.pkl), ...] present in `directory`."""
    d = Path(directory)
    pairs = [(d / "usr_emb_np.pkl", d / "itm_emb_np.pkl")]
    if not pairs[0][0].exists() or not pairs[0][1].exists():
        raise DataError(
            f"{d}: usr_emb_np.pkl and itm_emb_np.pkl (the original profiles) are required; download "
            "them with the RLMRec archive (`proex data fetch`) or the ProRec Google Drive folder."
        )
    extra = sorted(
        int(m.group(1)) for p in d.glob("usr_emb_np_*.pkl") if (m := re.fullmatch(r"usr_emb_np_(\d+)\.pkl", p.name))
    )
    for k in extra:
        u, i = d / f"usr_emb_np_{k}.pkl", d / f"itm_emb_np_{k}.pkl"
        if not i.exists():
            raise DataError(f"{d}: {u.name} exists but {i.name} is missing; every profile needs both sides.")
        pairs.append((u, i))
    if [k for k in extra] != list(range(1, len(extra) + 1)):
        raise DataError(f"{d}: extra profiles must be numbered 1..K-1 without gaps, found {extra}")
    return pairs


def import_rlmrec(
    directory: str | Path,
    n_users: int | None = None,
    n_items: int | None = None,
    max_profiles: int | None = None,
    manifest: dict | None = None,
) -> ProfileBank:
    """Stack the RLMRec/ProEx pickles into an in-memory bank ([K, n, dim]); `.save(dir)` writes it.

    n_users / n_items: the dataset's sizes, checked against the row counts (recommended).
    """
    pairs = rlmrec_profile_files(directory)[: max_profiles or None]
    users, items = [], []
    for up, ip in pairs:
        u, i = _read_array(up), _read_array(ip)
        for path, arr, n, side in ((up, u, n_users, "users"), (ip, i, n_items, "items")):
            if n is not None and arr.shape[0] != n:
                raise DataError(
                    f"{path}: {arr.shape[0]} rows but the dataset has {n} {side}; these embeddings "
                    "belong to another dataset or id mapping."
                )
        if users and (u.shape[1] != users[0].shape[1] or i.shape[1] != users[0].shape[1]):
            raise DataError(
                f"{up}: dimension {u.shape[1]}/{i.shape[1]} differs from {pairs[0][0].name} "
                f"({users[0].shape[1]}); all profiles must come from one embedder."
            )
        if u.shape[1] != i.shape[1]:
            raise DataError(f"{ip}: dimension {i.shape[1]} differs from {up.name} ({u.shape[1]})")
        if users and (u.shape[0] != users[0].shape[0] or i.shape[0] != items[0].shape[0]):
            raise DataError(f"{up}: row counts differ from the original profile files")
        users.append(u)
        items.append(i)
    man = {
        "source": f"rlmrec:{Path(directory)}",
        "llm": "gpt-3.5-turbo (RLMRec/ProEx release)",
        "embedder": "text-embedding-ada-002 (RLMRec/ProEx release)",
        "prompts": "RLMRec + ProEx CoT (authors')",
        "profile_names": ["original"] + [f"new_{k}" for k in range(1, len(pairs))],
        **(manifest or {}),
    }
    return ProfileBank(np.stack(users), np.stack(items), man)
