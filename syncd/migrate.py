"""Schema migrations: plain SQL files applied in order and recorded in a ledger.

A schema directory holds ``migrations/<14-digit version>_<name>.sql`` (Supabase CLI naming)
and, for each, an optional ``rollbacks/<same file name>`` that reverts exactly that file.
Applied migrations are recorded in ``syncd.schema_migrations``. Each migration runs in its
own transaction together with its ledger row, so a failing migration leaves the database as
it was before it. Concurrent runners are serialized with a transaction-level advisory lock.
Nothing here outlives a transaction (no session lock, no session setting), so the runner
works through a transaction pooler as well as directly; on syncd's own connections
(``store.connect``) every transaction starts with syncd's timeouts.

Connections are passed in and may be in autocommit mode or not. Pass an idle connection: if
it is already inside a transaction, everything here runs in savepoints of that transaction
and becomes durable only when the caller commits.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from syncd.errors import MigrationError
from syncd.privileges import read_missing, send_checks
from syncd.store import SyncdConnection

__all__ = [
    "Migration",
    "MigrationStatus",
    "apply_pending",
    "discover",
    "rollback_all",
    "rollback_last",
    "schema_dir",
    "status",
]

# Fixed key of the advisory lock that serializes migration runners on one database.
_LOCK_KEY = 0x73796E63645F6D67  # b"syncd_mg"
_FILE_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[A-Za-z0-9_]+)\.sql$")
_LEDGER_DDL = """
create schema if not exists syncd;
create table if not exists syncd.schema_migrations (
  version text primary key,
  name text not null,
  checksum text not null,
  applied_at timestamptz not null default now()
);
"""


@dataclass(frozen=True)
class Migration:
    """One migration file and, if there is one, its rollback script."""

    version: str  # the 14-digit prefix of the file name
    name: str
    path: Path
    rollback_path: Path | None


@dataclass(frozen=True)
class MigrationStatus:
    migration: Migration
    applied_at: datetime | None  # None: pending


def schema_dir() -> Path:
    """Where the schema lives: $SYNCD_SCHEMA_DIR, the copy inside a wheel, or the repo's."""
    configured = os.environ.get("SYNCD_SCHEMA_DIR")
    if configured:
        return Path(configured)
    packaged = Path(__file__).resolve().parent / "_schema"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "schema"


def discover(directory: Path | None = None) -> list[Migration]:
    """The migrations of a schema directory, sorted by file name (= by version)."""
    root = directory if directory is not None else schema_dir()
    migrations_dir = root / "migrations"
    if not migrations_dir.is_dir():
        raise MigrationError(f"no migrations directory at {migrations_dir}")
    found: list[Migration] = []
    seen: dict[str, str] = {}
    for path in sorted(migrations_dir.glob("*.sql"), key=lambda p: p.name):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path.name}: migration file names must be <14-digit version>_<name>.sql"
            )
        version = match["version"]
        if version in seen:
            raise MigrationError(f"{path.name}: version {version} is also used by {seen[version]}")
        seen[version] = path.name
        rollback = root / "rollbacks" / path.name
        found.append(
            Migration(
                version=version,
                name=match["name"],
                path=path,
                rollback_path=rollback if rollback.is_file() else None,
            )
        )
    return found


def status(conn: psycopg.Connection[Any], directory: Path | None = None) -> list[MigrationStatus]:
    """Every migration on disk with the time it was applied (None when pending)."""
    migrations = discover(directory)
    with conn.transaction():
        applied = _applied(conn)
    return [MigrationStatus(m, applied.get(m.version)) for m in migrations]


def send_applied(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    """Send the read of the ledger's versions (in a pipeline: queued, so that it shares a
    round trip; read it with ``pending``). No ledger: UndefinedTable, now or when the
    pipeline is synced."""
    return conn.cursor().execute("select version from syncd.schema_migrations")


def pending(applied: psycopg.Cursor[Any] | None, directory: Path | None = None) -> list[Migration]:
    """The migrations on disk that ``applied`` (from ``send_applied``; None: no ledger)
    does not list."""
    versions = {row[0] for row in applied.fetchall()} if applied is not None else set()
    return [m for m in discover(directory) if m.version not in versions]


def preflight(conn: SyncdConnection, *, writes: bool) -> tuple[list[str], list[str]]:
    """The names of the migrations not applied yet and, for a command that writes, what
    the role lacks (``privileges``), read together in one round trip: over a far link that
    is what a start-up costs (it was one round trip per privilege, about 75)."""
    checks = None
    try:
        with conn.work(read_only=True):
            applied = send_applied(conn)
            if writes:
                checks = send_checks(conn)
    except psycopg.errors.UndefinedTable:  # no ledger yet: nothing is applied
        return [m.name for m in pending(None)], []
    missing = read_missing(checks) if checks is not None else []
    return [m.name for m in pending(applied)], missing


def apply_pending(conn: psycopg.Connection[Any], directory: Path | None = None) -> list[Migration]:
    """Apply every migration not yet in the ledger, in order; return the ones applied here."""
    migrations = discover(directory)
    _ensure_ledger(conn)
    done: list[Migration] = []
    for migration in migrations:
        sql, checksum = _load(migration.path)
        try:
            with conn.transaction():
                _lock(conn)
                # Re-checked under the lock: another runner may have applied it meanwhile.
                if _is_applied(conn, migration.version):
                    continue
                conn.execute(sql)
                conn.execute(
                    "insert into syncd.schema_migrations (version, name, checksum)"
                    " values (%s, %s, %s)",
                    (migration.version, migration.name, checksum),
                )
        except psycopg.Error as exc:
            raise _failed(migration.path.name, exc) from exc
        done.append(migration)
    return done


def rollback_last(conn: psycopg.Connection[Any], directory: Path | None = None) -> Migration | None:
    """Revert the latest applied migration with its rollback script; None if none is applied."""
    by_version = {m.version: m for m in discover(directory)}
    failing = "rollback"
    try:
        with conn.transaction():
            _lock(conn)
            if not _ledger_exists(conn):
                return None
            row = conn.execute(
                "select version from syncd.schema_migrations order by version desc limit 1"
            ).fetchone()
            if row is None:
                return None
            version: str = row[0]
            migration = by_version.get(version)
            if migration is None:
                raise MigrationError(f"applied migration {version} has no file in the schema dir")
            if migration.rollback_path is None:
                raise MigrationError(f"{migration.path.name}: no rollback script")
            failing = f"rollbacks/{migration.rollback_path.name}"
            script, _ = _load(migration.rollback_path)
            conn.execute(script)
            conn.execute("delete from syncd.schema_migrations where version = %s", (version,))
    except psycopg.Error as exc:
        raise _failed(failing, exc) from exc
    return migration


def rollback_all(conn: psycopg.Connection[Any], directory: Path | None = None) -> list[Migration]:
    """Revert every applied migration, latest first; return them in the order reverted."""
    reverted: list[Migration] = []
    while (migration := rollback_last(conn, directory)) is not None:
        reverted.append(migration)
    return reverted


def _load(path: Path) -> tuple[str, str]:
    """The SQL text of a file and the sha256 (hex) of its bytes."""
    try:
        data = path.read_bytes()
        return data.decode("utf-8"), hashlib.sha256(data).hexdigest()
    except (OSError, UnicodeDecodeError) as exc:
        raise MigrationError(f"{path.name}: cannot read: {exc}") from exc


def _failed(what: str, exc: psycopg.Error) -> MigrationError:
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    parts = [f"{what} failed: {message}"]
    if diag.sqlstate:
        parts.append(f"(SQLSTATE {diag.sqlstate})")
    if diag.message_detail:
        parts.append(f"DETAIL: {diag.message_detail}")
    if diag.context:
        parts.append(f"CONTEXT: {diag.context.strip()}")
    return MigrationError(" ".join(parts))


def _lock(conn: psycopg.Connection[Any]) -> None:
    conn.execute("select pg_advisory_xact_lock(%s)", (_LOCK_KEY,))


def _ensure_ledger(conn: psycopg.Connection[Any]) -> None:
    try:
        with conn.transaction():
            _lock(conn)  # concurrent "create ... if not exists" can still collide
            conn.execute(_LEDGER_DDL)
    except psycopg.Error as exc:
        raise _failed("syncd.schema_migrations", exc) from exc


def _ledger_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("select to_regclass('syncd.schema_migrations') is not null").fetchone()
    return bool(row and row[0])


def _is_applied(conn: psycopg.Connection[Any], version: str) -> bool:
    row = conn.execute(
        "select 1 from syncd.schema_migrations where version = %s", (version,)
    ).fetchone()
    return row is not None


def _applied(conn: psycopg.Connection[Any]) -> dict[str, datetime]:
    """version -> applied_at; empty when the ledger does not exist yet (nothing is created)."""
    if not _ledger_exists(conn):
        return {}
    rows = conn.execute("select version, applied_at from syncd.schema_migrations").fetchall()
    return {version: applied_at for version, applied_at in rows}
