"""Download the RLMRec datasets (HKUDS/RLMRec's data archive) and install them in the layout `load_rlmrec` reads.

The RLMRec archive (`data.zip`) holds `data/<name>/{trn,val,tst}_mat.pkl` (plus, where published, the profile
texts `usr_prf.pkl`/`itm_prf.pkl` and embeddings `usr_emb_np*.pkl`/`itm_emb_np*.pkl`) and `data/mapper/<name>_*.json`.
`fetch_rlmrec` downloads it to a temporary file, and for each requested dataset copies only those files into
`<dest>/<name>/` (mappers into `<dest>/<name>/mapper/`). Archive paths are never used as output paths: each
file goes to `<dest>/<name>/<basename>`, and entries with `..` or absolute paths are ignored (no zip-slip).
Each installed dataset is then loaded and compared with the registry's expected counts.
A manually downloaded archive can be installed with `url="file:///path/to/data.zip"`.
"""

from __future__ import annotations

import fnmatch
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from .interactions import DataError
from .registry import check_expected, default_data_dir
from .rlmrec import SPLIT_FILES, load_rlmrec

RLMREC_URL = "https://archive.org/download/rlmrec_data/data.zip"
DATASET_FILES = tuple(SPLIT_FILES.values()) + ("usr_emb_np*.pkl", "itm_emb_np*.pkl", "usr_prf.pkl", "itm_prf.pkl")


def fetch_rlmrec(
    dest_dir: str | Path | None = None,
    url: str = RLMREC_URL,
    datasets: tuple[str, ...] | list[str] = ("amazon", "yelp", "steam"),
    timeout: float = 60,
    verify: bool = True,
) -> list[str]:
    """Install `datasets` from the archive at `url` under `dest_dir` (default: the registry's data dir).

    Datasets already present and valid are skipped; nothing is downloaded when all are. Returns the names
    now installed (all of `datasets`). Raises DataError on network errors, a corrupt archive, a dataset the
    archive lacks, or (when `verify`) counts that differ from `registry.KNOWN`.
    """
    dest = Path(dest_dir or default_data_dir())
    todo = [n for n in datasets if not _installed(dest / n, n, verify)]
    if not todo:
        return list(datasets)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".rlmrec-", suffix=".zip.part", dir=dest)
        os.close(fd)
    except OSError as e:
        raise DataError(
            f"{dest}: cannot write there ({e}); pass a writable dest_dir or set PROEX_DATA_DIR to a writable folder."
        ) from None
    tmp = Path(tmp_name)
    try:
        _download(url, tmp, timeout, dest)
        _extract(tmp, url, dest, todo)
    finally:
        tmp.unlink(missing_ok=True)
    for name in todo:
        data = load_rlmrec(dest / name, name)
        problems = check_expected(data) if verify else []
        if problems:
            raise DataError(
                f"{dest / name}: installed from {url} but its counts differ from the expected ones: "
                f"{'; '.join(problems)}. The archive may have changed or be a different release; "
                "check it, or pass verify=False to keep it anyway."
            )
    return list(datasets)


def _installed(path: Path, name: str, verify: bool) -> bool:
    """True when `path` holds a loadable dataset (matching the expected counts when `verify`)."""
    if not all((path / f).is_file() for f in SPLIT_FILES.values()):
        return False
    try:
        data = load_rlmrec(path, name)
    except DataError:
        return False
    return not (verify and check_expected(data))


def _download(url: str, target: Path, timeout: float, dest: Path, hint: str | None = None) -> None:
    """Stream `url` into `target`; any network/HTTP failure -> DataError with manual-download instructions
    (`hint`, or those for the RLMRec archive)."""
    request = urllib.request.Request(url, headers={"User-Agent": "proex-data-fetch"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise DataError(
            f"could not download {url} ({type(e).__name__}: {reason}). "
            + (
                hint
                or f"Download it by hand and unzip it so that {dest}/<name>/{{trn,val,tst}}_mat.pkl exist (the archive "
                "holds data/<name>/...), or rerun with url='file:///path/to/data.zip'."
            )
        ) from None


def _extract(archive: Path, url: str, dest: Path, names: list[str]) -> None:
    """Copy each requested dataset's files out of `archive` into `dest/<name>/` (see module doc)."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(
            f"{url}: the downloaded file is not a valid zip archive ({e}); it is truncated or corrupt. "
            "Retry the download, or download and unzip it by hand."
        ) from None
    with zf:
        entries = []
        for info in zf.infolist():
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if info.is_dir() or not parts or parts[0] == "/" or ".." in parts or ":" in parts[0]:
                continue  # directories and unsafe names (absolute, drive letters, ..) are never written
            entries.append((parts, info))
        found = sorted((len(p), p[:-1]) for p, _ in entries if p[-1] == SPLIT_FILES["train"] and len(p) >= 2)
        folders = {}
        for _, folder in found:
            if folder[-1] in names:
                folders.setdefault(folder[-1], folder)  # the shallowest folder of that name wins
        for name, folder in folders.items():
            for parts, info in entries:
                if parts[:-1] == folder and any(fnmatch.fnmatchcase(parts[-1], p) for p in DATASET_FILES):
                    _write(zf, info, dest, name, parts[-1], url)
                elif parts[-2:] in (("mapper", f"{name}_user.json"), ("mapper", f"{name}_item.json")):
                    _write(zf, info, dest, f"{name}/mapper", parts[-1], url)
    missing = [n for n in names if n not in folders]
    if missing:
        present = sorted({f[-1] for _, f in found})
        raise DataError(
            f"{url}: the archive has no folder with {SPLIT_FILES['train']} for {missing} "
            f"(it has: {present or 'none'}). Request only datasets it has, or install the missing ones by "
            f"hand as {dest}/<name>/{{trn,val,tst}}_mat.pkl."
        )


def _write(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, sub: str, basename: str, url: str) -> None:
    """Copy one archive member to dest/sub/basename via a temporary name, refusing anything outside dest."""
    root = dest.resolve()
    target = (root / sub / basename).resolve()
    if not target.is_relative_to(root):
        raise DataError(f"{url}: archive entry {info.filename!r} would be written outside {root}; refused.")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        with zf.open(info) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        part.unlink(missing_ok=True)
        raise DataError(f"{url}: archive member {info.filename!r} is corrupt ({e}); retry the download.") from None
    os.replace(part, target)
