"""No validation or test pair reaches a profile's inputs: every title, history and user snippet in the prompts
the LLM job actually sends (captured at the HTTP server) and in the offline profiles comes from TRAINING pairs.

The dataset names every item and user in its text ("item-17", "user-4"), so each prompt can be read back as
the set of entities it mentions; items that occur only in validation/test pairs carry HELDOUT in their titles.
"""

import json
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from fake_openai_server import FakeConfig, FakeOpenAI

from proex.data.interactions import Interactions, to_binary_csr
from proex.profiles.offline import offline_records
from proex.profiles.pipeline import ProfileJobConfig, generate
from proex.profiles.prompts import STEPS, system_prompt

KEY = "sk-proex-leak-KEY-0123456789abcdef"
ENV = "PROEX_TEST_KEY"
N_USERS, N_REGULAR, N_HELD = 24, 30, 10  # items >= N_REGULAR appear only in validation and test pairs


def items_in(text: str) -> set[int]:
    return {int(i) for i in re.findall(r"item-(\d+)", text)}


def users_in(text: str) -> set[int]:
    return {int(u) for u in re.findall(r"user-(\d+)", text)}


@pytest.fixture(scope="module")
def inter() -> Interactions:
    """Each user: 5 training items, and 2 validation + 2 test items, one regular and one HELDOUT each."""
    rng = np.random.default_rng(3)
    rows = {"train": [], "val": [], "test": []}
    for u in range(N_USERS):
        regular = rng.permutation(N_REGULAR)[:7]
        held = N_REGULAR + rng.permutation(N_HELD)[:2]
        rows["train"] += [(u, i) for i in regular[:5]]
        rows["val"] += [(u, regular[5]), (u, held[0])]
        rows["test"] += [(u, regular[6]), (u, held[1])]
    n_items = N_REGULAR + N_HELD

    def mat(pairs):
        u, i = np.array(pairs).T
        return to_binary_csr(sp.csr_matrix((np.ones(len(u)), (u, i)), shape=(N_USERS, n_items)))

    titles = [f"{'HELDOUT' if i >= N_REGULAR else 'title'} item-{i}" for i in range(n_items)]
    about = [f"about item-{i} and its story" for i in range(n_items)]
    item_text = pd.DataFrame({"title": titles, "description": about})
    user_text = pd.DataFrame({"bio": [f"user-{u} reads widely" for u in range(N_USERS)]})
    return Interactions(
        "leak",
        mat(rows["train"]),
        mat(rows["val"]),
        mat(rows["test"]),
        user_text=user_text,
        item_text=item_text,
        source="tests/test_profiles_leakage.py",
    ).validate()


def train_items(inter, u: int) -> set[int]:
    row = inter.train.tocsr()
    return set(row.indices[row.indptr[u] : row.indptr[u + 1]].tolist())


def train_users(inter, i: int) -> set[int]:
    col = inter.train.tocsc()
    return set(col.indices[col.indptr[i] : col.indptr[i + 1]].tolist())


def test_the_dataset_holds_held_out_pairs_the_checks_would_see(inter):
    held = inter.val + inter.test
    assert held.nnz == 4 * N_USERS and inter.train.multiply(held).nnz == 0
    assert all(len(set(held[u].indices) - train_items(inter, u)) == 4 for u in range(N_USERS))


def test_llm_prompts_carry_training_pairs_only(inter, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, KEY)
    with FakeOpenAI(FakeConfig(api_key=KEY, keep_messages=True)) as srv:
        cfg = ProfileJobConfig(
            base_url=srv.base_url,
            model="fake-llm",
            api_key_env=ENV,
            out_dir=str(tmp_path),
            rpm=60000,
            tpm=1e8,
            concurrency=6,
            backoff_s=0.02,
            progress=False,
            max_input_chars=10**5,
            max_history=10**3,
            max_snippets=10**3,
        )
        summary = generate(cfg, inter)
        log = [e for e in srv.log() if e.get("messages")]
    assert summary["sides"]["user"]["profiled"] == N_USERS and summary["sides"]["item"]["profiled"] == 40
    kind = {system_prompt(step, side, cfg.domain, cfg.k): (step, side) for step in STEPS for side in ("user", "item")}
    seen = {"user": set(), "item": set()}
    for e in log:
        step, side = kind[e["messages"][0]["content"]]
        text = e["messages"][1]["content"]
        if side == "user":
            assert "heldout" not in text.lower(), text  # no step of a user's chain ever sees a held-out title
        if step not in ("F1", "F2"):
            continue  # F3 and F4 see only earlier answers, whose words the fake LLM takes from these prompts
        body = json.loads(text)
        source = body if step == "F1" else body["source"]
        me = source["id"]
        seen[side].add(me)
        if side == "user":
            assert items_in(json.dumps(source["interacted_items"])) == train_items(inter, me), source
        else:
            assert users_in(json.dumps(source["user_snippets"])) == train_users(inter, me), source
            assert items_in(text) <= {me}, source  # an item's prompt names no other item
    assert seen == {"user": set(range(N_USERS)), "item": set(range(40))}


@pytest.mark.parametrize("side", ["user", "item"])
def test_offline_profiles_carry_training_pairs_only(inter, side):
    recs = offline_records(inter, side, k=6, domain="generic")
    assert len(recs) == (N_USERS if side == "user" else 40)
    mentioned = set()
    for rec in recs:
        me = rec["id"]
        text = json.dumps(rec["profiles"] if "profiles" in rec else rec, ensure_ascii=False)
        if side == "user":
            got = items_in(text)
            assert got and got <= train_items(inter, me), (me, text)
            assert "HELDOUT" not in text
        else:
            assert users_in(text) <= train_users(inter, me), (me, text)
            # other items come in only as co-liked titles: items some training user of `me` also trained on
            co_liked = set().union(*(train_items(inter, u) for u in train_users(inter, me)))
            assert items_in(text) <= co_liked | {me}, (me, text)
            mentioned |= users_in(text)
    if side == "item":
        assert mentioned  # the item views do quote their training users
