"""A PostgreSQL server of the test's own, which the test can stop, crash and start again.

The shared server must never be stopped, so a test about database outages runs its own:
``initdb`` into a temporary directory, its own port, no Unix socket in a shared place. Debian
installs the server binaries under ``/usr/lib/postgresql/<major>/bin``; PostgreSQL refuses to
run as root, so under uid 0 every server command runs as the ``postgres`` user, on a data
directory that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.platform_helpers import free_port


def server_binaries() -> Path | None:
    """The newest Debian PostgreSQL ``bin`` directory holding ``initdb`` and ``pg_ctl``."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    return Path(found[-1]).parent if found else None


class OwnPostgres:
    """One PostgreSQL cluster in a temporary directory, listening on 127.0.0.1:``port``.

    :meth:`start` starts it (and waits until it accepts connections), :meth:`stop` stops it
    as an operator would (``-m fast``: clients are disconnected, new connections refused),
    :meth:`crash` as a dying server would (``-m immediate``: every server process is killed
    at once, no shutdown checkpoint, crash recovery at the next start).
    """

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="bgw-own-postgres-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.base}"
            " -c fsync=off -c max_connections=60"
        )
        self._ctl("start", "-w", "-t", "60", "-l", str(self.log), "-o", options)

    def stop(self) -> None:
        self._ctl("stop", "-w", "-m", "fast")

    def crash(self) -> None:
        self._ctl("stop", "-w", "-m", "immediate")

    def remove(self) -> None:
        """Kill the server if it runs, and delete its directory."""
        if (self.data / "postmaster.pid").exists():
            self._ctl("stop", "-w", "-m", "immediate", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def server_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _ctl(self, *args: str, check: bool = True) -> None:
        self._run("pg_ctl", "-D", str(self.data), *args, check=check)

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        argv = [str(self.binaries / program), *args]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.base)
        if check and done.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args[:3])} failed ({done.returncode}): "
                f"{done.stderr.strip()[-800:]}\n{self.server_log()[-2000:]}"
            )
