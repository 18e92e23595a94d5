"""Load the pickles that RLMRec-format datasets ship, without letting a pickle run code.

The split matrices (`trn_mat.pkl`, `val_mat.pkl`, `tst_mat.pkl`: pickled `scipy.sparse.coo_matrix`,
HKUDS/RLMRec data_handler_general_cf.py) and the profile embeddings (`usr_emb_np*.pkl`, `itm_emb_np*.pkl`: pickled numpy
arrays [n, 1536], RLMRec and ProRec data) are pickles downloaded from third parties. `pickle.load` would import
and call any global the file names (`os.system`, ...). `safe_load` resolves globals from a fixed allowlist
instead, so the file can only build:

* numpy arrays, scalars and dtypes (`numpy.core|numpy._core .multiarray._reconstruct/scalar`,
  `.numeric._frombuffer`, `numpy.ndarray`, `numpy.dtype`, the `numpy.dtypes.*DType` classes);
* scipy.sparse COO/CSR/CSC matrices and arrays, under both the new (`scipy.sparse._coo`) and old
  (`scipy.sparse.coo`) module paths;
* plain containers (dict, list, tuple, str, numbers need no global), plus the three helpers that
  protocol 0-2 pickles use for the above (`_codecs.encode`, `copyreg._reconstructor`, `object`).

Anything else raises `DataError` before the global is imported. The allowed names are resolved to the
objects of the installed numpy/scipy (e.g. `numpy.core` -> `numpy._core` on numpy 2), never imported by name.
"""

from __future__ import annotations

import codecs
import copyreg
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from .interactions import DataError

try:  # numpy >= 1.26 / 2.x
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy < 1.26
    from numpy.core import multiarray as _multiarray  # type: ignore[no-redef]
    from numpy.core import numeric as _numeric

_SPARSE_CLASSES = {f"{fmt}_{kind}" for fmt in ("coo", "csr", "csc") for kind in ("matrix", "array")}
_SPARSE_MODULES = {"scipy.sparse"} | {f"scipy.sparse.{p}{fmt}" for p in ("", "_") for fmt in ("coo", "csr", "csc")}

_ALLOWED: dict[tuple[str, str], Any] = {}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _multiarray._reconstruct
    _ALLOWED[(_mod, "scalar")] = _multiarray.scalar
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_mod, "_frombuffer")] = _numeric._frombuffer
_ALLOWED[("numpy", "ndarray")] = np.ndarray
_ALLOWED[("numpy", "dtype")] = np.dtype
_ALLOWED[("_codecs", "encode")] = codecs.encode  # protocol <= 2 stores bytes as latin1 text + encode
for _mod in ("copyreg", "copy_reg"):  # protocol 0/1 object rebuild: base.__new__(cls), cls/base allowlisted
    _ALLOWED[(_mod, "_reconstructor")] = copyreg._reconstructor
for _mod in ("builtins", "__builtin__"):
    _ALLOWED[(_mod, "object")] = object


def _resolve(module: str, name: str) -> Any | None:
    """The object an allowed `module.name` stands for, or None when it is not allowed."""
    if (module, name) in _ALLOWED:
        return _ALLOWED[(module, name)]
    if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
        return getattr(sp, name, None)
    if module == "numpy.dtypes" and name.endswith("DType"):
        import numpy.dtypes as dtypes

        cls = getattr(dtypes, name, None)
        if isinstance(cls, type) and issubclass(cls, np.dtype):
            return cls
    return None


class _SafeUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose `find_class` only returns allowlisted numpy/scipy.sparse objects."""

    def __init__(self, file: Any, path: Path):
        super().__init__(file, encoding="latin1")  # latin1: numpy's advice for Python-2 era array pickles
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        obj = _resolve(module, name)
        if obj is None:
            raise DataError(
                f"{self._path}: refused to unpickle '{module}.{name}': this file is not a plain numpy/scipy pickle "
                "(only numpy arrays/dtypes and scipy.sparse coo/csr/csc matrices are loaded, nothing that could run "
                "code). Re-export it with numpy/scipy only, e.g. `pickle.dump(scipy.sparse.coo_matrix(m), f)` "
                "or `pickle.dump(np.asarray(a), f)`, or re-download the original file."
            )
        return obj


def safe_load(path: str | Path) -> object:
    """Unpickle `path` allowing only numpy arrays/dtypes/scalars and scipy.sparse matrices (see module doc).

    Raises DataError naming the file when it is missing, names a refused global, or is truncated/corrupt.
    """
    path = Path(path)
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found. Check the path or re-download the dataset.") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e}). Check the file's permissions.") from None
    with f:
        try:
            return _SafeUnpickler(f, path).load()
        except DataError:
            raise
        except (
            pickle.UnpicklingError,
            EOFError,
            ValueError,
            TypeError,
            IndexError,
            KeyError,
            AttributeError,
            struct.error,
            UnicodeDecodeError,
            OverflowError,
            MemoryError,
        ) as e:
            raise DataError(
                f"{path}: truncated or corrupt pickle ({type(e).__name__}: {e}). "
                "The download was probably interrupted; delete the file and re-download it."
            ) from None
