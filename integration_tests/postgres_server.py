"""A throwaway PostgreSQL server for the warehouse tests, started and stopped by the test itself.

It uses Debian's `postgresql` server binaries (`initdb`, `pg_ctl`), which CI installs with the
system packages; there is no fallback to skipping, because a warehouse test that silently does not
run proves nothing. PostgreSQL refuses to run as root, so under root the cluster belongs to the
`postgres` system user and its commands run through `runuser`.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import List, Optional

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"


def find_pg_bin() -> Optional[Path]:
    """The newest Debian server binaries, else whatever `initdb` is on PATH."""
    for candidate in sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name), reverse=True):
        if Path(candidate, "initdb").exists() and Path(candidate, "pg_ctl").exists():
            return Path(candidate)
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path and shutil.which("pg_ctl") else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """`initdb` into a temporary folder, `pg_ctl start` on a free loopback port, trust auth for `postgres`."""

    user = "postgres"
    database = "postgres"
    host = "127.0.0.1"

    def __init__(self) -> None:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            raise RuntimeError(
                "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and PATH): "
                "install Debian's `postgresql` package (apt-get install postgresql) to run the warehouse tests"
            )
        self.bin_dir = bin_dir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cm-pg-"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "server.log"
        self._as_root = os.geteuid() == 0
        self._started = False

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        cmd: List[str] = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL {what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}")

    def start(self) -> "PostgresServer":
        self.socket_dir.mkdir(parents=True)
        if self._as_root:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket_dir, "postgres")
        self._check(
            self._run("initdb", "-D", str(self.data_dir), "-U", self.user, "--auth=trust", "-E", "UTF8", "--no-sync"),
            "initdb",
        )
        options = f"-h {self.host} -p {self.port} -k {self.socket_dir} -F -c fsync=off -c full_page_writes=off"
        self._check(
            self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(self.log), "-o", options),
            "start",
        )
        self._started = True
        deadline = time.time() + 30
        while self._run("pg_isready", "-h", self.host, "-p", str(self.port)).returncode != 0:
            if time.time() > deadline:
                raise RuntimeError(f"PostgreSQL did not accept connections on port {self.port}")
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        try:
            if self._started:
                self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
