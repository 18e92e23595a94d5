"""BPR sampler: every edge once per epoch, negatives never training items; user batches cover all users."""
import torch

from proex.data.sampling import bpr_batches, sample_negatives, user_batches
from proex.data.tensors import TrainData
from conftest import random_interactions


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
