"""A small synthetic "books" dataset with a known latent structure, for tests, smoke runs and sanity checks.

Generative story (all numpy, one seeded Generator, so one seed gives identical matrices and text):
* topics: `n_topics` unit vectors in R^dim; user and item topic mixtures ~ Dirichlet(0.3) [n, n_topics];
  latent vectors = mixture @ topic vectors + small noise [n, dim].
* item popularity p_i ~ LogNormal(0, 1); user u's item distribution is softmax_i(u.v_i / temperature) * p_i^skew.
* each user draws 3 + LogNormal-many distinct items (mean `mean_interactions`) without replacement by
  Gumbel-top-k on the logits, then the interactions are split 3:1:1 per user (`tables.split_per_user`).
* text: each word comes, with probability `text_signal`, from the word list of a topic drawn from the entity's
  mixture (so mostly its dominant topics), else from generic filler words. Items get `title`, `description`;
  users get `reviews` (four short reviews concatenated). This is the stand-in for the LLM profiles and
  side text of the RLMRec data: text that carries part of the collaborative signal.
The latent factors and mixtures are kept in `extras` so later stages can build profile embeddings from them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import ConfigError
from .interactions import Interactions
from .tables import split_per_user

TOPIC_WORDS: dict[str, list[str]] = {
    "mystery": "mystery detective clue murder suspect alibi investigation sleuth inspector crime whodunit evidence "
    "motive victim culprit forensic interrogation witness puzzle coldcase".split(),
    "romance": "romance love passion heartbreak wedding kiss courtship longing soulmate affair desire bride "
    "sweetheart flirtation proposal jealousy devotion tender embrace heartthrob".split(),
    "fantasy": "dragon wizard sorcery elf quest kingdom spell enchanted prophecy dwarf sword realm magic throne "
    "goblin amulet sorceress mythical fae necromancer".split(),
    "scifi": "spaceship galaxy alien robot android starship cyborg interstellar planet colony warp dystopia quantum "
    "asteroid orbit terraforming hyperspace clone nanotech extraterrestrial".split(),
    "history": "empire war revolution medieval dynasty monarchy battle colonial ancient civilization treaty archive "
    "chronicle pharaoh crusade renaissance regiment siege conquest historian".split(),
    "horror": "haunted ghost terror nightmare vampire zombie demon possession creepy gore monster cursed poltergeist "
    "crypt exorcism dread werewolf shadowy macabre graveyard".split(),
    "cooking": "recipe kitchen baking chef flavor ingredient pastry spice cuisine dessert bread sauce roast "
    "vegetarian simmer dough grill seasoning casserole ferment".split(),
    "selfhelp": "habit mindset productivity motivation success wellness meditation confidence goals resilience "
    "mindfulness discipline happiness career leadership growth anxiety focus gratitude routine".split(),
    "biography": "memoir childhood autobiography legacy upbringing diary hometown letters portrait lifetime "
    "recollection testimony mentor ancestry obituary confession youth pioneer statesman celebrity".split(),
    "children": "bedtime puppy kitten alphabet rhyme fairy playground toddler bunny teddy crayon counting lullaby "
    "giggle classroom friendship colorful storybook dinosaur picture".split(),
}
FILLER_WORDS: list[str] = (
    "book story read reading author page chapter novel character plot writing really great good enjoyed "
    "recommend time first many well little end new world people way much series finished loved interesting "
    "copy edition review stars pages style ending favorite quite overall fun nice bit long short easy volume "
    "cover title prose pace"
).split()
_CHUNK = 4096  # users per block when scoring, bounds memory at _CHUNK x n_items floats


@dataclass
class SyntheticConfig:
    """Size and signal of the synthetic dataset (defaults: 600 users x 400 items, ~20 interactions per user)."""

    n_users: int = 600
    n_items: int = 400
    n_topics: int = 8
    dim: int = 16
    mean_interactions: float = 20.0
    popularity_skew: float = 1.0
    text_signal: float = 0.7
    temperature: float = 0.1
    seed: int = 0

    def check(self) -> SyntheticConfig:
        """Raise ConfigError on impossible sizes or probabilities; return self."""
        problems = []
        if self.n_users < 1 or self.n_topics < 1 or self.dim < 1:
            problems.append("n_users, n_topics and dim must be >= 1")
        if self.n_items < 6:
            problems.append("n_items must be >= 6 (each user draws >= 3 distinct items, at most half of them)")
        if not 3 <= self.mean_interactions <= self.n_items / 2:
            problems.append(f"mean_interactions must be in [3, n_items/2 = {self.n_items / 2}]")
        if not 0.0 <= self.text_signal <= 1.0:
            problems.append("text_signal must be in [0, 1]")
        if self.temperature <= 0:
            problems.append("temperature must be > 0")
        if problems:
            raise ConfigError(f"SyntheticConfig {self}: " + "; ".join(problems))
        return self


def topic_vocabulary(n_topics: int) -> list[list[str]]:
    """Word lists (20 words each) of topics 0..n_topics-1; past the 10 named lists, words get a suffix `_k`."""
    lists = list(TOPIC_WORDS.values())
    return [[w if k < len(lists) else f"{w}_{k // len(lists)}" for w in lists[k % len(lists)]] for k in range(n_topics)]


def make_synthetic(cfg: SyntheticConfig | None = None) -> Interactions:
    """Build the synthetic dataset (see module doc); about 0.1 s at the default size, deterministic per seed."""
    cfg = (cfg or SyntheticConfig()).check()
    rng = np.random.default_rng(cfg.seed)
    topics = rng.normal(size=(cfg.n_topics, cfg.dim))
    topics /= np.linalg.norm(topics, axis=1, keepdims=True)
    user_mix = rng.dirichlet(np.full(cfg.n_topics, 0.3), size=cfg.n_users)
    item_mix = rng.dirichlet(np.full(cfg.n_topics, 0.3), size=cfg.n_items)
    noise = 0.3 / np.sqrt(cfg.dim)
    user_lat = user_mix @ topics + rng.normal(scale=noise, size=(cfg.n_users, cfg.dim))
    item_lat = item_mix @ topics + rng.normal(scale=noise, size=(cfg.n_items, cfg.dim))
    popularity = rng.lognormal(0.0, 1.0, size=cfg.n_items)

    sigma = 0.6  # spread of the per-user activity; the mean of the LogNormal is mean_interactions - 3
    mu = np.log(cfg.mean_interactions - 3 + 1e-9) - sigma**2 / 2
    n_per_user = 3 + np.rint(rng.lognormal(mu, sigma, size=cfg.n_users)).astype(np.int64)
    n_per_user = np.minimum(n_per_user, cfg.n_items // 2)
    users, items = _draw_interactions(rng, user_lat, item_lat, popularity, n_per_user, cfg)
    train, val, test = split_per_user(users, items, (cfg.n_users, cfg.n_items), (3, 1, 1), cfg.seed)

    vocab = topic_vocabulary(cfg.n_topics)
    title = _texts(rng, item_mix, 3, cfg.text_signal, vocab)
    description = _texts(rng, item_mix, 30, cfg.text_signal, vocab)
    reviews = _texts(rng, user_mix, 48, cfg.text_signal, vocab, sentence=12)
    item_text = pd.DataFrame({"title": [t.rstrip(".").title() for t in title], "description": description})
    user_text = pd.DataFrame({"reviews": reviews})
    params = ",".join(f"{k}={v}" for k, v in dataclasses.asdict(cfg).items())
    extras = {
        "format": "synthetic",
        "synthetic_config": dataclasses.asdict(cfg),
        "user_latent": user_lat.astype(np.float32),
        "item_latent": item_lat.astype(np.float32),
        "user_topics": user_mix.astype(np.float32),
        "item_topics": item_mix.astype(np.float32),
        "item_popularity": popularity.astype(np.float32),
        "topic_words": vocab,
    }
    return Interactions(
        name="synthetic",
        train=train,
        val=val,
        test=test,
        user_text=user_text,
        item_text=item_text,
        source=f"synthetic({params})",
        extras=extras,
    ).validate()


def _draw_interactions(
    rng: np.random.Generator,
    user_lat: np.ndarray,
    item_lat: np.ndarray,
    popularity: np.ndarray,
    n_per_user: np.ndarray,
    cfg: SyntheticConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Distinct items per user without replacement, P ~ softmax(u.v/T) * pop^skew, by Gumbel-top-k.

    Returns (users, items) int64 arrays [sum(n_per_user)], grouped by user.
    """
    log_pop = cfg.popularity_skew * np.log(popularity)
    users, items = [], []
    for start in range(0, cfg.n_users, _CHUNK):
        block = slice(start, min(start + _CHUNK, cfg.n_users))
        logits = user_lat[block] @ item_lat.T / cfg.temperature + log_pop
        keys = logits + rng.gumbel(size=logits.shape)
        order = np.argsort(-keys, axis=1, kind="stable")
        take = np.arange(cfg.n_items)[None, :] < n_per_user[block, None]
        users.append(np.repeat(np.arange(block.start, block.stop), n_per_user[block]))
        items.append(order[take])
    return np.concatenate(users), np.concatenate(items).astype(np.int64)


def _texts(
    rng: np.random.Generator, mix: np.ndarray, n_words: int, signal: float, vocab: list[list[str]], sentence: int = 0
) -> list[str]:
    """One text of `n_words` words per row of `mix` [n, n_topics] (see module doc); a '.' every `sentence` words."""
    n, n_topics = mix.shape
    per_topic = len(vocab[0])
    words = np.array([w for topic in vocab for w in topic] + FILLER_WORDS, dtype=object)
    cum = np.cumsum(mix, axis=1)
    topic = (rng.random((n, n_words, 1)) > cum[:, None, :]).sum(axis=2).clip(max=n_topics - 1)
    topical = rng.random((n, n_words)) < signal
    idx = np.where(
        topical,
        topic * per_topic + rng.integers(per_topic, size=(n, n_words)),
        n_topics * per_topic + rng.integers(len(FILLER_WORDS), size=(n, n_words)),
    )
    table = words[idx]
    if sentence:
        table[:, sentence - 1 :: sentence] += "."
    return [" ".join(row) + ("" if sentence else ".") for row in table]
