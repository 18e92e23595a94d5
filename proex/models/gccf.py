"""LightGCN-style GCCF (Chen et al., AAAI'20) as run in RLMRec (HKUDS/RLMRec encoder/models/general_cf/gccf.py).

Propagation over Â WITH self-loops, no non-linearity; each layer owns a d x d weight that the forward pass
never uses (RLMRec comments that it works better without) but that still counts in Σ‖θ‖², so we keep it
for an identical regulariser. Final representation: the concatenation [E^0 ‖ E^1 ‖ ... ‖ E^L], so the
fusion point (and `side_dim`) is (L + 1) * d wide.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import Encoded
from .pairwise import PairwiseModel


@dataclass
class GCCFConfig:
    dim: int = 32  # embedding size d
    layers: int = 2  # L (gccf.yml dataset blocks: 2 on amazon, yelp and steam)
    reg_weight: float = 1e-6  # λ on Σ‖θ‖² (includes the unused layer weights, as in RLMRec)
    self_loops: bool = True  # Â built from A + I (only the plain 'gccf' model in RLMRec has them)


class GCCF(PairwiseModel):
    name = "gccf"
    Config = GCCFConfig

    def __init__(self, cfg: GCCFConfig, data):
        super().__init__(cfg, data)
        self.layer_weights = nn.ParameterList(
            nn.Parameter(nn.init.xavier_uniform_(torch.empty(cfg.dim, cfg.dim))) for _ in range(cfg.layers)
        )

    @classmethod
    def side_width(cls, cfg: GCCFConfig) -> int:
        return (cfg.layers + 1) * cfg.dim

    def encode(self, batch=None, ego: Tensor | None = None) -> Encoded:
        h = self.embedding if ego is None else ego
        layers = [h]
        for _ in range(self.cfg.layers):
            h = self.adj.matmul(h)
            layers.append(h)
        return Encoded(self.split(torch.cat(layers, dim=1)))
