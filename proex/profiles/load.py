"""Resolve a cell's `profiles` setting to a ProfileBank.

<directory with manifest.json>        a saved bank (memory-mapped)
rlmrec:<directory>                     the RLMRec/ProEx pickles in that folder, imported on the fly
synthetic-latent[:k=4,dim=64,wording_noise=1.0,noise_profiles=1+2,seed=0]
                                       latent views of the synthetic dataset's factors (labelled synthetic)
random[:k=4,dim=1536,seed=0]           pure noise of a given shape (speed benchmarks only)
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

from ..config import parse_overrides
from ..data.interactions import DataError, Interactions
from .bank import ProfileBank, load_bank
from .importers import import_rlmrec, rlmrec_profile_files
from .synthetic import latent_profiles, random_profiles

SYNTHETIC_KEYS = {"k", "dim", "wording_noise", "noise_profiles", "seed"}


def profile_width(spec: str) -> int:
    """The embedding width (d_text) of the bank `spec` names, without building it or loading its dataset: a
    saved bank's manifest.json, the `dim` of a synthetic or random spec (or its default), the width of the
    RLMRec item pickle."""
    for prefix, make in (("synthetic-latent", latent_profiles), ("random", random_profiles)):
        if spec == prefix or spec.startswith(f"{prefix}:"):
            items = [s for s in spec.partition(":")[2].split(",") if s.strip()]
            values = parse_overrides(items, where=f"profiles {spec!r}")
            return int(values.get("dim", inspect.signature(make).parameters["dim"].default))
    if spec.startswith("rlmrec:"):
        from ..data.safe_pickle import safe_load

        return int(safe_load(rlmrec_profile_files(spec.partition(":")[2])[0][1]).shape[1])
    manifest = Path(spec) / "manifest.json"
    if manifest.exists():
        return int(json.loads(manifest.read_text())["dim"])
    raise DataError(
        f"profiles {spec!r}: not a profile-bank folder (no manifest.json), 'rlmrec:<folder>' or "
        "'synthetic-latent[:k=4,...]'; pass --text-dim to give the width instead."
    )


def load_profiles(spec: str, inter: Interactions) -> ProfileBank:
    """The bank named by `spec`, checked against the dataset's user and item counts."""
    if spec == "synthetic-latent" or spec.startswith("synthetic-latent:"):
        items = [s for s in spec.partition(":")[2].split(",") if s.strip()]
        values = parse_overrides(items, where=f"profiles {spec!r}")
        unknown = set(values) - SYNTHETIC_KEYS
        if unknown:
            raise DataError(f"profiles {spec!r}: unknown key(s) {sorted(unknown)}; valid: {sorted(SYNTHETIC_KEYS)}")
        noise = values.pop("noise_profiles", ())
        noise = tuple(int(x) for x in str(noise).split("+")) if noise not in ((), None, "") else ()
        bank = latent_profiles(inter, noise_profiles=noise, **values)
    elif spec == "random" or spec.startswith("random:"):
        items = [s for s in spec.partition(":")[2].split(",") if s.strip()]
        values = parse_overrides(items, where=f"profiles {spec!r}")
        unknown = set(values) - {"k", "dim", "seed"}
        if unknown:
            raise DataError(f"profiles {spec!r}: unknown key(s) {sorted(unknown)}; valid: ['dim', 'k', 'seed']")
        bank = random_profiles(inter.n_users, inter.n_items, **values)
    elif spec.startswith("rlmrec:"):
        bank = import_rlmrec(spec.partition(":")[2], inter.n_users, inter.n_items)
    elif (Path(spec) / "manifest.json").exists():
        bank = load_bank(spec)
    else:
        raise DataError(
            f"profiles {spec!r}: not a profile-bank folder (no manifest.json), 'rlmrec:<folder>' or "
            "'synthetic-latent[:k=4,...]'. Build a bank with `proex profiles import-rlmrec`."
        )
    return bank.check(inter.n_users, inter.n_items, where=spec)
