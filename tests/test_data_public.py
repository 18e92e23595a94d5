"""`proex data fetch <public dataset>` against a local HTTP server serving small archives in the exact GroupLens
formats (ml-latest-small.zip: CSVs with headers; ml-1m.zip: '::'-separated Latin-1 .dat files) with their .md5
files: the card loads, a rerun downloads nothing, and a checksum mismatch installs nothing."""

from __future__ import annotations

import hashlib
import json
import zipfile

import pandas as pd
from movielens_files import write_movielens
from test_data_registry_fetch import server  # noqa: F401  (the local HTTP server fixture)

from proex.cli import main
from proex.data.registry import load_dataset


def publish(root, name: str, members: dict[str, bytes], md5: str | None = None) -> None:
    with zipfile.ZipFile(root / name, "w") as zf:
        for member, blob in members.items():
            zf.writestr(member, blob)
    digest = md5 or hashlib.md5((root / name).read_bytes()).hexdigest()
    (root / f"{name}.md5").write_text(f"MD5 ({name}) = {digest}\n")


def test_movielens_small_and_1m_install_as_cards(server, tmp_path, capsys):  # noqa: F811
    files = write_movielens(tmp_path / "src", n_users=30, n_movies=40, per_user=12)
    publish(
        server.root,
        "ml-latest-small.zip",
        {f"ml-latest-small/{p.name}": p.read_bytes() for p in (files["ratings"], files["movies"], files["tags"])},
    )
    ratings, movies = pd.read_csv(files["ratings"]), pd.read_csv(files["movies"])
    dat = lambda df: "\n".join("::".join(map(str, r)) for r in df.itertuples(index=False)).encode("latin-1", "replace")  # noqa: E731
    latin = movies.assign(title=[f"Amélie {i} (2001)" for i in range(len(movies))])
    publish(
        server.root,
        "ml-1m.zip",
        {
            "ml-1m/ratings.dat": dat(ratings.assign(rating=ratings.rating.round().astype(int))),
            "ml-1m/movies.dat": dat(latin),
            "ml-1m/README": b"x",
        },
    )
    dest = tmp_path / "data"
    for name, archive in (("movielens-small", "ml-latest-small.zip"), ("movielens-1m", "ml-1m.zip")):
        capsys.readouterr()
        assert main(["-q", "data", "fetch", name, "--dest", str(dest), "--url", f"{server.url}/{archive}"]) == 0
        card = json.loads(capsys.readouterr().out)["card"]
        inter = load_dataset(card)
        assert inter.name == name and inter.train.nnz + inter.val.nnz + inter.test.nnz == len(ratings)
        assert inter.n_users == ratings.userId.nunique() and inter.n_items == ratings.movieId.nunique()
        if name == "movielens-small":
            assert "tag" in inter.user_text.columns and inter.extras["counts"]["interaction_text"]["kept_train"] > 0
        else:
            assert any(t.startswith("Amélie") for t in inter.item_text.title)  # Latin-1 decoded to UTF-8
    hits = list(server.hits)
    assert (
        main(
            [
                "-q",
                "data",
                "fetch",
                "movielens-small",
                "--dest",
                str(dest),
                "--url",
                f"{server.url}/ml-latest-small.zip",
            ]
        )
        == 0
    )
    assert server.hits == hits  # installed: nothing downloaded again


def test_checksum_mismatch_installs_nothing(server, tmp_path, capsys):  # noqa: F811
    publish(server.root, "ml-latest-small.zip", {"ml-latest-small/ratings.csv": b"userId,movieId\n1,2\n"}, md5="0" * 32)
    assert (
        main(
            [
                "data",
                "fetch",
                "movielens-small",
                "--dest",
                str(tmp_path / "d"),
                "--url",
                f"{server.url}/ml-latest-small.zip",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "does not match the published" in err and "Nothing was installed" in err
    assert not list((tmp_path / "d").iterdir())  # no dataset folder, no temporary file left
    assert main(["data", "fetch", "netflix", "--dest", str(tmp_path)]) == 2
    assert "movielens-small" in capsys.readouterr().err
