"""RLMRec pickle loading: round trip, mappers, the safe unpickler, and every malformed-file error."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import real_data_dir

from proex.data.interactions import DataError
from proex.data.registry import check_expected, load_dataset
from proex.data.rlmrec import load_rlmrec
from proex.data.safe_pickle import safe_load

# 4 users x 5 items, disjoint splits, every user with a training interaction
TRAIN = [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (3, 0)]
VAL = [(0, 2), (1, 3)]
TEST = [(2, 4), (3, 1)]


def coo(pairs, shape=(4, 5), values=None) -> sp.coo_matrix:
    rows, cols = zip(*pairs) if pairs else ((), ())
    data = np.ones(len(pairs)) if values is None else np.asarray(values, dtype=np.float64)
    return sp.coo_matrix((data, (rows, cols)), shape=shape)


def write_splits(d: Path, train=None, val=None, test=None, protocol: int = 4) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for fname, m in (("trn_mat.pkl", train), ("val_mat.pkl", val), ("tst_mat.pkl", test)):
        with open(d / fname, "wb") as f:
            pickle.dump(m, f, protocol=protocol)
    return d


def write_tiny(d: Path, **over) -> Path:
    mats = {"train": coo(TRAIN), "val": coo(VAL), "test": coo(TEST)} | over
    return write_splits(d, **mats)


def pairs_of(m: sp.csr_matrix) -> set[tuple[int, int]]:
    c = m.tocoo()
    return set(zip(c.row.tolist(), c.col.tolist()))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_round_trip(tmp_path, protocol):
    d = write_tiny(tmp_path / "mini")
    write_splits(d, coo(TRAIN, values=[1, 2, 1, 5, 1, 1]), coo(VAL).tocsr(), sp.csr_array(coo(TEST)), protocol=protocol)
    data = load_rlmrec(d)
    assert data.name == "mini" and data.source == str(d)
    assert (data.n_users, data.n_items) == (4, 5)
    for m, pairs in ((data.train, TRAIN), (data.val, VAL), (data.test, TEST)):
        assert isinstance(m, sp.csr_matrix) and m.dtype == np.float32
        assert np.all(m.data == 1.0)  # 2 and 5 were binarised
        assert pairs_of(m) == set(pairs)
    assert data.user_ids is None and data.item_ids is None


def test_mapper_json_lines_and_dict(tmp_path):
    d = write_tiny(tmp_path / "data" / "mini")
    (tmp_path / "data" / "mapper").mkdir()
    lines = [json.dumps({"uid": u, "reviewerID": f"A{u}X"}) for u in (2, 0, 3, 1)]  # any order
    (tmp_path / "data" / "mapper" / "mini_user.json").write_text("\n".join(lines) + "\n")
    (d / "item_mapper.json").write_text(json.dumps({f"B{i}": i for i in range(5)}))  # {original: dense}
    data = load_rlmrec(d, "mini")
    assert data.user_ids.tolist() == ["A0X", "A1X", "A2X", "A3X"]
    assert data.item_ids.tolist() == ["B0", "B1", "B2", "B3", "B4"]


def test_mapper_with_wrong_count_is_rejected(tmp_path):
    d = write_tiny(tmp_path / "mini")
    (d / "mapper").mkdir()
    (d / "mapper" / "mini_item.json").write_text("\n".join(json.dumps({"iid": i, "asin": str(i)}) for i in range(3)))
    with pytest.raises(DataError, match=r"mini_item\.json.*3 dense item id.*5 items"):
        load_rlmrec(d, "mini")


class _Payload:
    """Unpickling this calls `func(*args)`; used to prove that safe_load never calls a refused global."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("kind", ["os.system", "builtins.open", "nested"])
def test_malicious_pickle_is_refused_and_not_executed(tmp_path, kind):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        payload = _Payload(os.system, f"touch {marker}")
    elif kind == "builtins.open":
        payload = _Payload(open, str(marker), "w")
    else:  # a refused global hidden next to a valid matrix
        payload = {"mat": coo(TRAIN), "x": [_Payload(open, str(marker), "w")]}
    blob = pickle.dumps(payload)
    path = tmp_path / "trn_mat.pkl"
    path.write_bytes(blob)
    with pytest.raises(DataError) as err:
        safe_load(path)
    msg = str(err.value)
    assert str(path) in msg and "not a plain numpy/scipy pickle" in msg and "re-export" in msg.lower()
    assert ("system" in msg) if kind == "os.system" else ("builtins.open" in msg or "io.open" in msg)
    assert not marker.exists()
    if kind == "builtins.open":  # control: the payload is real, a plain pickle.loads would create the file
        pickle.loads(blob).close()
        assert marker.exists()


def test_refused_class_in_split_file_names_file(tmp_path):
    d = write_tiny(tmp_path / "mini")
    (d / "val_mat.pkl").write_bytes(pickle.dumps(_Payload(os.getcwd)))
    with pytest.raises(DataError, match=r"val_mat\.pkl: refused to unpickle '(posix|os|nt)\.getcwd'"):
        load_rlmrec(d)


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_numpy_arrays_and_profiles_load(tmp_path, protocol):
    emb = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    objs = {
        "emb": emb,
        "f64": np.arange(3.0),
        "prf": {0: {"profile": "likes mysteries", "reasoning": "..."}},
        "scalar": np.float64(2.5),
        "dtype": np.dtype("f4"),
        "dtype_class": type(np.dtype("f4")),
    }
    path = tmp_path / "usr_emb_np.pkl"
    path.write_bytes(pickle.dumps(objs, protocol=protocol))
    got = safe_load(path)
    np.testing.assert_array_equal(got["emb"], emb)
    assert got["emb"].dtype == np.float32 and got["prf"][0]["profile"] == "likes mysteries"
    assert got["scalar"] == 2.5 and got["dtype"] == np.dtype("f4") and got["dtype_class"] is type(np.dtype("f4"))


@pytest.mark.parametrize("cut", [0, 10, "half"])
def test_truncated_pickle(tmp_path, cut):
    blob = pickle.dumps(coo(TRAIN))
    path = tmp_path / "trn_mat.pkl"
    path.write_bytes(blob[: len(blob) // 2 if cut == "half" else cut])
    with pytest.raises(DataError, match=r"trn_mat\.pkl: truncated or corrupt.*re-download"):
        safe_load(path)


def test_missing_split_file(tmp_path):
    d = write_tiny(tmp_path / "mini")
    (d / "val_mat.pkl").unlink()
    with pytest.raises(DataError, match=r"missing val_mat\.pkl.*proex data fetch"):
        load_rlmrec(d)
    with pytest.raises(DataError, match="not found"):
        load_rlmrec(tmp_path / "nowhere")


def test_not_a_sparse_matrix(tmp_path):
    d = write_tiny(tmp_path / "mini", train=coo(TRAIN).toarray())
    with pytest.raises(DataError, match=r"trn_mat\.pkl: holds a ndarray, expected a scipy\.sparse matrix"):
        load_rlmrec(d)


def test_mismatched_shapes(tmp_path):
    d = write_tiny(tmp_path / "mini", test=coo(TEST, shape=(4, 6)))
    with pytest.raises(DataError, match=r"tst_mat\.pkl: shape \(4, 6\) but trn_mat\.pkl has \(4, 5\)"):
        load_rlmrec(d)


def test_overlapping_splits(tmp_path):
    d = write_tiny(tmp_path / "mini", test=coo(TEST + [(0, 1)]))
    with pytest.raises(DataError, match=r"trn_mat\.pkl and tst_mat\.pkl share 1 interaction"):
        load_rlmrec(d)


def test_user_without_training(tmp_path):
    train = [p for p in TRAIN if p[0] != 1]
    d = write_tiny(tmp_path / "mini", train=coo(train))
    with pytest.raises(DataError, match=r"trn_mat\.pkl: 1 user\(s\) without any training interaction.*\[1\]"):
        load_rlmrec(d)


@pytest.mark.parametrize("bad, pattern", [(np.nan, "NaN/inf"), (-1.0, "negative value")])
def test_bad_values(tmp_path, bad, pattern):
    values = [1, 1, bad, 1, 1, 1]
    d = write_tiny(tmp_path / "mini", train=coo(TRAIN, values=values))
    with pytest.raises(DataError, match=rf"trn_mat\.pkl: 1 {pattern}"):
        load_rlmrec(d)


@pytest.mark.parametrize("fmt", ["coo", "csr"])
def test_index_out_of_range(tmp_path, fmt):
    m = coo(TRAIN)
    if fmt == "coo":
        m.row[0] = 7  # beyond 4 users; scipy checks only at construction, a pickle skips that
    else:
        m = m.tocsr()
        m.indices[0] = 9  # beyond 5 items
    d = write_tiny(tmp_path / "mini", train=m)
    with pytest.raises(DataError, match=r"trn_mat\.pkl: .*(outside the shape|malformed csr)"):
        load_rlmrec(d)


def test_real_amazon_loads_with_expected_counts():
    data = load_dataset(real_data_dir("amazon"))  # skips naming the data variable; CI fails on that skip
    assert check_expected(data) == []
    s = data.summary()
    assert (s["users"], s["items"], s["train"], s["val"], s["test"]) == (11000, 9332, 120464, 40290, 40106)
    assert (s["val_users"], s["test_users"]) == (
        9857,
        9860,
    )  # the users holding validation / test items in the RLMRec pickles
    assert data.train.dtype == np.float32 and np.all(data.train.data == 1.0)


# LightGCN (reference configuration, seed 2023, CPU) after one epoch on the RLMRec amazon split, computed once by
# this test's cell and recorded here. A wrong split (validation and test swapped differ by 4 %), a wrong cut-off or
# metric, or a changed sampler or model would move them by far more than the tolerance (float rounding only).
AMAZON_LIGHTGCN_ONE_EPOCH = {
    "val": {"recall@20": 0.05675482004880905, "ndcg@20": 0.03327362611889839},
    "test": {
        "recall@10": 0.03562416508793831,
        "ndcg@10": 0.02696949429810047,
        "recall@20": 0.05916657671332359,
        "ndcg@20": 0.034423138946294785,
    },
}


@pytest.mark.slow
def test_lightgcn_one_epoch_on_real_amazon_matches_known_numbers():
    from proex.experiment import CellConfig, run_cell

    inter = load_dataset(real_data_dir("amazon"))
    cell = CellConfig(dataset="amazon", model="lightgcn", plugin="base", train={"epochs": 1, "device": "cpu"})
    result, _ = run_cell(cell, inter)
    assert result.config["train"]["seed"] == 2023 and [r["epoch"] for r in result.history] == [0]
    for split, want in AMAZON_LIGHTGCN_ONE_EPOCH.items():
        for metric, value in want.items():
            got = getattr(result, split)
            assert got[metric] == pytest.approx(value, rel=0.01), (split, metric, got)
