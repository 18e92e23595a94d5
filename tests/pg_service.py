"""A throw-away PostgreSQL server for the slow infrastructure tests, started from the machine's binaries.

PostgreSQL refuses to run as root, so `initdb` and `pg_ctl` run as the `postgres` system user
(`runuser -u postgres -- ...`) when the tests run as root. The server listens on 127.0.0.1 at a free port,
keeps its socket and data in a fresh folder under /tmp (which that user can reach; pytest's own tmp folders
are private to root), trusts local connections, and is stopped with `pg_ctl stop -m immediate` and deleted.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time


def pg_bin() -> str | None:
    """The folder holding initdb and pg_ctl: $PROEX_PG_BIN, the newest /usr/lib/postgresql/<v>/bin, or PATH."""
    cands = [os.environ.get("PROEX_PG_BIN", "")] + sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for d in cands:
        if d and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    found = shutil.which("pg_ctl")
    return os.path.dirname(found) if found else None


class Postgres:
    """`initdb` + `pg_ctl start` on 127.0.0.1:`port`; `url(db)` after `create_database(db)`."""

    def __init__(self, port: int):
        self.bin = pg_bin()
        if self.bin is None:
            raise RuntimeError(
                "PostgreSQL binaries not found: install postgresql (apt-get install -y postgresql-15; "
                ".ci/run does) or set PROEX_PG_BIN to the folder holding initdb and pg_ctl"
            )
        self.port = port
        self.dir = tempfile.mkdtemp(prefix="proex-pg-", dir="/tmp")
        self.data = os.path.join(self.dir, "data")
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.dir} -c fsync=off "
            f"-c max_connections=200"
        )
        self._run(
            "pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-o", opts, "-w", "-t", "60", "start"
        )
        deadline = time.time() + 60
        while self._run("pg_isready", "-h", "127.0.0.1", "-p", str(port), check=False).returncode != 0:
            if time.time() > deadline:
                raise RuntimeError(f"PostgreSQL did not accept connections on port {port}: {self.log_tail()}")
            time.sleep(0.3)

    def _run(self, exe: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [*self.as_user, os.path.join(self.bin, exe), *args],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=self.dir if self.as_user else None,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{exe} failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]} {self.log_tail()}"
            )
        return done

    def log_tail(self) -> str:
        path = os.path.join(self.dir, "server.log")
        return open(path).read()[-3000:] if os.path.exists(path) else ""

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
