"""Graph utilities shared by GCCF, LightGCN, SimGCL and CVGA: normalised adjacencies and a fast propagation.

`SparseAdj` holds a sparse CSR matrix and its transpose, and multiplies with a custom autograd function
whose backward is one CSR product with the precomputed transpose. PyTorch's own backward for sparse CSR
products is ~10x slower on CPU, and this product is the hot path of every graph model (it runs L times
forward and L times backward on every batch). Edge dropout (RLMRec LightGCN, keep_rate) zeroes values
without changing the sparsity pattern, so the transpose is still a permutation of the same values.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
warnings.filterwarnings("ignore", message="Sparse invariant checks are implicitly disabled")


def _csr_mm(a: Tensor, x: Tensor) -> Tensor:
    """a @ x for sparse CSR a [n, m] and dense x [m, d]. `addmm(beta=0, out=)` into a fresh buffer is faster
    on CPU than `a @ x`, which zero-fills and copies its result (timings in docs/results/speed.md)."""
    out = torch.empty(a.shape[0], x.shape[1], dtype=x.dtype, device=x.device)
    return torch.addmm(out, a, x, beta=0, out=out)


class _SpMM(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, a_t: Tensor, x: Tensor) -> Tensor:  # a: sparse [n, m], x: [m, d]
        ctx.a_t = a_t
        return _csr_mm(a, x.contiguous())

    @staticmethod
    def backward(ctx, grad: Tensor):  # d(a x)/dx^T grad = a^T grad
        return None, None, _csr_mm(ctx.a_t, grad.contiguous())


def _torch_csr(indptr, indices, values, shape, device) -> Tensor:
    return torch.sparse_csr_tensor(
        torch.as_tensor(indptr, dtype=torch.int64, device=device),
        torch.as_tensor(indices, dtype=torch.int64, device=device),
        torch.as_tensor(values, dtype=torch.float32, device=device),
        size=shape,
    )


class SparseAdj:
    """A fixed-pattern sparse matrix A [n, m] (CSR) with its transpose, for fast `A @ x` with autograd.

    values: [nnz] in A's CSR order. `t_perm` maps A's CSR values to Aᵀ's CSR order, so a dropped-out copy
    (same pattern, some values zero) gets its transpose for free.
    """

    def __init__(self, m: sp.spmatrix, device: torch.device):
        m = sp.csr_matrix(m, dtype=np.float32)
        m.sort_indices()
        self.shape = m.shape
        self.device = device
        # Position of each nonzero in CSR order, carried through the transpose to find its new place.
        order = sp.csr_matrix((np.arange(m.nnz, dtype=np.float64) + 1, m.indices, m.indptr), shape=m.shape)
        mt = order.T.tocsr()
        mt.sort_indices()
        self.t_perm = torch.as_tensor(mt.data.astype(np.int64) - 1, device=device)
        self._indptr = torch.as_tensor(m.indptr, dtype=torch.int32, device=device)
        self._indices = torch.as_tensor(m.indices, dtype=torch.int32, device=device)
        self._t_indptr = torch.as_tensor(mt.indptr, dtype=torch.int32, device=device)
        self._t_indices = torch.as_tensor(mt.indices, dtype=torch.int32, device=device)
        self.values = torch.as_tensor(m.data, dtype=torch.float32, device=device)
        self.a, self.a_t = self._pair(self.values)

    @property
    def nnz(self) -> int:
        return int(self.values.numel())

    def _pair(self, values: Tensor) -> tuple[Tensor, Tensor]:
        a = torch.sparse_csr_tensor(self._indptr, self._indices, values, size=self.shape)
        a_t = torch.sparse_csr_tensor(
            self._t_indptr, self._t_indices, values[self.t_perm], size=(self.shape[1], self.shape[0])
        )
        return a, a_t

    def matmul(self, x: Tensor) -> Tensor:
        """A @ x for dense x [m, d] -> [n, d], differentiable in x."""
        return _SpMM.apply(self.a, self.a_t, x)

    def rmatmul(self, x: Tensor) -> Tensor:
        """Aᵀ @ x for dense x [n, d] -> [m, d], differentiable in x."""
        return _SpMM.apply(self.a_t, self.a, x)

    def dropout(self, keep_rate: float) -> SparseAdj:
        """A copy whose nonzeros are each kept with probability keep_rate, NOT rescaled and NOT renormalised
        (RLMRec LightGCN edge dropout, HKUDS/RLMRec encoder/models/general_cf/lightgcn.py)."""
        if keep_rate >= 1.0:
            return self
        keep = (torch.rand(self.values.shape, device=self.device) < keep_rate).to(self.values.dtype)
        out = object.__new__(SparseAdj)
        out.__dict__.update(self.__dict__)
        out.values = self.values * keep
        out.a, out.a_t = out._pair(out.values)
        return out


def bipartite_adjacency(train: sp.csr_matrix, self_loops: bool, device: torch.device) -> SparseAdj:
    """D^{-1/2} (A [+ I]) D^{-1/2} with A = [[0, R], [Rᵀ, 0]] over users then items; zero-degree rows get 0.

    Shape [(U + I), (U + I)]. Self-loops only for plain GCCF (HKUDS/RLMRec data_handler_general_cf.py, model name
    "gccf").
    """
    n_users, n_items = train.shape
    r = sp.csr_matrix(train, dtype=np.float32)
    a = sp.bmat([[None, r], [r.T, None]], format="csr", dtype=np.float32)
    if self_loops:
        a = a + sp.eye(n_users + n_items, dtype=np.float32, format="csr")
    deg = np.asarray(a.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(deg)
    nz = deg > 0
    inv_sqrt[nz] = deg[nz] ** -0.5
    d = sp.diags(inv_sqrt)
    return SparseAdj(d @ a @ d, device)


def user_item_adjacency(train: sp.csr_matrix, device: torch.device) -> SparseAdj:
    """R̃ = D_u^{-1/2} R D_i^{-1/2}, shape [U, I] (CVGA's one-hop graph, BlueGhostYi/ID-GRec models/CVGA.py)."""
    r = sp.csr_matrix(train, dtype=np.float32)
    du = np.asarray(r.sum(axis=1)).ravel()
    di = np.asarray(r.sum(axis=0)).ravel()
    with np.errstate(divide="ignore"):
        du = np.where(du > 0, du**-0.5, 0.0)
        di = np.where(di > 0, di**-0.5, 0.0)
    return SparseAdj(sp.diags(du) @ r @ sp.diags(di), device)


def bpr_loss(user: Tensor, pos: Tensor, neg: Tensor) -> Tensor:
    """Mean over the batch of softplus(s_neg - s_pos) with inner-product scores
    (HKUDS/RLMRec encoder/models/loss_utils.py).

    user, pos, neg: [..., B, D] -> [...] (a scalar for [B, D]; [E] for E environments at once).
    """
    return torch.nn.functional.softplus((user * (neg - pos)).sum(-1)).mean(-1)


def infonce(anchor: Tensor, positive: Tensor, candidates: Tensor, temperature: float) -> Tensor:
    """RLMRec `cal_infonce_loss`: L2-normalise, then Σ_rows [-â·p̂/τ + logsumexp_n(â·n̂/τ)] (a SUM over rows;
    callers divide by the batch size). anchor, positive: [B, D]; candidates: [N, D] (contains the positives)."""
    a = anchor / torch.sqrt((anchor * anchor).sum(-1, keepdim=True) + 1e-8)
    p = positive / torch.sqrt((positive * positive).sum(-1, keepdim=True) + 1e-8)
    c = candidates / torch.sqrt((candidates * candidates).sum(-1, keepdim=True) + 1e-8)
    pos_term = (a * p).sum(-1) / temperature
    return (-pos_term + torch.logsumexp(a @ c.T / temperature, dim=-1)).sum()
