"""Schema migrations: plain SQL files applied in order and recorded in a ledger.

A schema directory holds ``migrations/<14-digit version>_<name>.sql`` (Supabase CLI naming)
and, for each, an optional ``rollbacks/<same file name>`` that reverts exactly that file.
Applied migrations are recorded in ``syncd.schema_migrations``. Each migration runs in its
own transaction together with its ledger row, so a failing migration leaves the database as
it was before it. Concurrent runners are serialized with a transaction-level advisory lock.
The runner's statements are in ``syncd/sql/migrations.sql``, the check's reads in
``schema.sql``; a driver error becomes a ``MigrationError`` naming the file
(``driver_errors.migration_step``). Nothing here outlives a transaction (no session lock,
no session setting), so the runner works through a transaction pooler as well as directly;
on syncd's own connections (``database.connect``) every transaction starts with syncd's
timeouts.

Each migration names, in a ``-- provides:`` header line, the objects it makes that syncd
relies on (tables, views, columns, functions, roles, row-level security). ``check`` compares the
ledger with the database and with the files: pending migrations, versions this syncd does
not know (a newer syncd migrated the database), and migrations recorded as applied whose
objects are missing (changed by hand). Each rollback script deletes its own ledger row too,
so that running it by hand (psql) keeps the ledger true.

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

from syncd.database import SyncdConnection
from syncd.driver_errors import UndefinedTable, migration_step
from syncd.errors import MigrationError
from syncd.privileges import read_missing, send_checks
from syncd.sqlfiles import query

__all__ = [
    "Migration",
    "MigrationStatus",
    "SchemaCheck",
    "apply_pending",
    "check",
    "discover",
    "rollback_all",
    "rollback_last",
    "rollback_to",
    "schema_dir",
    "status",
]

# Fixed key of the advisory lock that serializes migration runners on one database.
_LOCK_KEY = 0x73796E63645F6D67  # b"syncd_mg"
_FILE_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[A-Za-z0-9_]+)\.sql$")
_PROVIDES = re.compile(r"^-- provides:(.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Migration:
    """One migration file and, if there is one, its rollback script."""

    version: str  # the 14-digit prefix of the file name
    name: str
    path: Path
    rollback_path: Path | None
    provides: tuple[str, ...] = ()  # objects syncd relies on (its ``-- provides:`` lines)

    @property
    def file_name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class MigrationStatus:
    migration: Migration
    applied_at: datetime | None  # None: pending
    missing: tuple[str, ...] = ()  # of its objects, those the database lacks (when applied)

    @property
    def state(self) -> str:
        if self.applied_at is None:
            return "pending"
        return f"applied, missing {', '.join(self.missing)}" if self.missing else "applied"


@dataclass(frozen=True)
class UnknownVersion:
    """A ledger row with no migration file here: applied by a newer (or another) syncd."""

    version: str
    name: str
    applied_at: datetime


@dataclass(frozen=True)
class SchemaCheck:
    statuses: list[MigrationStatus]
    unknown: list[UnknownVersion]

    @property
    def pending(self) -> list[Migration]:
        return [s.migration for s in self.statuses if s.applied_at is None]

    @property
    def broken(self) -> list[MigrationStatus]:
        return [s for s in self.statuses if s.applied_at is not None and s.missing]

    def problems(self) -> list[str]:
        """What stops syncd from using this database, each with what to run (empty: none)."""
        found: list[str] = []
        if self.unknown:
            latest = self.statuses[-1].migration.version if self.statuses else "0"
            found.append(
                "the database was migrated by a newer syncd: "
                + ", ".join(f"{u.version}_{u.name}" for u in self.unknown)
                + " unknown to this one; upgrade syncd, or run the newer syncd's"
                f" `syncd migrate --rollback-to {latest}`"
            )
        for status in self.broken:
            earlier = [s.migration.version for s in self.statuses]
            index = earlier.index(status.migration.version)
            before = earlier[index - 1] if index else "0"
            found.append(
                f"migration {status.migration.file_name} is recorded as applied but"
                f" {', '.join(status.missing)} missing (changed by hand, or a rollback run"
                f" without its ledger line?): run `syncd migrate --rollback-to {before}`"
                " then `syncd migrate`"
            )
        if self.pending and not found:
            found.append(
                f"schema not migrated ({len(self.pending)} pending, first"
                f" {self.pending[0].file_name}): run `syncd migrate`"
            )
        return found


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
                provides=_provides(path),
            )
        )
    return found


def status(conn: psycopg.Connection[Any], directory: Path | None = None) -> list[MigrationStatus]:
    """Every migration on disk with the time it was applied (None when pending)."""
    return check(conn, directory).statuses


def check(conn: psycopg.Connection[Any], directory: Path | None = None) -> SchemaCheck:
    """The ledger against the files and the database (reads only, one transaction)."""
    migrations = discover(directory)
    with conn.transaction():
        if not _ledger_exists(conn):
            return _compare(migrations, [], [])
        ledger = conn.execute(query("schema.sql", "ledger")).fetchall()
        missing = _send_missing_objects(conn, migrations).fetchall()
    return _compare(migrations, ledger, missing)


def _send_missing_objects(
    conn: psycopg.Connection[Any], migrations: list[Migration]
) -> psycopg.Cursor[Any]:
    """Send the read of which objects of every migration's ``provides`` are missing (all of
    them, applied or not, so that it needs no answer first: one round trip with the rest)."""
    names = sorted({name for m in migrations for name in m.provides})
    return conn.cursor().execute(query("schema.sql", "missing_objects"), {"names": names})


def _compare(
    migrations: list[Migration], ledger: list[Any], missing_rows: list[Any]
) -> SchemaCheck:
    """The check, from the ledger's (version, name, applied_at) rows and the names of the
    missing objects."""
    applied = {row[0]: (row[1], row[2]) for row in ledger}
    missing = {row[0] for row in missing_rows}
    known = {m.version for m in migrations}
    return SchemaCheck(
        statuses=[
            MigrationStatus(
                m,
                applied[m.version][1] if m.version in applied else None,
                tuple(name for name in m.provides if name in missing)
                if m.version in applied
                else (),
            )
            for m in migrations
        ],
        unknown=[
            UnknownVersion(version, name, applied_at)
            for version, (name, applied_at) in sorted(applied.items())
            if version not in known
        ],
    )


def preflight(conn: SyncdConnection, *, writes: bool) -> tuple[SchemaCheck, list[str]]:
    """The schema check and, for a command that writes, what the role lacks
    (``privileges``), read together in one round trip: over a far link that is what a
    start-up costs (it was one round trip per privilege, about 75)."""
    migrations = discover()
    checks = None
    try:
        with conn.work(read_only=True):
            ledger = conn.cursor().execute(query("schema.sql", "ledger"))
            missing = _send_missing_objects(conn, migrations)
            if writes:
                checks = send_checks(conn)
            found = _compare(migrations, ledger.fetchall(), missing.fetchall())
    except UndefinedTable:  # no ledger yet: nothing is applied
        return _compare(migrations, [], []), []
    return found, read_missing(checks) if checks is not None else []


def apply_pending(conn: psycopg.Connection[Any], directory: Path | None = None) -> list[Migration]:
    """Apply every migration not yet in the ledger, in order; return the ones applied here."""
    migrations = discover(directory)
    _ensure_ledger(conn)
    done: list[Migration] = []
    for migration in migrations:
        sql, checksum = _load(migration.path)
        with migration_step(migration.path.name), conn.transaction():
            _lock(conn)
            # Re-checked under the lock: another runner may have applied it meanwhile.
            if _is_applied(conn, migration.version):
                continue
            conn.execute(sql)
            conn.execute(
                _sql("record_applied"),
                {"version": migration.version, "name": migration.name, "checksum": checksum},
            )
        done.append(migration)
    return done


def rollback_last(conn: psycopg.Connection[Any], directory: Path | None = None) -> Migration | None:
    """Revert the latest applied migration with its rollback script; None if none is applied."""
    by_version = {m.version: m for m in discover(directory)}
    with migration_step("rollback") as step, conn.transaction():
        _lock(conn)
        if not _ledger_exists(conn):
            return None
        row = conn.execute(_sql("latest_applied")).fetchone()
        version: str | None = row[0] if row else None
        if version is None:
            return None
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"applied migration {version} has no file here: a newer syncd applied it;"
                " roll it back with that one"
            )
        if migration.rollback_path is None:
            raise MigrationError(f"{migration.path.name}: no rollback script")
        step.what = f"rollbacks/{migration.rollback_path.name}"
        script, _ = _load(migration.rollback_path)
        conn.execute(script)
        conn.execute(_sql("forget_applied"), {"version": version})
    return migration


def rollback_all(conn: psycopg.Connection[Any], directory: Path | None = None) -> list[Migration]:
    """Revert every applied migration, latest first; return them in the order reverted."""
    return rollback_to(conn, "0", directory)


def rollback_to(
    conn: psycopg.Connection[Any], version: str, directory: Path | None = None
) -> list[Migration]:
    """Revert every applied migration later than ``version`` ("0": all), latest first, each
    in its own transaction with its ledger row; return them in the order reverted."""
    if version != "0" and version not in {m.version for m in discover(directory)}:
        raise MigrationError(f"no migration with version {version} (see `syncd migrate --status`)")
    reverted: list[Migration] = []
    while (latest := _latest_applied(conn)) is not None and latest > version:
        migration = rollback_last(conn, directory)
        if migration is None:
            break
        reverted.append(migration)
    return reverted


def _provides(path: Path) -> tuple[str, ...]:
    """The objects named by the ``-- provides:`` lines of a migration file."""
    text, _ = _load(path)
    return tuple(
        name.strip() for line in _PROVIDES.findall(text) for name in line.split(",") if name.strip()
    )


def _latest_applied(conn: psycopg.Connection[Any]) -> str | None:
    with conn.transaction():
        if not _ledger_exists(conn):
            return None
        row = conn.execute(_sql("latest_applied")).fetchone()
    return row[0] if row else None


def _load(path: Path) -> tuple[str, str]:
    """The SQL text of a file and the sha256 (hex) of its bytes."""
    try:
        data = path.read_bytes()
        return data.decode("utf-8"), hashlib.sha256(data).hexdigest()
    except (OSError, UnicodeDecodeError) as exc:
        raise MigrationError(f"{path.name}: cannot read: {exc}") from exc


def _lock(conn: psycopg.Connection[Any]) -> None:
    conn.execute(_sql("lock"), {"key": _LOCK_KEY})


def _ensure_ledger(conn: psycopg.Connection[Any]) -> None:
    with migration_step("syncd.schema_migrations"), conn.transaction():
        _lock(conn)  # concurrent "create ... if not exists" can still collide
        conn.execute(_sql("create_ledger"))


def _ledger_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(_sql("ledger_exists")).fetchone()
    return bool(row and row[0])


def _is_applied(conn: psycopg.Connection[Any], version: str) -> bool:
    row = conn.execute(_sql("is_applied"), {"version": version}).fetchone()
    return row is not None


def _sql(name: str) -> str:
    """A statement of the runner (sql/migrations.sql)."""
    return query("migrations.sql", name)
