"""Profile embeddings with a known amount of signal, for the synthetic dataset (tests, demos, robustness).

Each profile k of an entity is a random linear "embedder" view of the entity's latent taste plus
profile-specific "wording" noise: c_k = P (z + σ_k ε_k) + η, with P a fixed random [dim, latent] map shared by
all profiles (one text embedder) and ε_k independent per profile. `noise_profiles` replaces whole profiles by
pure noise (no signal at all) to test robustness (ProEx should be hurt less than a single-profile
plug-in). Labelled as synthetic in the manifest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.interactions import DataError, Interactions
from .bank import ProfileBank


def latent_profiles(
    inter: Interactions,
    k: int = 4,
    dim: int = 64,
    wording_noise: float = 1.0,
    noise_profiles: Sequence[int] = (),
    seed: int = 0,
) -> ProfileBank:
    """A [K, n, dim] bank from `inter.extras["user_latent"/"item_latent"]` (the synthetic generator's factors)."""
    if "user_latent" not in inter.extras or "item_latent" not in inter.extras:
        raise DataError(
            f"{inter.source or inter.name}: no latent factors in extras; latent_profiles needs the "
            "synthetic dataset (proex.data.synthetic.make_synthetic)."
        )
    rng = np.random.default_rng(seed)
    zu = np.asarray(inter.extras["user_latent"], dtype=np.float32)
    zi = np.asarray(inter.extras["item_latent"], dtype=np.float32)
    latent = zu.shape[1]
    proj = rng.normal(0, 1 / np.sqrt(latent), (latent, dim)).astype(np.float32)

    def views(z: np.ndarray) -> np.ndarray:
        scale = z.std()
        out = np.empty((k, z.shape[0], dim), dtype=np.float32)
        for p in range(k):  # K is a handful: a loop over profiles, never over entities
            if p in noise_profiles:  # same scale as a signal view, no signal
                out[p] = (np.sqrt(1 + wording_noise**2) * scale * rng.normal(size=z.shape)) @ proj
            else:
                out[p] = (z + wording_noise * scale * rng.normal(size=z.shape)) @ proj
        return out

    man = {
        "source": f"synthetic-latent:{inter.name}",
        "llm": "none (synthetic latent views)",
        "embedder": f"random projection to {dim}",
        "prompts": "none",
        "profile_names": [
            ("noise" if p in noise_profiles else ("original" if p == 0 else f"new_{p}")) for p in range(k)
        ],
        "wording_noise": wording_noise,
        "noise_profiles": list(noise_profiles),
        "seed": seed,
    }
    return ProfileBank(views(zu), views(zi), man)


def random_profiles(n_users: int, n_items: int, k: int = 4, dim: int = 1536, seed: int = 0) -> ProfileBank:
    """Pure-noise profiles of a given shape (benchmarks of the real 1536-d shape; no signal at all)."""
    rng = np.random.default_rng(seed)
    user = rng.standard_normal((k, n_users, dim), dtype=np.float32) / np.sqrt(dim)
    item = rng.standard_normal((k, n_items, dim), dtype=np.float32) / np.sqrt(dim)
    man = {"source": "random", "llm": "none (random)", "embedder": "none", "prompts": "none", "seed": seed}
    return ProfileBank(user, item, man)
