"""PgBouncer (Debian's ``pgbouncer`` package) in front of a test cluster, the way Supabase's
pooler stands in front of a project's database: transaction mode (port 6543 on Supabase) or
session mode (port 5432). It listens on 127.0.0.1 and reaches the cluster over its unix
socket; as root it runs as the suite's unprivileged ``pgserver`` user (pgbouncer refuses
root). Transaction mode has ``default_pool_size = 1``: every client of a (database, user)
pair shares one server connection, so what one client leaves in a session the next one sees.
Session mode gives each client a server connection of its own while it is connected (4, for
a daemon, a probe and a `verify` at once); one that is idle again goes to the next client
(PgBouncer reuses the most recently used one)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from psycopg.conninfo import make_conninfo

from tests.pgcluster import Cluster, _run_as

PGBOUNCER = Path(shutil.which("pgbouncer") or "/usr/sbin/pgbouncer")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass
class Bouncer:
    cluster: Cluster
    mode: str  # "transaction" or "session"
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="syncd-test-bouncer-")))
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None

    def dsn(self, dbname: str, user: str = "postgres") -> str:
        return make_conninfo(host="127.0.0.1", port=self.port, dbname=dbname, user=user)

    @property
    def log(self) -> str:
        path = self.base / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        users = ["postgres", "syncd_writer", "supabase_admin"]
        (self.base / "userlist.txt").write_text("".join(f'"{u}" ""\n' for u in users))
        (self.base / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.cluster.socket_dir} port=5432\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.base / 'userlist.txt'}\n"
            f"pool_mode = {self.mode}\n"
            f"default_pool_size = {1 if self.mode == 'transaction' else 4}\n"
            "max_client_conn = 200\n"
            f"logfile = {self.base / 'pgbouncer.log'}\n"
            f"pidfile = {self.base / 'pgbouncer.pid'}\n"
        )
        user = _run_as()
        if user is not None:
            os.chmod(self.base, 0o755)
            for path in [self.base, *self.base.iterdir()]:
                shutil.chown(path, user)
        self.proc = subprocess.Popen(
            [str(PGBOUNCER), str(self.base / "pgbouncer.ini")],
            user=user,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pgbouncer exited ({self.proc.returncode}):\n{self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not listen on {self.port}:\n{self.log}")

    def stop(self) -> None:
        """Immediate shutdown (SIGTERM): every client and server connection is dropped."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def restart(self, down_s: float = 1.0) -> None:
        """The pooler goes away (its connections cut) and comes back on the same port."""
        self.stop()
        time.sleep(down_s)
        self.start()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
