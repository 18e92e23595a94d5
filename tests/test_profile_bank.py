"""ProfileBank on disk and the importer for the RLMRec/ProEx pickle layout."""

import pickle

import numpy as np
import pytest

from proex.cli import main
from proex.data.interactions import DataError
from proex.data.synthetic import SyntheticConfig, make_synthetic
from proex.profiles.bank import ProfileBank, load_bank
from proex.profiles.importers import import_rlmrec
from proex.profiles.load import load_profiles


def _write_rlmrec(d, n_users=30, n_items=20, dim=12, k=4, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for p in range(k):
        suffix = "" if p == 0 else f"_{p}"
        for side, n in (("usr", n_users), ("itm", n_items)):
            arr = rng.standard_normal((n, dim))
            arrays[(side, p)] = arr
            with open(d / f"{side}_emb_np{suffix}.pkl", "wb") as f:
                pickle.dump(arr, f)
    return arrays


def test_import_rlmrec_layout_and_round_trip(tmp_path):
    arrays = _write_rlmrec(tmp_path)
    bank = import_rlmrec(tmp_path, n_users=30, n_items=20)
    assert bank.user.shape == (4, 30, 12) and bank.item.shape == (4, 20, 12)
    np.testing.assert_allclose(bank.user[2], arrays[("usr", 2)], rtol=1e-6)
    np.testing.assert_allclose(bank.item[0], arrays[("itm", 0)], rtol=1e-6)
    saved = bank.save(str(tmp_path / "bank"))
    assert isinstance(saved.user, np.memmap)
    again = load_bank(str(tmp_path / "bank"), verify=True)
    np.testing.assert_array_equal(np.asarray(again.user), np.asarray(bank.user))
    assert again.manifest["profile_names"][0] == "original" and again.bank_id == saved.bank_id


def test_import_checks_rows_dimension_and_values(tmp_path):
    _write_rlmrec(tmp_path)
    with pytest.raises(DataError, match="31 users"):
        import_rlmrec(tmp_path, n_users=31, n_items=20)
    bad = np.full((30, 12), np.nan)
    with open(tmp_path / "usr_emb_np_2.pkl", "wb") as f:
        pickle.dump(bad, f)
    with pytest.raises(DataError, match="NaN"):
        import_rlmrec(tmp_path)
    with open(tmp_path / "usr_emb_np_2.pkl", "wb") as f:
        pickle.dump(np.zeros((30, 7)), f)
    with pytest.raises(DataError, match="dimension"):
        import_rlmrec(tmp_path)
    (tmp_path / "itm_emb_np_3.pkl").unlink()
    with pytest.raises(DataError, match="itm_emb_np_3.pkl is missing"):
        import_rlmrec(tmp_path)


def test_import_refuses_a_pickle_that_runs_code(tmp_path):
    _write_rlmrec(tmp_path)

    class Evil:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    with open(tmp_path / "usr_emb_np_1.pkl", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(DataError):
        import_rlmrec(tmp_path)
    assert not (tmp_path / "pwned").exists()


def test_corrupt_bank_detected(tmp_path):
    bank = ProfileBank(np.zeros((2, 5, 3), np.float32), np.zeros((2, 4, 3), np.float32), {}).save(str(tmp_path))
    with open(tmp_path / "item.npy", "r+b") as f:
        f.seek(-4, 2)
        f.write(b"\x01\x02\x03\x04")
    with pytest.raises(DataError, match="checksum"):
        load_bank(str(tmp_path), verify=True)
    with pytest.raises(DataError, match="rows"):
        bank.check(n_users=6, n_items=4)


def test_train_with_imported_pickles_from_the_command_line(tmp_path, capsys):
    """A user holding RLMRec/ProEx pickles runs ProEx with one command (here on synthetic data of that shape)."""
    inter = make_synthetic(SyntheticConfig(n_users=90, n_items=70, seed=4))
    _write_rlmrec(tmp_path, n_users=90, n_items=70, dim=16)
    code = main(
        [
            "-q",
            "train",
            "--dataset",
            "synthetic:n_users=90,n_items=70,seed=4",
            "--model",
            "lightgcn",
            "--plugin",
            "proex",
            "--profiles",
            f"rlmrec:{tmp_path}",
            "--train",
            "epochs=2",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert (
        main(
            [
                "profiles",
                "import-rlmrec",
                str(tmp_path),
                "--out",
                str(tmp_path / "bank"),
                "--dataset",
                "synthetic:n_users=90,n_items=70,seed=4",
            ]
        )
        == 0
    )
    assert load_profiles(str(tmp_path / "bank"), inter).k == 4
    assert (
        main(["profiles", "import-rlmrec", str(tmp_path), "--out", str(tmp_path / "b2"), "--dataset", "synthetic"]) == 2
    )
    assert "rows" in capsys.readouterr().err


def test_bank_id_is_the_same_in_memory_and_on_disk(tmp_path):
    bank = ProfileBank(np.random.rand(2, 5, 3).astype(np.float32), np.random.rand(2, 4, 3).astype(np.float32), {})
    assert bank.save(str(tmp_path)).bank_id == bank.bank_id
    other = ProfileBank(np.asarray(bank.user) + 1, np.asarray(bank.item), {})
    assert other.bank_id != bank.bank_id
