"""Schema versions checked (issue 18, item 6): the ledger stays true when a rollback file is
run by hand, every command refuses a database whose schema is not the one this syncd needs
(pending, unknown to it, or recorded as applied with objects missing) with a message naming
the migration and what to run, and `syncd migrate --rollback`/`--rollback-to` keep the
ledger true. On the Supabase-shaped databases of PostgreSQL 15 and 16, as `postgres` (not a
superuser there)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from syncd import migrate
from tests.conftest import SUPABASE_BARE, SupabaseServer
from tests.daemon_harness import run_syncd
from tests.helpers import make_course

MIGRATIONS = migrate.discover()
LAST, BEFORE_LAST = MIGRATIONS[-1], MIGRATIONS[-2]
FATAL_DB = 4


@pytest.fixture(params=["supabase15", "supabase16"])
def server(request: pytest.FixtureRequest) -> SupabaseServer:
    found: SupabaseServer = request.getfixturevalue(request.param)
    return found


@pytest.fixture
def database(server: SupabaseServer) -> Iterator[str]:
    """A Supabase project's database migrated by this syncd, as postgres."""
    name = server.create_database(template=SUPABASE_BARE)
    try:
        done = run_syncd("migrate", dsn=server.dsn(name))
        assert done.returncode == 0, done.stderr
        yield name
    finally:
        server.drop_database(name)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    make_course(tmp_path / "courses", "course-a", lessons=3)
    return tmp_path / "courses"


def psql_file(server: SupabaseServer, dsn: str, path: Path) -> None:
    psql = str(server.cluster.bin_dir / "psql")
    done = subprocess.run(
        [psql, dsn, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def ledger(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("select version from syncd.schema_migrations order by 1").fetchall()
    return [row[0] for row in rows]


def test_every_rollback_file_keeps_the_ledger_true_by_itself() -> None:
    """Run by hand, each rollback script deletes its own ledger row (and nobody else's)."""
    for migration in MIGRATIONS:
        assert migration.rollback_path is not None, migration.file_name
        text = migration.rollback_path.read_text(encoding="utf-8")
        assert (
            f"delete from syncd.schema_migrations where version = '{migration.version}';" in text
        ), migration.rollback_path
        assert text.count("delete from syncd.schema_migrations") == 1, migration.rollback_path
        assert migration.provides, f"{migration.file_name} has no `-- provides:` line"


def test_a_rollback_run_with_psql_is_seen_and_migrate_puts_it_back(
    server: SupabaseServer, database: str, root: Path
) -> None:
    """The report: the last rollback file run with psql (as docs/operations.md allows) left the
    ledger saying applied, `syncd migrate` did nothing and the daemon died on a missing
    column. Now the ledger follows, every command says what is pending and `migrate`
    applies it again."""
    dsn = server.dsn(database)
    assert LAST.rollback_path is not None
    psql_file(server, dsn, LAST.rollback_path)
    assert LAST.version not in ledger(dsn)

    status = run_syncd("migrate", "--status", dsn=dsn)
    assert status.returncode == 0, status.stderr  # pending is what `migrate` is for
    line = next(line for line in status.stdout.splitlines() if LAST.version in line)
    assert LAST.name in line and "pending" in line
    for command in (("--rescan", "--root", str(root)), ("verify", "--root", str(root))):
        done = run_syncd(*command, dsn=dsn)
        assert done.returncode == FATAL_DB, done.stderr[-2000:]
        assert "1 pending" in done.stderr and LAST.file_name in done.stderr, done.stderr[-2000:]
        assert "run `syncd migrate`" in done.stderr

    assert run_syncd("migrate", dsn=dsn).returncode == 0
    assert LAST.version in ledger(dsn)
    done = run_syncd("--rescan", "--root", str(root), dsn=dsn)
    assert done.returncode == 0, done.stderr[-2000:]


def test_an_object_dropped_by_hand_names_its_migration_and_the_way_back(
    server: SupabaseServer, database: str, root: Path
) -> None:
    """The ledger says applied but a column of that migration is gone: every command exits 4
    naming the migration, the missing column and the commands that repair it; those
    commands, run as printed, do."""
    dsn = server.dsn(database)
    column = next(name for name in LAST.provides if name.count(".") == 2)
    schema, table, name = column.split(".")
    with psycopg.connect(dsn) as conn:
        conn.execute(f"alter table {schema}.{table} drop column {name}")
    done = run_syncd("--rescan", "--root", str(root), dsn=dsn)
    assert done.returncode == FATAL_DB, done.stderr[-2000:]
    assert f"migration {LAST.file_name} is recorded as applied but {column}" in done.stderr
    assert f"`syncd migrate --rollback-to {BEFORE_LAST.version}` then `syncd migrate`" in (
        done.stderr
    )
    status = run_syncd("migrate", "--status", dsn=dsn)
    assert status.returncode == FATAL_DB
    assert f"applied, missing {column}" in status.stdout

    back = run_syncd("migrate", "--rollback-to", BEFORE_LAST.version, dsn=dsn)
    assert back.returncode == 0, back.stderr
    assert ledger(dsn)[-1] == BEFORE_LAST.version
    assert run_syncd("migrate", dsn=dsn).returncode == 0
    done = run_syncd("--rescan", "--root", str(root), dsn=dsn)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_version_from_a_newer_syncd_is_listed_and_refused(
    server: SupabaseServer, database: str, root: Path
) -> None:
    dsn = server.dsn(database)
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "insert into syncd.schema_migrations (version, name, checksum)"
            " values ('20991231000000', 'from_the_future', 'x')"
        )
    status = run_syncd("migrate", "--status", dsn=dsn)
    assert status.returncode == FATAL_DB
    line = next(line for line in status.stdout.splitlines() if "20991231000000" in line)
    assert "from_the_future" in line and "unknown: not in this syncd" in line
    for command in (("--rescan", "--root", str(root)), ("report",)):
        done = run_syncd(*command, dsn=dsn)
        assert done.returncode == FATAL_DB, done.stderr[-2000:]
        assert "migrated by a newer syncd: 20991231000000_from_the_future" in done.stderr
    back = run_syncd("migrate", "--rollback", dsn=dsn)  # not this syncd's to revert
    assert back.returncode != 0
    assert "a newer syncd applied it" in back.stderr
    assert "20991231000000" in ledger(dsn)


def test_rollback_and_rollback_to_keep_the_ledger_true(
    server: SupabaseServer, database: str
) -> None:
    dsn = server.dsn(database)
    done = run_syncd("migrate", "--rollback", dsn=dsn)
    assert done.returncode == 0, done.stderr
    assert ledger(dsn) == [m.version for m in MIGRATIONS[:-1]]
    assert "migration rolled back" in done.stderr and LAST.version in done.stderr

    third = MIGRATIONS[2].version
    done = run_syncd("migrate", "--rollback-to", third, dsn=dsn)
    assert ledger(dsn) == [m.version for m in MIGRATIONS[:3]], done.stderr
    bogus = run_syncd("migrate", "--rollback-to", "20000101000000", dsn=dsn)
    assert bogus.returncode != 0 and "no migration with version 20000101000000" in bogus.stderr
    assert run_syncd("migrate", dsn=dsn).returncode == 0
    assert ledger(dsn) == [m.version for m in MIGRATIONS]
