"""The benchmark's own PostgreSQL: a pgserver (durable defaults, fsync on) in a temporary
folder, one migrated template, and a fresh database per measured run."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from syncd import migrate

TEMPLATE = "bench_tmpl"
SETTINGS = (
    "server_version",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_level",
    "shared_buffers",
    "max_wal_size",
    "track_commit_timestamp",
)


class BenchServer:
    """A pgserver instance that lives as long as the ``with`` block (cleanup_mode='delete')."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="syncd-bench-pg-"))
        # as root, pgserver runs postgres as the 'pgserver' user, who must traverse this folder
        os.chmod(self.tmp, 0o755)  # noqa: S103
        self._handle: Any = None
        self.admin_dsn = ""

    def __enter__(self) -> BenchServer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pgserver

            self._handle = pgserver.get_server(self.tmp / "pgdata", cleanup_mode="delete")
        self.admin_dsn = self._handle.get_uri()
        self._make_template()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            handle, self._handle = self._handle, None
            handle.cleanup()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- addresses ----------------------------------------------------------------------

    @property
    def socket_path(self) -> str:
        """The server's unix socket (what a TCP proxy forwards to)."""
        params = conninfo_to_dict(self.admin_dsn)
        port = params.get("port") or 5432
        return os.path.join(str(params["host"]), f".s.PGSQL.{port}")

    def dsn(self, dbname: str, via_port: int | None = None) -> str:
        """A DSN for ``dbname``: the unix socket, or a local TCP port (the proxy)."""
        if via_port is None:
            params = conninfo_to_dict(self.admin_dsn)
            return f"postgresql://postgres@/{dbname}?host={params['host']}"
        return f"postgresql://postgres@127.0.0.1:{via_port}/{dbname}"

    def settings(self) -> dict[str, str]:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            return {name: str(conn.execute(f"SHOW {name}").fetchone()[0]) for name in SETTINGS}  # type: ignore[index]

    # -- databases ----------------------------------------------------------------------

    def _make_template(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        with psycopg.connect(self.dsn(TEMPLATE)) as conn:
            migrate.apply_pending(conn)

    def create_database(self) -> str:
        name = f"b_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
            conn.execute("CHECKPOINT")  # start every measured run with no dirty backlog
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @contextmanager
    def fresh_database(self) -> Iterator[str]:
        """A new database cloned from the migrated template, dropped afterwards."""
        name = self.create_database()
        try:
            yield name
        finally:
            self.drop_database(name)

    def count_rows(self, dbname: str, table: str = "public.contents") -> int:
        with psycopg.connect(self.dsn(dbname), autocommit=True) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(row[0]) if row else 0
