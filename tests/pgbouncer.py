"""PgBouncer (Debian's ``pgbouncer`` package) in front of a test cluster, the way Supabase's
pooler stands in front of a project's database: transaction mode (port 6543 on Supabase) or
session mode (port 5432). It listens on 127.0.0.1 and reaches the cluster over its unix
socket; as root it runs as the suite's unprivileged ``pgserver`` user (pgbouncer refuses
root). Transaction mode has ``default_pool_size = 1`` unless told otherwise (``pool_size``):
every client of a (database, user) pair shares one server connection, so what one client
leaves in a session the next one sees. Session mode gives each client a server connection of
its own while it is connected (4, for a daemon, a probe and a `verify` at once); one that is
idle again goes to the next client (PgBouncer reuses the most recently used one).

``upstream`` is the server's unix socket folder (a test cluster's, or the benchmark's
pgserver), on ``upstream_port``."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

from tests.pgcluster import _run_as

PGBOUNCER = Path(shutil.which("pgbouncer") or "/usr/sbin/pgbouncer")
# What a deadlock or a connection limit says, in a log line of syncd's or of the pooler:
# PostgreSQL's SQLSTATEs and messages, PgBouncer's and Supavisor's refusals. A SQLSTATE only
# as syncd says one, "(SQLSTATE 53300)" or "sqlstate": "53300": a bare 53300 matched a
# timestamp's microseconds (".253300Z") once, and as a word it is also a client's port or a
# pid in PgBouncer's log ("127.0.0.1:53300", "[53300]"). PostgreSQL's messages for both
# ("deadlock detected", "sorry, too many clients already") are matched as they are.
TROUBLE = re.compile(
    r"sqlstate\W{1,4}(40P01|53300)\b|deadlock|too many (connections|clients)"
    r"|connection slots are reserved|no more connections allowed|max client connections reached",
    re.IGNORECASE,
)


def require_pgbouncer() -> None:
    """CI installs pgbouncer (.ci/run) and sets SYNCD_REQUIRE_SUPABASE_SERVERS=1: there its
    absence fails the test, as a missing PostgreSQL 15 does; elsewhere the test is skipped."""
    import pytest  # not at the top: the benchmark (bench/many_sources.py) starts a Bouncer too

    if not PGBOUNCER.exists():
        message = f"no pgbouncer at {PGBOUNCER} (Debian's pgbouncer package)"
        if os.environ.get("SYNCD_REQUIRE_SUPABASE_SERVERS") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class PortTaken(RuntimeError):
    """pgbouncer could not listen: its port was bound by another process first."""


@dataclass
class Bouncer:
    upstream: Path
    mode: str  # "transaction" or "session"
    pool_size: int | None = None  # server connections per (database, user); None: 1 or 4
    upstream_port: int = 5432
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="syncd-test-bouncer-")))
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen[bytes] | None = None
    started: bool = False  # once: a restart comes back on the same port

    def dsn(self, dbname: str, user: str = "postgres") -> str:
        return make_conninfo(host="127.0.0.1", port=self.port, dbname=dbname, user=user)

    @property
    def log(self) -> str:
        path = self.base / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """``port`` was free when chosen, but another process (a parallel worker's client,
        server or pooler) may bind it before pgbouncer does: the first start then takes
        another free port, up to three times; a restart keeps its port."""
        for attempt in range(3):
            try:
                self._start()
            except PortTaken:
                if self.started or attempt == 2:
                    raise
                self.port = _free_port()
            else:
                self.started = True
                return

    def _start(self) -> None:
        users = ["postgres", "syncd_writer", "supabase_admin"]
        pool_size = self.pool_size or (1 if self.mode == "transaction" else 4)
        (self.base / "userlist.txt").write_text("".join(f'"{u}" ""\n' for u in users))
        (self.base / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.upstream} port={self.upstream_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.base / 'userlist.txt'}\n"
            f"pool_mode = {self.mode}\n"
            f"default_pool_size = {pool_size}\n"
            "max_client_conn = 200\n"
            "stats_users = postgres\n"  # SHOW POOLS and the like on database pgbouncer
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
                if f"{self.port}: bind(): Address already in use" in self.log:
                    raise PortTaken(f"port {self.port} was taken:\n{self.log}")
                raise RuntimeError(f"pgbouncer exited ({self.proc.returncode}):\n{self.log}")
            # its own log line, not a connection: another process listening on the port
            # would answer one
            if f"[{self.proc.pid}] LOG listening on 127.0.0.1:{self.port}" in self.log:
                return
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


class ServerConnections:
    """The pooler's server side as PostgreSQL sees it, sampled every ``every_s`` from
    pg_stat_activity over a connection of its own (``admin_dsn``, not through the pooler):
    the backends of ``user`` in ``dbname`` (open server connections) and those of them not
    idle (in use: running a statement or inside a transaction). With ``pooler``, its client
    side too, from its console's SHOW POOLS: the clients of that (database, user) pool, and
    those waiting for a server connection. ``most_*`` are the highest counts seen; use it as
    a context manager."""

    QUERY = (
        "select count(*), count(*) filter (where state <> 'idle') from pg_stat_activity"
        " where datname = %s and usename = %s and backend_type = 'client backend'"
    )

    def __init__(
        self,
        admin_dsn: str,
        dbname: str,
        user: str,
        pooler: Bouncer | None = None,
        every_s: float = 0.02,
    ) -> None:
        self.admin_dsn, self.dbname, self.user, self.every_s = admin_dsn, dbname, user, every_s
        self.pooler = pooler
        self.samples = 0
        self.most_open = 0
        self.most_busy = 0
        self.most_clients = 0
        self.most_waiting = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-connections", daemon=True)

    def _run(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                server = stack.enter_context(psycopg.connect(self.admin_dsn, autocommit=True))
                console = None
                if self.pooler is not None:  # the console speaks the simple protocol only
                    console = stack.enter_context(
                        psycopg.connect(
                            self.pooler.dsn("pgbouncer"),
                            autocommit=True,
                            cursor_factory=psycopg.ClientCursor,
                        )
                    )
                while not self._stop.is_set():
                    row = server.execute(self.QUERY, (self.dbname, self.user)).fetchone()
                    assert row is not None
                    self.most_open = max(self.most_open, row[0])
                    self.most_busy = max(self.most_busy, row[1])
                    if console is not None:
                        self._pools(console)
                    self.samples += 1
                    self._stop.wait(self.every_s)
        except BaseException as exc:  # said by stop(), in the caller's thread
            self.error = exc

    def _pools(self, console: psycopg.Connection[Any]) -> None:
        cursor = console.execute("SHOW POOLS")
        names = [column.name for column in cursor.description or ()]
        for values in cursor.fetchall():
            pool = dict(zip(names, values, strict=True))
            if (pool["database"], pool["user"]) == (self.dbname, self.user):
                clients = int(pool["cl_active"]) + int(pool["cl_waiting"])
                self.most_clients = max(self.most_clients, clients)
                self.most_waiting = max(self.most_waiting, int(pool["cl_waiting"]))

    def __enter__(self) -> ServerConnections:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.error is not None:
            raise RuntimeError(f"sampling pg_stat_activity failed: {self.error!r}")
