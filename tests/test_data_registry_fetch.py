"""Dataset registry (name/path resolution, errors, expected counts) and `fetch_rlmrec` against a local HTTP server."""

from __future__ import annotations

import http.server
import json
import pickle
import socket
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from proex.config import ConfigError
from proex.data import registry
from proex.data.fetch import fetch_rlmrec
from proex.data.interactions import DataError
from proex.data.registry import DATA_ENV, Expected, available, check_expected, dataset_path, load_dataset

SPLITS = {
    "trn_mat.pkl": [(0, 0), (0, 1), (1, 2), (2, 3), (3, 4), (3, 0)],
    "val_mat.pkl": [(0, 2), (1, 3)],
    "tst_mat.pkl": [(2, 4), (3, 1)],
}
TINY = Expected(users=4, items=5, train=6, val=2, test=2)


def split_pickles() -> dict[str, bytes]:
    out = {}
    for fname, pairs in SPLITS.items():
        rows, cols = zip(*pairs)
        out[fname] = pickle.dumps(sp.coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(4, 5)))
    return out


def write_dataset(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for fname, blob in split_pickles().items():
        (d / fname).write_bytes(blob)
    return d


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            zf.writestr(zipfile.ZipInfo(name), blob)
    return path


def rlmrec_members(name: str = "tiny", prefix: str = "data/") -> dict[str, bytes]:
    members = {f"{prefix}{name}/{f}": b for f, b in split_pickles().items()}
    members[f"{prefix}{name}/usr_emb_np.pkl"] = pickle.dumps(np.ones((4, 3), np.float32))
    members[f"{prefix}{name}/notes.txt"] = b"not copied"
    members[f"{prefix}mapper/{name}_user.json"] = "\n".join(
        json.dumps({"uid": u, "user_id": f"U{u}"}) for u in range(4)
    ).encode()
    return members


@pytest.fixture
def server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving tmp_path/www; `hits` records the requested paths."""
    root = tmp_path / "www"
    root.mkdir()
    hits: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            hits.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_port}", hits=hits)
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def tiny_known(monkeypatch):
    monkeypatch.setitem(registry.KNOWN, "tiny", TINY)


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert registry.default_data_dir() == tmp_path
    monkeypatch.delenv(DATA_ENV)
    repo = Path(registry.__file__).resolve().parents[2]
    assert registry.default_data_dir() == repo.parent / "shared" / "data"


def test_synthetic_names():
    data = load_dataset("synthetic:n_users=50,n_items=40,seed=3", mean_interactions=5)
    assert (data.n_users, data.n_items) == (50, 40) and data.extras["synthetic_config"]["seed"] == 3
    assert data.extras["synthetic_config"]["mean_interactions"] == 5.0
    assert load_dataset("synthetic").n_users == 600
    with pytest.raises(ConfigError, match="n_user.*valid keys"):
        load_dataset("synthetic:n_user=5")
    with pytest.raises(DataError, match="apply only to 'synthetic'"):
        load_dataset("amazon", seed=1)


def test_unknown_and_missing_names(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    with pytest.raises(DataError) as err:
        load_dataset("movielens-xyz")
    msg = str(err.value)
    for part in ("movielens-xyz", "amazon, yelp, steam", str(tmp_path), DATA_ENV, "proex data fetch"):
        assert part in msg
    with pytest.raises(DataError, match=r"'steam' not found: .*steam has no trn_mat\.pkl.*proex data fetch"):
        load_dataset("steam")
    with pytest.raises(DataError, match="directory without trn_mat.pkl"):
        load_dataset(str(tmp_path))


def test_resolution_by_path_and_data_dir(tmp_path):
    d = write_dataset(tmp_path / "data" / "mine")
    assert load_dataset(str(d)).train.nnz == 6
    assert load_dataset("mine", data_dir=tmp_path / "data").name == "mine"
    assert dataset_path("amazon", tmp_path / "data") == tmp_path / "data" / "amazon"
    assert dataset_path(str(d)) == d
    csv = tmp_path / "events.csv"
    pd.DataFrame({"user": ["a"] * 5 + ["b"] * 5, "item": list(range(5)) * 2}).to_csv(csv, index=False)
    data = load_dataset(str(csv))
    assert (data.n_users, data.n_items) == (2, 5) and data.extras["format"] == "table"


def test_available_and_check_expected(tmp_path, tiny_known):
    write_dataset(tmp_path / "amazon")
    write_dataset(tmp_path / "tiny")
    assert available(tmp_path) == ["amazon", "tiny"]
    amazon = load_dataset("amazon", data_dir=tmp_path)
    problems = check_expected(amazon)
    assert "amazon: users = 4, expected 11000" in problems and len(problems) == 5
    assert check_expected(load_dataset("tiny", data_dir=tmp_path)) == []
    assert check_expected(load_dataset(str(write_dataset(tmp_path / "other")))) == []  # unknown: nothing to check


def test_fetch_installs_verifies_and_is_idempotent(server, tmp_path, tiny_known):
    make_zip(server.root / "data.zip", rlmrec_members())
    dest = tmp_path / "out"
    url = f"{server.url}/data.zip"
    assert fetch_rlmrec(dest, url=url, datasets=["tiny"]) == ["tiny"]
    installed = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert installed == [
        "tiny/mapper/tiny_user.json",
        "tiny/trn_mat.pkl",
        "tiny/tst_mat.pkl",
        "tiny/usr_emb_np.pkl",
        "tiny/val_mat.pkl",
    ]
    data = load_dataset("tiny", data_dir=dest)
    assert data.user_ids.tolist() == ["U0", "U1", "U2", "U3"]
    assert len(server.hits) == 1
    assert fetch_rlmrec(dest, url=url, datasets=["tiny"]) == ["tiny"]
    assert len(server.hits) == 1  # already installed and valid: no download


def test_fetch_lenient_about_leading_folder(server, tmp_path, tiny_known):
    make_zip(server.root / "d.zip", rlmrec_members(prefix="RLMRec-main/data/"))
    fetch_rlmrec(tmp_path / "out", url=f"{server.url}/d.zip", datasets=("tiny",))
    assert (tmp_path / "out" / "tiny" / "trn_mat.pkl").is_file()


def test_fetch_verify_mismatch(server, tmp_path, monkeypatch):
    monkeypatch.setitem(registry.KNOWN, "tiny", Expected(4, 5, 999, 2, 2))
    make_zip(server.root / "data.zip", rlmrec_members())
    with pytest.raises(DataError, match="tiny: train = 6, expected 999.*verify=False"):
        fetch_rlmrec(tmp_path / "out", url=f"{server.url}/data.zip", datasets=["tiny"])
    assert fetch_rlmrec(tmp_path / "out", url=f"{server.url}/data.zip", datasets=["tiny"], verify=False) == ["tiny"]


def test_fetch_corrupt_zip(server, tmp_path):
    blob = make_zip(tmp_path / "good.zip", rlmrec_members()).read_bytes()
    (server.root / "data.zip").write_bytes(blob[: len(blob) // 3])
    with pytest.raises(DataError, match="not a valid zip archive.*truncated or corrupt"):
        fetch_rlmrec(tmp_path / "out", url=f"{server.url}/data.zip", datasets=["tiny"])
    assert not any((tmp_path / "out").glob("*.part"))  # the temporary download is removed


def test_fetch_network_errors(server, tmp_path):
    url = f"{server.url}/missing.zip"
    with pytest.raises(DataError, match=r"could not download .*missing\.zip.*by hand"):
        fetch_rlmrec(tmp_path / "out", url=url, datasets=["tiny"])
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match=rf"could not download http://127\.0\.0\.1:{port}/data\.zip"):
        fetch_rlmrec(tmp_path / "out", url=f"http://127.0.0.1:{port}/data.zip", datasets=["tiny"], timeout=5)


def test_fetch_dataset_missing_from_archive(server, tmp_path, tiny_known):
    make_zip(server.root / "data.zip", rlmrec_members())
    with pytest.raises(DataError, match=r"no folder with trn_mat\.pkl for \['steam'\].*it has: \['tiny'\]"):
        fetch_rlmrec(tmp_path / "out", url=f"{server.url}/data.zip", datasets=["tiny", "steam"])
    assert (tmp_path / "out" / "tiny" / "trn_mat.pkl").is_file()  # what the archive has is installed


def test_fetch_ignores_zip_slip_entries(server, tmp_path, tiny_known):
    evil = {
        "../evil": b"x",
        "../../evil2.pkl": b"x",
        "/abs/evil3/trn_mat.pkl": b"x",
        "data/../../evil4/trn_mat.pkl": b"x",
        "../tiny/trn_mat.pkl": b"not a pickle",
    }
    make_zip(server.root / "data.zip", evil | rlmrec_members())
    dest = tmp_path / "a" / "b" / "out"
    fetch_rlmrec(dest, url=f"{server.url}/data.zip", datasets=["tiny"])
    assert not [p for p in tmp_path.rglob("evil*")]
    assert load_dataset("tiny", data_dir=dest).train.nnz == 6  # the '../tiny' decoy did not overwrite it
    with pytest.raises(DataError, match=r"\['evil4'\]"):
        fetch_rlmrec(dest, url=f"{server.url}/data.zip", datasets=["evil4"])
    assert not [p for p in tmp_path.rglob("evil*")]
