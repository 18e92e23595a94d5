"""Write an `Interactions` to disk in the RLMRec layout so every tool that reads RLMRec data can use it.

<dir>/trn_mat.pkl, val_mat.pkl, tst_mat.pkl: pickled scipy.sparse.coo_matrix [n_users, n_items], float64 1.0
(exactly the format HKUDS/RLMRec encoder/data_utils/data_handler_general_cf.py reads); user_text.csv /
item_text.csv (column `id` = dense id plus the text columns) when the dataset has text; extras that are numpy
arrays (e.g. the synthetic latent factors) in extras.npz.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import scipy.sparse as sp

from .interactions import Interactions

SPLIT_FILES = {"train": "trn_mat.pkl", "val": "val_mat.pkl", "test": "tst_mat.pkl"}


def save_rlmrec(inter: Interactions, directory: str) -> list[str]:
    """Write the dataset; returns the file names written."""
    os.makedirs(directory, exist_ok=True)
    written = []
    for split, fname in SPLIT_FILES.items():
        with open(os.path.join(directory, fname), "wb") as f:
            pickle.dump(sp.coo_matrix(inter.split(split), dtype=np.float64), f, protocol=4)
        written.append(fname)
    for side, table in (("user", inter.user_text), ("item", inter.item_text)):
        if table is not None:
            fname = f"{side}_text.csv"
            table.rename_axis("id").reset_index().to_csv(os.path.join(directory, fname), index=False)
            written.append(fname)
    arrays = {k: v for k, v in inter.extras.items() if isinstance(v, np.ndarray)}
    if arrays:
        np.savez_compressed(os.path.join(directory, "extras.npz"), **arrays)
        written.append("extras.npz")
    return written
