"""Start-up shared by the grid and study drivers (ray_jobs/grid.py, ray_jobs/tune.py)."""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_grid_file(path: str, address: str | None, prog: str):
    """The parsed grid file, or None after printing `prog: error: ...` (the caller exits 2).

    Call it before Ray is imported: for a new local Ray it keeps Ray on loopback (without this, Ray replaces
    127.0.0.1 by the machine's address), and it puts the repository on sys.path for `proex`.
    """
    if address in (None, "local") and not os.environ.get("RAY_ADDRESS"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    sys.path.insert(0, ROOT)
    from proex.config import ConfigError
    from proex.grid import load_grid

    try:
        return load_grid(path)
    except ConfigError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return None
