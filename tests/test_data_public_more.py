"""`proex data fetch goodbooks-10k | steam` against a local HTTP server serving small files in the exact published
formats (tests/public_files.py): the card loads through `proex data inspect --card`, the item text is each
entity's own, a rerun downloads nothing, and a file that fails its checksum or its format installs nothing."""

from __future__ import annotations

import dataclasses
import gzip
import json

import pandas as pd
import pytest
from public_files import STEAM_USERS, git_blob, marker, write_amazon_2018, write_goodbooks, write_steam
from test_data_registry_fetch import server  # noqa: F401  (the local HTTP server fixture)

from proex.cli import main
from proex.data import public
from proex.data.registry import load_dataset


def fetch(server, dest, name, folder, *extra):  # noqa: F811
    return main(["-q", "data", "fetch", name, "--dest", str(dest), "--url", f"{server.url}/{folder}/", *extra])


@pytest.fixture
def goodbooks(server, tmp_path, monkeypatch):  # noqa: F811
    """Goodbooks files on the server, with the table's git blob ids pinned to theirs (as git computes them)."""
    made = write_goodbooks(server.root / "gb")
    spec = public.PUBLIC["goodbooks-10k"]
    remotes = tuple(
        dataclasses.replace(r, checksum=f"git-blob:{git_blob(server.root / 'gb' / r.name)}") for r in spec.files
    )
    monkeypatch.setitem(public.PUBLIC, "goodbooks-10k", dataclasses.replace(spec, files=remotes))
    return made


def test_goodbooks_installs_as_a_card_with_each_books_own_tags(server, goodbooks, tmp_path, capsys):  # noqa: F811
    dest = tmp_path / "data"
    assert fetch(server, dest, "goodbooks-10k", "gb") == 0
    card = json.loads(capsys.readouterr().out)["card"]
    inter = load_dataset(card)
    ratings = pd.DataFrame(goodbooks["ratings"], columns=["user_id", "book_id", "rating"])
    assert inter.train.nnz + inter.val.nnz + inter.test.nnz == len(ratings)
    assert (inter.n_users, inter.n_items) == (ratings.user_id.nunique(), ratings.book_id.nunique())
    goodreads_of = dict(zip(goodbooks["books"], goodbooks["goodreads"]))
    for dense, book in enumerate(inter.item_ids):
        row = inter.item_text.iloc[dense]
        tags = row["tags"].split(", ")
        assert f"g{goodreads_of[int(book)]}" in tags  # joined on goodreads_book_id, not book_id
        assert "to-read" not in tags  # on every book: says nothing about one
        assert ("favorites" in tags) == bool(goodreads_of[int(book)] % 2)  # on half the books: kept
        assert f"vol. {book} " in row["title"] and row["authors"]
    assert any("GrandPré" in a for a in inter.item_text.authors)  # UTF-8 kept
    sources = json.loads((dest / "goodbooks-10k" / "sources.json").read_text())
    assert [s["checksum"].split(":")[0] for s in sources] == ["git-blob"] * 4
    assert main(["-q", "data", "inspect", "--card", card]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["items"] == inter.n_items and shown["text_columns"]["item"] == ["title", "authors", "tags"]
    hits = list(server.hits)
    assert fetch(server, dest, "goodbooks-10k", "gb") == 0
    assert server.hits == hits  # installed: nothing downloaded again
    assert (
        main(
            [
                "-q",
                "data",
                "fetch",
                "goodbooks-10k",
                "--dest",
                str(tmp_path / "local"),
                "--url",
                (server.root / "gb").as_uri() + "/",
            ]
        )
        == 0
    )  # files downloaded by hand
    assert (tmp_path / "local" / "goodbooks-10k" / "book_text.csv").read_bytes() == (
        dest / "goodbooks-10k" / "book_text.csv"
    ).read_bytes()


def test_goodbooks_blob_mismatch_installs_nothing(server, goodbooks, tmp_path, capsys):  # noqa: F811
    path = server.root / "gb" / "ratings.csv"
    path.write_bytes(path.read_bytes()[:-3])  # a truncated download
    assert fetch(server, tmp_path / "d", "goodbooks-10k", "gb") == 2
    err = capsys.readouterr().err
    assert "ratings.csv: checksum" in err and "git blob SHA-1 pinned" in err and "Nothing was installed" in err
    assert not list((tmp_path / "d").iterdir())  # no dataset folder, no temporary file left


def test_git_blob_matches_git(tmp_path):
    f = tmp_path / "x.csv"
    f.write_bytes("user_id,book_id\n1,ü\n".encode() * 1000)
    assert public.git_blob_sha1(f) == git_blob(f)


def test_steam_dict_literals_install_with_review_text_of_training_pairs_only(server, tmp_path, capsys):  # noqa: F811
    made = write_steam(server.root / "steam")
    dest = tmp_path / "data"
    assert fetch(server, dest, "steam-reviews", "steam") == 0
    card = json.loads(capsys.readouterr().out)["card"]
    inter = load_dataset(card)
    pairs = {(r["username"], r["product_id"]) for r in made["reviews"]}
    assert inter.train.nnz + inter.val.nnz + inter.test.nnz == len(pairs)
    assert sorted(map(str, inter.user_ids)) == sorted(STEAM_USERS)  # non-ASCII, quotes, commas, digits
    text = inter.item_text.set_index(pd.Index([str(i) for i in inter.item_ids]))
    assert text.loc["10", "title"] == "Jeu № 10: l'été" and text.loc["10", "tags"] == "Strategy, tag10"
    assert text.loc["3010", "title"] == "App 3010"  # no title: app_name
    assert text.loc["999999", "title"] == ""  # reviewed, no metadata
    assert inter.extras["counts"]["interaction_text"]["dropped_val_test"] > 0
    users = {str(u): i for i, u in enumerate(inter.user_ids)}
    items = {str(g): j for j, g in enumerate(inter.item_ids)}
    held = (inter.val + inter.test).tocsr()
    written = inter.user_text["text"]
    for u, g in pairs - {(STEAM_USERS[0], "999999")}:
        seen = marker(u, g) in written.iloc[users[u]]
        assert seen == bool(inter.train[users[u], items[g]]) and not (seen and held[users[u], items[g]])
    sources = json.loads((dest / "steam-reviews" / "sources.json").read_text())
    assert {s["checksum"] for s in sources} == {"first-download"} and all(len(s["sha256"]) == 64 for s in sources)
    assert "sha256" in (dest / "steam-reviews" / "steam-reviews.yaml").read_text()
    assert main(["-q", "data", "inspect", "--card", card]) == 0


def test_steam_refresh_refuses_a_changed_file_and_keeps_the_install(server, tmp_path, capsys):  # noqa: F811
    write_steam(server.root / "steam")
    dest = tmp_path / "data"
    assert fetch(server, dest, "steam-reviews", "steam") == 0
    capsys.readouterr()
    before = (dest / "steam-reviews" / "games.csv").read_bytes()
    assert fetch(server, dest, "steam-reviews", "steam", "--refresh") == 0  # same files: accepted again
    games = server.root / "steam" / "steam_games.json.gz"
    with gzip.open(games, "at") as f:
        f.write("{u'id': u'123', u'title': u'new'}\n")
    assert fetch(server, dest, "steam-reviews", "steam", "--refresh") == 2
    err = capsys.readouterr().err
    assert "steam_games.json.gz: checksum" in err and "first download" in err and "Nothing was installed" in err
    assert (dest / "steam-reviews" / "games.csv").read_bytes() == before


def test_steam_truncated_gzip_or_json_installs_nothing(server, tmp_path, capsys):  # noqa: F811
    write_steam(server.root / "steam")
    reviews = server.root / "steam" / "steam_reviews.json.gz"
    blob = reviews.read_bytes()
    reviews.write_bytes(blob[: len(blob) // 2])
    assert fetch(server, tmp_path / "d", "steam-reviews", "steam") == 2
    assert "not in the expected format" in capsys.readouterr().err
    with gzip.open(reviews, "wt") as f:
        f.write("{'username': 'a', 'product_id': '1'}\n__import__('os').system('echo pwned')\n")
    assert fetch(server, tmp_path / "d", "steam-reviews", "steam") == 2
    assert "line 2: not a Python dict literal" in capsys.readouterr().err
    assert not list((tmp_path / "d").iterdir())


def test_amazon_5core_installs_with_product_text_and_training_reviews_only(server, tmp_path, capsys):  # noqa: F811
    made = write_amazon_2018(server.root / "amz")
    dest = tmp_path / "data"
    assert fetch(server, dest, "amazon-all-beauty", "amz") == 0
    assert any(h.endswith("/amz/categoryFilesSmall/All_Beauty_5.json.gz") for h in server.hits)
    card = json.loads(capsys.readouterr().out)["card"]
    inter = load_dataset(card)
    pairs = {(r["reviewerID"], r["asin"]) for r in made["reviews"]}
    assert inter.train.nnz + inter.val.nnz + inter.test.nnz == len(pairs)
    items = {str(a): j for j, a in enumerate(inter.item_ids)}
    for i, a in enumerate(made["asins"]):  # each product's own text; a repeated asin keeps its first row
        row = inter.item_text.iloc[items[a]]
        assert row["title"] == f"Crème {a} – 50 ml" and row["categories"] == f"All Beauty, Shelf {i % 3}"
        assert row["description"] == f"Sérum n°{i}. Vegan." and row["brand"] == ("L'Oréal" if i % 2 else "")
    users = {str(u): i for i, u in enumerate(inter.user_ids)}
    written = inter.user_text["reviewText"]
    for u, a in pairs:
        assert (f"mk{u}x{a}end" in written.iloc[users[u]]) == bool(inter.train[users[u], items[a]])
    assert main(["-q", "data", "inspect", "--card", card]) == 0
    assert json.loads(capsys.readouterr().out)["text_columns"]["item"] == [
        "title",
        "brand",
        "categories",
        "description",
        "summary",
        "reviewText",
    ]


def test_public_names_never_touch_a_registry_dataset(server, tmp_path, capsys):  # noqa: F811
    from proex.data.registry import KNOWN

    assert not set(public.PUBLIC) & set(KNOWN)  # `steam` stays the RLMRec dataset
    write_steam(server.root / "steam")
    (tmp_path / "steam-reviews").mkdir()
    (tmp_path / "steam-reviews" / "trn_mat.pkl").write_bytes(b"someone else's")
    assert fetch(server, tmp_path, "steam-reviews", "steam") == 2
    assert "is left alone" in capsys.readouterr().err
    assert (tmp_path / "steam-reviews" / "trn_mat.pkl").read_bytes() == b"someone else's"
