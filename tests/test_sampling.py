"""BPR sampler: every edge once per epoch, negatives never training items; user batches cover all users;
the epoch-wide distinct rows equal torch.unique per batch."""

import pytest
import torch
from conftest import random_interactions

from proex.data.batches import Distinct, PairBatch
from proex.data.distinct_epoch import epoch_distinct
from proex.data.sampling import bpr_batches, sample_negatives, user_batches
from proex.data.tensors import TrainData


def test_negatives_are_never_training_items():
    inter = random_interactions(n_users=40, n_items=12, per_user=10)  # dense: 6 of 12 items are train
    data = TrainData(inter)
    users = data.edge_users.repeat(200)
    neg = sample_negatives(data, users)
    assert not data.is_train(users, neg).any()
    assert neg.min() >= 0 and neg.max() < data.n_items
    # uniform over the allowed items: every non-train item of user 0 shows up
    allowed = set(range(12)) - set(inter.train[0].indices.tolist())
    assert set(neg[users == 0].tolist()) == allowed


def test_every_edge_exactly_once_per_epoch(tiny):
    data = TrainData(tiny)
    batches = list(bpr_batches(data, batch_size=64))
    assert len(batches) == -(-data.n_edges // 64)
    u = torch.cat([b.users for b in batches])
    p = torch.cat([b.pos for b in batches])
    keys = torch.sort(u * data.n_items + p).values
    assert torch.equal(keys, data.edge_keys)
    for b in batches:
        assert not data.is_train(b.users, b.neg).any()


def test_user_batches_rows_match_matrix(tiny):
    data = TrainData(tiny)
    seen = []
    for b in user_batches(data, 16):
        dense = torch.as_tensor(tiny.train[b.users.numpy()].toarray())
        assert torch.equal(b.rows, dense)
        seen.append(b.users)
    assert sorted(torch.cat(seen).tolist()) == list(range(tiny.n_users))


@pytest.mark.parametrize("n, batch_size, n_users, n_items", [(1000, 64, 50, 40), (1003, 100, 7, 300), (5, 10, 3, 3)])
def test_epoch_distinct_equals_unique_per_batch(n, batch_size, n_users, n_items):
    """Full and partial last batches, dense (few ids) and sparse (many ids) batches."""
    g = torch.Generator().manual_seed(n)
    users, pos, neg = (torch.randint(m, (n,), generator=g) for m in (n_users, n_items, n_items))
    index = epoch_distinct(users, pos, neg, batch_size, n_users, n_items)
    assert len(index) == -(-n // batch_size)
    for b, got in enumerate(index):
        sl = slice(b * batch_size, (b + 1) * batch_size)
        batch = PairBatch(users[sl], pos[sl], neg[sl])
        want = Distinct.of(batch)
        for field in ("users", "user_inv", "items", "item_inv", "pos"):
            assert torch.equal(getattr(got, field), getattr(want, field)), (b, field)
        assert torch.equal(got.users[got.user_inv], batch.users)
        assert torch.equal(got.items[got.item_inv], batch.items)
        assert torch.equal(got.items[got.pos], torch.unique(batch.pos))
        _, user_counts = torch.unique(batch.users, return_counts=True)
        assert torch.equal(got.user_counts(), user_counts.float())
        positives, pos_counts = torch.unique(batch.pos, return_counts=True)
        assert all(torch.equal(a, b) for a, b in zip(got.positives(), (positives, pos_counts.float())))


def test_bpr_batches_attach_distinct_rows_on_request(tiny):
    data = TrainData(tiny)
    assert all(b.precomputed is None for b in bpr_batches(data, 64))
    for b in bpr_batches(data, 64, distinct=True):
        assert b.precomputed is not None
        assert torch.equal(b.distinct().users, torch.unique(b.users))
        assert torch.equal(b.distinct().items[b.distinct().item_inv], b.items)


def test_reference_kernels_switch_runs_torch_unique_per_batch(tiny):
    """Under `reference_kernels()` the sampler precomputes nothing and each batch computes its own rows with
    `Distinct.of` (torch.unique); the rows are the same."""
    from proex.runtime import reference_kernels

    data = TrainData(tiny)
    torch.manual_seed(3)
    fast = list(bpr_batches(data, 32, distinct=True))
    torch.manual_seed(3)
    with reference_kernels():
        ref = list(bpr_batches(data, 32, distinct=True))
    assert all(b.precomputed is not None for b in fast) and all(b.precomputed is None for b in ref)
    for a, b in zip(fast, ref):
        da, db = a.distinct(), b.distinct()
        assert all(
            torch.equal(getattr(da, f), getattr(db, f)) for f in ("users", "user_inv", "items", "item_inv", "pos")
        )
