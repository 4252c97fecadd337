"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb + pg_ctl in a temp dir on a loopback port.

PostgreSQL refuses to run as root, so under root the cluster runs as the unprivileged `nobody` user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def find_pg_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, from PATH or Debian's versioned layout."""
    initdb = shutil.which("initdb")
    if initdb:
        return Path(os.path.realpath(initdb)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(candidates[0]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresCluster:
    """Start with `start()`, make databases with `new_database()`, and `stop()` to remove everything."""

    def __init__(self) -> None:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL binaries not found (apt-get install postgresql-15)")
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="tutor-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.user = "tutor"
        self._counter = 0
        self._as_other_user = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {"capture_output": True, "text": True, "check": check}
        if self._as_other_user:
            kwargs["user"] = "nobody"
            kwargs["group"] = "nogroup"
            kwargs["env"] = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.root), "LC_ALL": "C.UTF-8"}
        return subprocess.run(list(args), **kwargs)

    def start(self) -> PostgresCluster:
        if self._as_other_user:
            os.chown(self.root, 65534, 65534)
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "start",
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not start: {(self.root / 'log').read_text()}")

    def psql(self, sql: str, database: str = "postgres") -> None:
        psql = self.bin / "psql"
        self._run(str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database, "-c", sql)

    def new_database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        self._counter += 1
        name = f"tutor_{os.getpid()}_{self._counter}"
        self.psql(f"CREATE DATABASE {name}")
        return self.url(name)

    def url(self, name: str) -> str:
        return f"postgresql+asyncpg://{self.user}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
