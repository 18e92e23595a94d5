"""Synthetic dataset: determinism, sizes, text that carries the latent topics, and learnability."""

from __future__ import annotations

import time

import numpy as np
import pytest

from proex.config import ConfigError
from proex.data.synthetic import FILLER_WORDS, TOPIC_WORDS, SyntheticConfig, make_synthetic, topic_vocabulary


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SyntheticConfig())


def recall_at(data, scores: np.ndarray, k: int = 20) -> float:
    """Mean Recall@k on the test split, training items masked (the full-ranking protocol of HKUDS/RLMRec)."""
    scores = np.array(scores, dtype=np.float64)
    scores[data.train.toarray() > 0] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :k]
    truth = data.test.toarray() > 0
    hits = np.take_along_axis(truth, top, axis=1).sum(1)
    n = truth.sum(1)
    return float((hits[n > 0] / np.minimum(n[n > 0], k)).mean())


def test_deterministic_per_seed():
    a, b, c = make_synthetic(SyntheticConfig(seed=5)), make_synthetic(SyntheticConfig(seed=5)), make_synthetic()
    for s in ("train", "val", "test"):
        assert (a.split(s) != b.split(s)).nnz == 0
    assert a.item_text.equals(b.item_text) and a.user_text.equals(b.user_text)
    np.testing.assert_array_equal(a.extras["user_latent"], b.extras["user_latent"])
    assert (a.train != c.train).nnz > 0 and not a.item_text.equals(c.item_text)


def test_sizes_and_extras(data):
    cfg = SyntheticConfig()
    assert (data.n_users, data.n_items) == (cfg.n_users, cfg.n_items)
    per_user = sum(np.diff(m.indptr) for m in (data.train, data.val, data.test))
    assert per_user.min() >= 3 and np.diff(data.train.indptr).min() >= 1
    assert 15 < per_user.mean() < 25  # mean_interactions = 20
    assert 0.55 < data.train.nnz / per_user.sum() < 0.65
    ex = data.extras
    assert ex["user_latent"].shape == (cfg.n_users, cfg.dim) and ex["user_latent"].dtype == np.float32
    assert ex["item_latent"].shape == (cfg.n_items, cfg.dim) and ex["item_latent"].dtype == np.float32
    assert ex["user_topics"].shape == (cfg.n_users, cfg.n_topics)
    np.testing.assert_allclose(ex["item_topics"].sum(1), 1.0, rtol=1e-5)
    assert list(data.item_text.columns) == ["title", "description"] and list(data.user_text.columns) == ["reviews"]
    assert len(data.item_text) == cfg.n_items and data.item_text.description.str.len().min() > 50


def test_fast_at_default_size():
    start = time.perf_counter()
    make_synthetic(SyntheticConfig(seed=1))
    assert time.perf_counter() - start < 3.0  # about 0.1 s; generous bound for slow CI machines


def test_vocabulary():
    words = [w for ws in TOPIC_WORDS.values() for w in ws]
    assert len(TOPIC_WORDS) >= 8 and all(len(ws) == 20 for ws in TOPIC_WORDS.values())
    assert len(set(words)) == len(words) and not set(words) & set(FILLER_WORDS)
    extra = topic_vocabulary(12)
    assert len({w for ws in extra for w in ws}) == 12 * 20  # topics past the named lists get distinct words


def _topic_share(data, texts, mix) -> tuple[float, float]:
    """Mean share of an entity's words that belong to its dominant topic, and that share under chance."""
    vocab = [set(ws) for ws in data.extras["topic_words"]]
    dominant = mix.argmax(1)
    shares = []
    for text, k in zip(texts, dominant):
        words = text.replace(".", "").lower().split()
        shares.append(np.mean([w in vocab[k] for w in words]))
    chance = 20 / (len(vocab) * 20 + len(FILLER_WORDS))  # uniform over the whole vocabulary
    return float(np.mean(shares)), chance


def test_text_carries_the_latent_topics(data):
    share, chance = _topic_share(data, data.user_text.reviews, data.extras["user_topics"])
    assert share > 3 * chance
    share, chance = _topic_share(data, data.item_text.description, data.extras["item_topics"])
    assert share > 3 * chance
    noise = make_synthetic(SyntheticConfig(text_signal=0.0))
    share0, _ = _topic_share(noise, noise.user_text.reviews, noise.extras["user_topics"])
    assert share0 == 0.0  # without signal the text is filler only


def test_personalisation_is_learnable(data):
    pop = np.asarray(data.train.sum(0)).ravel()
    r_pop = recall_at(data, np.tile(pop, (data.n_users, 1)))
    r_latent = recall_at(data, data.extras["user_latent"] @ data.extras["item_latent"].T)
    x = data.train.toarray()
    xn = x / np.maximum(np.linalg.norm(x, axis=0), 1e-9)
    sim = xn.T @ xn
    np.fill_diagonal(sim, 0.0)
    r_knn = recall_at(data, x @ sim)  # item-kNN learned from the training split only
    assert r_latent > 1.3 * r_pop and r_knn > 1.3 * r_pop
    assert r_pop > 0.05  # popularity still carries some signal (popularity_skew = 1)


def test_config_errors():
    with pytest.raises(ConfigError, match="n_items"):
        make_synthetic(SyntheticConfig(n_items=4))
    with pytest.raises(ConfigError, match="text_signal"):
        make_synthetic(SyntheticConfig(text_signal=1.5))
