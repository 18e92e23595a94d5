"""ProfileBank: the K profile embeddings of every user and item, on disk with a manifest, memory-mapped.

Layout of a bank directory:
    manifest.json   {"format", "k", "dim", "n_users", "n_items", "profile_names", "llm", "prompts",
                     "embedder", "source", "created", "sha256": {"user.npy": ..., "item.npy": ...}}
    user.npy        float32 [K, n_users, dim]   profile 0 is the original profile (OP), 1..K-1 the new ones
    item.npy        float32 [K, n_items, dim]

Profile 0 is the "original profile" of the paper (sec. 2.3.1), the RLMRec `usr_emb_np.pkl`; profiles 1..K-1
are the "new profiles" (ProEx's `usr_emb_np_{k}.pkl`, BlueGhostYi/ProRec data/). Arrays are opened with
`np.load(mmap_mode="r")`, so a 1536-d bank of a large dataset costs no RAM until rows are read.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.interactions import DataError

FORMAT = "proex-profile-bank/1"


def _sha256(arr: np.ndarray) -> str:
    """Checksum of an array's float32 content (not of the .npy file), so a bank has the same id in memory
    and on disk."""
    h = hashlib.sha256()
    flat = np.ascontiguousarray(arr, dtype=np.float32).reshape(-1)
    for start in range(0, flat.size, 1 << 22):
        h.update(flat[start : start + (1 << 22)].tobytes())
    return h.hexdigest()


@dataclass
class ProfileBank:
    """user: [K, n_users, dim], item: [K, n_items, dim] (float32, possibly memory-mapped); manifest: metadata."""

    user: np.ndarray
    item: np.ndarray
    manifest: dict = field(default_factory=dict)
    path: str | None = None

    @property
    def k(self) -> int:
        return int(self.user.shape[0])

    @property
    def dim(self) -> int:
        return int(self.user.shape[2])

    @property
    def bank_id(self) -> str:
        """A short content id to tag runs and checkpoints with: from the manifest's checksums for a saved bank,
        else from the arrays themselves (computed once)."""
        if "_id" not in self.__dict__:
            sums = self.manifest.get("sha256")
            if not sums:
                sums = {"user.npy": _sha256(self.user), "item.npy": _sha256(self.item)}
            self.__dict__["_id"] = hashlib.sha256(json.dumps(sums, sort_keys=True).encode()).hexdigest()[:12]
        return self.__dict__["_id"]

    def subset(self, profiles: Sequence[int]) -> ProfileBank:
        """A bank holding only the listed profiles (ablation: K from 1 to all, or [0] = original only)."""
        bad = [p for p in profiles if not 0 <= p < self.k]
        if bad or not profiles:
            raise ValueError(
                f"profile subset {list(profiles)} is invalid for a bank with K = {self.k} (use 0..{self.k - 1})"
            )
        idx = list(profiles)
        names = self.manifest.get("profile_names") or [f"p{i}" for i in range(self.k)]
        man = {**self.manifest, "k": len(idx), "profile_names": [names[i] for i in idx], "subset_of": self.bank_id}
        man.pop("sha256", None)  # the subset's content differs: its id is computed from its arrays
        return ProfileBank(self.user[idx], self.item[idx], man, self.path)

    def check(self, n_users: int, n_items: int, where: str = "profile bank") -> ProfileBank:
        """Row counts match the dataset, one dimension, finite values; DataError naming the problem otherwise."""
        for side, arr, n in (("user", self.user, n_users), ("item", self.item, n_items)):
            if arr.ndim != 3:
                raise DataError(f"{where}: {side} embeddings must be [K, n, dim], got shape {arr.shape}")
            if arr.shape[1] != n:
                raise DataError(
                    f"{where}: {side} embeddings have {arr.shape[1]} rows but the dataset has {n} "
                    f"{side}s; the bank was built for another dataset or id mapping."
                )
            if not np.isfinite(arr).all():
                raise DataError(f"{where}: {side} embeddings contain NaN or inf; regenerate them.")
        if self.user.shape[0] != self.item.shape[0] or self.user.shape[2] != self.item.shape[2]:
            raise DataError(f"{where}: user bank {self.user.shape} and item bank {self.item.shape} differ in K or dim")
        return self

    def save(self, directory: str) -> ProfileBank:
        """Write user.npy, item.npy and manifest.json (checksums included); returns the memory-mapped bank."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        sums = {}
        for side, arr in (("user", self.user), ("item", self.item)):
            tmp = d / f"{side}.tmp.npy"
            np.save(tmp, np.ascontiguousarray(arr, dtype=np.float32))
            os.replace(tmp, d / f"{side}.npy")
            sums[f"{side}.npy"] = _sha256(arr)
        man = {
            **self.manifest,
            "format": FORMAT,
            "k": self.k,
            "dim": self.dim,
            "n_users": int(self.user.shape[1]),
            "n_items": int(self.item.shape[1]),
            "sha256": sums,
            "created": self.manifest.get("created") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        man.setdefault("profile_names", ["original"] + [f"new_{i}" for i in range(1, self.k)])
        with open(d / "manifest.json.tmp", "w") as f:
            json.dump(man, f, indent=1)
        os.replace(d / "manifest.json.tmp", d / "manifest.json")
        return load_bank(directory)


def load_bank(directory: str, verify: bool = False) -> ProfileBank:
    """Open a bank memory-mapped. verify: recompute the checksums and compare with the manifest."""
    d = Path(directory)
    man_path = d / "manifest.json"
    if not man_path.exists():
        raise DataError(
            f"{man_path}: no profile-bank manifest here; build one with `proex profiles import-rlmrec` "
            "or `proex profiles synth`"
        )
    man = json.loads(man_path.read_text())
    if man.get("format") != FORMAT:
        raise DataError(f"{man_path}: format {man.get('format')!r}, expected {FORMAT!r}")
    if verify:
        for name, expected in man["sha256"].items():
            if _sha256(np.load(d / name, mmap_mode="r")) != expected:
                raise DataError(f"{d / name}: checksum differs from manifest.json; the file changed or is corrupt.")
    user = np.load(d / "user.npy", mmap_mode="r")
    item = np.load(d / "item.npy", mmap_mode="r")
    bank = ProfileBank(user, item, man, str(d))
    if (user.shape[1], item.shape[1]) != (man["n_users"], man["n_items"]):
        raise DataError(f"{d}: arrays {user.shape}/{item.shape} disagree with manifest.json")
    return bank
