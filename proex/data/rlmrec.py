"""Loader for RLMRec-format datasets: `trn_mat.pkl`, `val_mat.pkl`, `tst_mat.pkl`
(HKUDS/RLMRec encoder/data_utils/data_handler_general_cf.py).

Each file is a pickled scipy.sparse matrix [n_users, n_items] (float64 1.0 values in the originals). As in
the reference loader, values are binarised (`x != 0`) to float32 CSR. Before that, each file is checked and
any problem raises a `DataError` naming the file and the fix: not a 2-D sparse matrix, NaN/inf or negative
values, indices outside the shape, splits of different shapes, overlapping splits, users without training.

Optional id mappers (RLMRec data format, last bullet) fill `user_ids` / `item_ids`. Searched, first hit wins:
`<dir>/mapper/<name>_{user,item}.json`, `<dir>/../mapper/<name>_{user,item}.json` (the RLMRec `data/mapper`
layout), `<dir>/{user,item}_mapper.json`. Accepted shapes:
* JSON lines, one object per line with a dense-id field and an original-id field, e.g.
  `{"uid": 0, "reviewerID": "A2PD..."}`, `{"iid": 0, "product_id": "328100"}`. The dense field is
  `uid`/`iid`/`id`/`idx`/`index`/`user_idx`/`item_idx`, or else the only field holding integers;
  the original field is the other one (a JSON list of such objects works too).
* One JSON object mapping either `{"<dense id>": original}` or `{original: <dense id>}`, or a JSON list
  of originals in dense order.
The dense ids must be exactly 0..n-1 of the matrix side they map.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .interactions import DataError, Interactions, to_binary_csr
from .safe_pickle import safe_load

SPLIT_FILES = {"train": "trn_mat.pkl", "val": "val_mat.pkl", "test": "tst_mat.pkl"}
_DENSE_KEYS = ("uid", "iid", "id", "idx", "index", "user_idx", "item_idx", "user_index", "item_index")
_FETCH_HINT = (
    "run `proex data fetch` (or download the RLMRec archive and unzip it there), "
    "or point PROEX_DATA_DIR at the folder holding the dataset"
)


def load_rlmrec(directory: str | Path, name: str | None = None) -> Interactions:
    """Load the RLMRec splits in `directory` into a validated `Interactions` (float32 binary CSR splits).

    name: dataset name (default: the directory's name); also selects the mapper files `<name>_user.json`.
    """
    directory = Path(directory)
    name = name or directory.resolve().name
    if not directory.is_dir():
        raise DataError(f"{directory}: dataset directory not found; {_FETCH_HINT}.")
    missing = [f for f in SPLIT_FILES.values() if not (directory / f).is_file()]
    if missing:
        raise DataError(
            f"{directory}: missing {', '.join(missing)} (an RLMRec dataset needs "
            f"{', '.join(SPLIT_FILES.values())}); {_FETCH_HINT}."
        )
    mats = {split: _read_matrix(directory / fname) for split, fname in SPLIT_FILES.items()}
    _check_consistent(directory, mats)
    user_ids = _read_mapper(directory, name, "user", mats["train"].shape[0])
    item_ids = _read_mapper(directory, name, "item", mats["train"].shape[1])
    data = Interactions(
        name=name,
        train=mats["train"],
        val=mats["val"],
        test=mats["test"],
        user_ids=user_ids,
        item_ids=item_ids,
        source=str(directory),
        extras={"format": "rlmrec"},
    )
    return data.validate()


def _read_matrix(path: Path) -> sp.csr_matrix:
    """One split file -> float32 binary CSR, after checking type, dims, values and index range."""
    obj = safe_load(path)
    if not sp.issparse(obj):
        raise DataError(
            f"{path}: holds a {type(obj).__name__}, expected a scipy.sparse matrix [n_users, n_items]. "
            "Re-export it with `pickle.dump(scipy.sparse.coo_matrix(m), f)`."
        )
    if len(obj.shape) != 2:
        raise DataError(
            f"{path}: sparse matrix has {len(obj.shape)} dimension(s) {obj.shape}; expected 2 "
            "([n_users, n_items]). Re-export the split as a 2-D coo_matrix."
        )
    n_rows, n_cols = obj.shape
    if obj.format == "coo":
        rows, cols = np.asarray(obj.row), np.asarray(obj.col)
        if len(rows) != len(cols) or len(rows) != len(obj.data):
            raise DataError(f"{path}: row/col/data arrays differ in length; the file is corrupt. Re-download it.")
        bad = (rows < 0) | (rows >= n_rows) | (cols < 0) | (cols >= n_cols)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"{path}: {int(bad.sum())} entr(ies) outside the shape {obj.shape}, first at "
                f"(user {int(rows[k])}, item {int(cols[k])}). The shape stored in the file is too small "
                "or the indices are corrupt; re-export with shape=(n_users, n_items)."
            )
    elif obj.format in ("csr", "csc"):
        try:
            obj.check_format(full_check=True)
        except ValueError as e:
            raise DataError(
                f"{path}: malformed {obj.format} matrix ({e}); indices outside the shape "
                f"{obj.shape} or a broken index pointer. Re-export it."
            ) from None
    else:  # pragma: no cover - safe_load admits coo/csr/csc only
        raise DataError(f"{path}: unsupported sparse format {obj.format!r}; re-export as coo_matrix.")
    values = np.asarray(obj.data)
    if values.dtype.kind not in "biuf":
        raise DataError(f"{path}: values have dtype {values.dtype}; expected numbers. Re-export with float values.")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise DataError(
            f"{path}: {int((~np.isfinite(values)).sum())} NaN/inf value(s); interactions must be "
            "1.0 (or positive). Drop or fix those entries and re-export."
        )
    if (values < 0).any():
        raise DataError(
            f"{path}: {int((values < 0).sum())} negative value(s) (min {values.min()}); interactions "
            "must be 1.0 (or positive, binarised as x != 0). Drop the negative entries and re-export."
        )
    return to_binary_csr(obj)


def _check_consistent(directory: Path, mats: dict[str, sp.csr_matrix]) -> None:
    """Same shape, pairwise-disjoint splits, and a training interaction for every user (spec 1.1)."""
    shape = mats["train"].shape
    for split in ("val", "test"):
        if mats[split].shape != shape:
            raise DataError(
                f"{directory / SPLIT_FILES[split]}: shape {mats[split].shape} but "
                f"{SPLIT_FILES['train']} has {shape}; all splits must share one user/item id space. "
                "Re-export the three files from the same id mapping."
            )
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = mats[a].multiply(mats[b]).nnz
        if shared:
            raise DataError(
                f"{directory}: {SPLIT_FILES[a]} and {SPLIT_FILES[b]} share {shared} interaction(s); "
                f"the splits must be disjoint. Remove them from {SPLIT_FILES[b]}."
            )
    empty = np.flatnonzero(np.diff(mats["train"].indptr) == 0)
    if len(empty):
        raise DataError(
            f"{directory / SPLIT_FILES['train']}: {len(empty)} user(s) without any training "
            f"interaction (first: users {empty[:5].tolist()}). Every user needs one; drop those users "
            "from all splits or move one of their interactions into the training split."
        )


def _mapper_path(directory: Path, name: str, kind: str) -> Path | None:
    for cand in (
        directory / "mapper" / f"{name}_{kind}.json",
        directory.parent / "mapper" / f"{name}_{kind}.json",
        directory / f"{kind}_mapper.json",
    ):
        if cand.is_file():
            return cand
    return None


def _read_mapper(directory: Path, name: str, kind: str, n: int) -> np.ndarray | None:
    """Original ids [n] indexed by dense id from the mapper JSON, or None when there is no mapper."""
    path = _mapper_path(directory, name, kind)
    if path is None:
        return None
    text = path.read_text(encoding="utf-8")
    try:
        try:
            records = [json.loads(text)]
        except json.JSONDecodeError:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        pairs = _pairs(records)
    except (json.JSONDecodeError, ValueError) as e:
        raise DataError(
            f"{path}: cannot read the {kind} id mapper ({e}). Expected JSON lines like "
            '{"uid": 0, "reviewerID": "..."} or one JSON object {dense id: original id}; '
            "fix or delete the file (it is optional)."
        ) from None
    dense = np.array([d for d, _ in pairs], dtype=np.int64)
    if len(dense) != n or not np.array_equal(np.sort(dense), np.arange(n)):
        span = f"{dense.min()}..{dense.max()}" if len(dense) else "none"
        raise DataError(
            f"{path}: maps {len(dense)} dense {kind} id(s) (range {span}, {len(np.unique(dense))} "
            f"distinct) but the matrices have {n} {kind}s; every id 0..{n - 1} must "
            "appear once. Use the mapper that belongs to this dataset, or delete it (it is optional)."
        )
    out = np.empty(n, dtype=object)
    out[dense] = [o for _, o in pairs]
    kinds = {type(o) for o in out}
    if kinds == {str}:
        return out.astype(str)
    return out.astype(np.int64) if kinds == {int} else out


def _pairs(records: list) -> list[tuple[int, object]]:
    """(dense id, original id) pairs from parsed mapper JSON (see module doc for the shapes)."""
    if len(records) == 1 and isinstance(records[0], list):
        if not all(isinstance(r, dict) for r in records[0]):
            return list(enumerate(records[0]))  # a JSON list of original ids in dense order
        records = records[0]  # a JSON list of records
    if len(records) == 1 and isinstance(records[0], dict) and not _is_record(records[0]):
        return _pairs_from_mapping(records[0])
    if not all(isinstance(r, dict) and len(r) >= 2 for r in records):
        raise ValueError("each line must be an object with a dense-id field and an original-id field")
    fields = list(records[0])
    dense_key = next((k for k in _DENSE_KEYS if k in fields), None)
    if dense_key is None:
        ints = [k for k in fields if _is_int(records[0][k])]
        if len(ints) != 1:
            raise ValueError(f"cannot tell the dense-id field among {fields}; name it 'uid' or 'iid'")
        dense_key = ints[0]
    others = [k for k in fields if k != dense_key]
    if len(others) != 1:
        raise ValueError(f"expected one original-id field besides {dense_key!r}, found {others}")
    try:
        return [(int(r[dense_key]), r[others[0]]) for r in records]
    except (KeyError, TypeError) as e:
        raise ValueError(f"a line lacks field {e} or has a non-integer {dense_key!r}") from None


def _pairs_from_mapping(mapping: dict) -> list[tuple[int, object]]:
    """{"<dense>": original} or {original: dense}; when both sides could be dense, keys 0..n-1 win."""
    keys_dense = all(k.isdigit() for k in mapping) and sorted(int(k) for k in mapping) == list(range(len(mapping)))
    if keys_dense:
        return [(int(k), v) for k, v in mapping.items()]
    if all(_is_int(v) for v in mapping.values()):
        return [(v, k) for k, v in mapping.items()]
    raise ValueError("a JSON object mapper needs the dense ids 0..n-1 as its keys or integer dense ids as its values")


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_record(obj: dict) -> bool:
    """True for a single JSON-lines record like {"uid": 0, "reviewerID": "..."} (a one-line mapper)."""
    return any(k in obj for k in _DENSE_KEYS)
