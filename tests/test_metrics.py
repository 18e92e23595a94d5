"""The evaluator against hand-computed Recall@K and NDCG@K (the full-ranking protocol of HKUDS/RLMRec
encoder/trainer/metrics.py)."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import random_interactions

from proex.data.interactions import Interactions, to_binary_csr
from proex.data.tensors import TrainData
from proex.metrics import RankingEvaluator


def _csr(pairs, shape):
    u, i = zip(*pairs)
    return to_binary_csr(sp.csr_matrix((np.ones(len(u)), (u, i)), shape=shape))


@pytest.fixture
def toy():
    # 3 users, 6 items. user 2 has no test item -> not evaluated.
    train = _csr([(0, 0), (1, 1), (2, 2)], (3, 6))
    val = _csr([(0, 5), (1, 0), (2, 3)], (3, 6))
    test = _csr([(0, 1), (0, 2), (0, 3), (1, 4)], (3, 6))
    test = sp.csr_matrix(test)
    return Interactions("toy", train, val, test).validate()


def test_recall_ndcg_hand_computed(toy):
    data = TrainData(toy)
    # Scores: item index order preferred high -> low as listed.
    table = torch.tensor(
        [
            [9.0, 8.0, 1.0, 7.0, 6.0, 5.0],  # user 0: item 0 is train (masked) -> ranking 1, 3, 4, 5, 2
            [1.0, 9.0, 8.0, 7.0, 6.0, 5.0],  # user 1: item 1 masked -> ranking 2, 3, 4, 5, 0
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    ev = RankingEvaluator(data, "test", ks=(1, 3), batch_size=2)
    res = ev.per_user(lambda b: table[b.users].clone(), needs_rows=False)
    assert ev.users.tolist() == [0, 1]
    d = [1 / math.log2(j + 2) for j in range(3)]
    # user 0: G = {1, 2, 3}; top3 = [1, 3, 4] -> hits at ranks 1 and 2.
    # user 1: G = {4}; top3 = [2, 3, 4] -> hit at rank 3; val item 0 is NOT masked (stays a candidate).
    expect = {
        "recall@1": [1 / 3, 0.0],
        "recall@3": [2 / 3, 1.0],
        "ndcg@1": [1.0, 0.0],
        "ndcg@3": [(d[0] + d[1]) / sum(d), d[2] / d[0]],
    }
    for name, values in expect.items():
        assert res[name].tolist() == pytest.approx(values), name
    means = ev(lambda b: table[b.users].clone(), needs_rows=False)
    assert means["recall@3"] == pytest.approx((2 / 3 + 1.0) / 2)


def test_recall_denominator_is_full_ground_truth(toy):
    """Recall@1 of user 0 with a hit at rank 1 is 1/|G_u| = 1/3, not 1/min(K, |G_u|) = 1."""
    data = TrainData(toy)
    ev = RankingEvaluator(data, "test", ks=(1,))
    res = ev.per_user(lambda b: torch.arange(6.0, 0, -1).repeat(b.users.numel(), 1), needs_rows=False)
    assert res["recall@1"][0].item() == pytest.approx(1 / 3)


def test_batch_size_does_not_change_metrics(tiny):
    data = TrainData(tiny)
    scores = torch.randn(tiny.n_users, tiny.n_items)
    a = RankingEvaluator(data, "val", (5, 10), batch_size=7)(lambda b: scores[b.users].clone())
    b = RankingEvaluator(data, "val", (5, 10), batch_size=1000)(lambda b: scores[b.users].clone())
    assert a == pytest.approx(b)


def test_train_items_never_ranked():
    """A scorer that puts every training item first: the evaluator's numbers must equal a ranking computed here,
    independently, over the non-training items only (unmasked, the top 10 would be training items and the
    metrics would differ)."""
    tiny = random_interactions(n_users=60, n_items=80, per_user=30)  # 18 training items per user
    data = TrainData(tiny)
    ev = RankingEvaluator(data, "val", (5, 10), batch_size=17)
    train = tiny.train.toarray() > 0
    noise = np.random.default_rng(123).random(train.shape)  # not the data's seed: that would rank them last
    scores = train * 100.0 + noise  # every training item outranks every other item
    got = ev.per_user(lambda b: torch.as_tensor(scores[b.users.numpy()], dtype=torch.float32).clone())
    truth = tiny.val.toarray() > 0
    want = {f"{m}@{k}": [] for k in (5, 10) for m in ("recall", "ndcg")}
    for u in ev.users.tolist():
        candidates = np.flatnonzero(~train[u])
        ranked = candidates[np.argsort(-scores[u, candidates], kind="stable")]
        g = truth[u].sum()
        for k in (5, 10):
            hits = truth[u, ranked[:k]]
            want[f"recall@{k}"].append(hits.sum() / g)
            dcg = sum(1 / math.log2(j + 2) for j in np.flatnonzero(hits))
            want[f"ndcg@{k}"].append(dcg / sum(1 / math.log2(j + 2) for j in range(min(k, g))))
    assert sum(want["recall@10"]) > 0  # hits exist to be lost if training items took the top places
    for name, values in want.items():
        np.testing.assert_allclose(got[name].numpy(), np.array(values), atol=1e-6, err_msg=name)
