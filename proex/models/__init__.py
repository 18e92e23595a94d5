"""The base recommenders, in the order of the paper's Table 2 (the order also orders report rows)."""

from __future__ import annotations

from ..names import MODEL_NAMES
from .base import BaseModel, Encoded, GraphState, LatentState, PairBatch, Side, UserBatch
from .cvga import CVGA
from .gccf import GCCF
from .ldiffrec import LDiffRec
from .lightgcn import LightGCN
from .multvae import MultVAE
from .simgcl import SimGCL

MODELS: dict[str, type[BaseModel]] = {m.name: m for m in (GCCF, LightGCN, SimGCL, MultVAE, LDiffRec, CVGA)}
assert tuple(MODELS) == MODEL_NAMES, "proex.names.MODEL_NAMES lists the registered models, in this order"


def model_class(name: str) -> type[BaseModel]:
    """Look up a model by name; unknown names list the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


__all__ = [
    "MODELS",
    "model_class",
    "BaseModel",
    "Encoded",
    "GraphState",
    "LatentState",
    "PairBatch",
    "Side",
    "UserBatch",
]
