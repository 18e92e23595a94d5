"""LightGCN (He et al., SIGIR'20) as run in RLMRec, the paper's base
(HKUDS/RLMRec encoder/models/general_cf/lightgcn.py).

E^{l+1} = Â E^l with no weights or non-linearity; the final representation is the SUM of layers 0..L
(RLMRec; the LightGCN paper averages). In training each nonzero of Â is kept with p = keep_rate, without
rescaling or renormalising, redrawn every batch. `include_ego=False, keep_rate=1.0` gives the encoder of
the official ProEx code (ProRec lightgcn_proex.py), which sums layers 1..L and never drops edges.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from .base import Encoded
from .graph import SparseAdj
from .pairwise import PairwiseModel


@dataclass
class LightGCNConfig:
    dim: int = 32  # embedding size d (every RLMRec discriminative yml; paper A.2.3)
    layers: int = 3  # L (amazon/yelp 3, steam 2: lightgcn.yml)
    reg_weight: float = 1e-6  # λ on Σ‖θ‖² over all parameters (RLMRec loss_utils.py)
    keep_rate: float = 0.8  # edge dropout keep probability in training; 1.0 = off (official ProEx)
    include_ego: bool = True  # sum layers 0..L (RLMRec) or 1..L (official ProEx encoder)


def propagate(adj: SparseAdj, ego: Tensor, layers: int, include_ego: bool) -> Tensor:
    """Σ_l Â^l E over l = 0..L (or 1..L). ego: [(U + I), d] -> [(U + I), d]."""
    h, out = ego, (ego if include_ego else None)
    for _ in range(layers):
        h = adj.matmul(h)
        out = h if out is None else out + h
    return out


class LightGCN(PairwiseModel):
    name = "lightgcn"
    Config = LightGCNConfig

    def encode(self, batch=None, ego: Tensor | None = None) -> Encoded:
        """Propagate all users and items. `ego` ([(U + I), d]) replaces the ID table (RLMRec-Gen masking)."""
        adj = self.adj.dropout(self.cfg.keep_rate) if self.training else self.adj
        h = propagate(adj, self.embedding if ego is None else ego, self.cfg.layers, self.cfg.include_ego)
        return Encoded(self.split(h))
