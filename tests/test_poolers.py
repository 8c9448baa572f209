"""syncd through Supabase's connection path (issue 17): PgBouncer in transaction mode (what
Supabase's pooler serves on port 6543) and in session mode (port 5432) in front of the
Supabase-shaped PostgreSQL 15. In transaction mode every client shares one server connection
(``default_pool_size = 1``): a prepared statement or a session setting syncd left behind
would meet the next client.

CI installs pgbouncer (.ci/run) and sets SYNCD_REQUIRE_SUPABASE_SERVERS=1: there a missing
pgbouncer fails these tests, as a missing PostgreSQL 15 does; elsewhere they are skipped."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd import migrate
from syncd.database import DbSettings, connect
from tests.conftest import SUPABASE_BARE, SupabaseServer
from tests.daemon_harness import DaemonProcess, run_syncd
from tests.helpers import atomic_write, landed, lesson_text, make_course
from tests.pgbouncer import Bouncer, require_pgbouncer
from tests.pgcluster import DEBIAN_PG15

ADVISOR = migrate.schema_dir() / "checks" / "supabase_advisor.sql"
COURSES, LESSONS = 4, 10
TIMEOUTS = ("statement_timeout", "lock_timeout")


@pytest.fixture(params=["transaction", "session"])
def bouncer(request: pytest.FixtureRequest, supabase15: SupabaseServer) -> Iterator[Bouncer]:
    require_pgbouncer()
    pooler = Bouncer(supabase15.cluster.socket_dir, request.param)
    pooler.start()
    try:
        yield pooler
    finally:
        pooler.close()


@pytest.fixture
def database(supabase15: SupabaseServer) -> Iterator[str]:
    """A Supabase project's database before syncd (no migration applied); syncd_writer
    (made by the server's earlier migrations: roles are per cluster) may log in."""
    name = supabase15.create_database(template=SUPABASE_BARE)
    with psycopg.connect(supabase15.admin_dsn(), autocommit=True) as conn:
        conn.execute("alter role syncd_writer login password 'writer-test-secret'")
    try:
        yield name
    finally:
        supabase15.drop_database(name)


def session_settings(dsn: str) -> dict[str, Any]:
    """What a new client of ``dsn`` finds in its session: the timeouts, and the prepared
    statements of the server connection it was given."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        found: dict[str, Any] = {}
        for name in ("statement_timeout", "lock_timeout"):
            row = conn.execute(f"show {name}").fetchone()
            assert row is not None
            found[name] = row[0]
        row = conn.execute("select count(*) from pg_prepared_statements").fetchone()
        found["prepared statements"] = row[0] if row else None
    return found


def assert_nothing_left(bouncer: Bouncer, server: SupabaseServer, name: str) -> None:
    """The next client of the server connection syncd used finds the role's own settings
    (as a direct connection of that role does) and no prepared statement."""
    for user in ("syncd_writer", "postgres"):
        direct = session_settings(server.dsn(name, user=user))
        assert direct["prepared statements"] == 0
        assert session_settings(bouncer.dsn(name, user)) == direct, (user, bouncer.log[-2000:])


def lessons(root: Path) -> list[tuple[Path, int, int]]:
    found = []
    for path in sorted(root.glob("*/lessons/*.md")):
        m, n = re.match(r"(\d+)\.(\d+)-", path.name).groups()  # type: ignore[union-attr]
        found.append((path, int(m), int(n)))
    return found


def test_migrate_rescan_and_verify_leave_nothing_for_the_next_client(
    bouncer: Bouncer, database: str, supabase15: SupabaseServer, tmp_path: Path
) -> None:
    """`syncd migrate` (as postgres), `--rescan` and `verify` (as syncd_writer) pass through
    either pooler on shared server connections, and the next client of those connections
    finds the role's statement_timeout and lock_timeout, not syncd's, and no prepared
    statement. docs/supabase.md's linter command works through the pooler too."""
    root = tmp_path / "courses"
    for i in range(COURSES * 2):  # more courses than psycopg's prepare threshold (5)
        make_course(root, f"course-{i}", lessons=LESSONS)
    owner, writer = bouncer.dsn(database), bouncer.dsn(database, "syncd_writer")

    done = run_syncd("migrate", dsn=owner)
    assert done.returncode == 0, done.stderr
    status = run_syncd("migrate", "--status", dsn=owner)
    assert status.returncode == 0, status.stderr
    assert "pending" not in status.stdout
    for args in (("--rescan", "--workers", "3"), ("verify",)):
        done = run_syncd(*args, "--root", str(root), "--statement-timeout-ms", "20000", dsn=writer)
        assert done.returncode == 0, f"{args}: {done.stderr[-3000:]}"
    with psycopg.connect(supabase15.admin_dsn(database)) as conn:
        count = conn.execute("select count(*) from public.contents").fetchone()
    assert count == (COURSES * 2 * (LESSONS + 3),)  # outline, 2 modules, the lessons
    assert_nothing_left(bouncer, supabase15, database)

    # docs/supabase.md, step 7: the linter check through the pooler
    linter = subprocess.run(
        [
            str(DEBIAN_PG15 / "psql"),
            owner,
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-1",
            "-c",
            "set local search_path = ''",
            "-f",
            str(ADVISOR),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert linter.returncode == 0, linter.stderr
    assert linter.stdout.strip() == "", linter.stdout  # no finding
    assert_nothing_left(bouncer, supabase15, database)


def test_the_daemon_keeps_every_edit_through_the_pooler_and_its_restart(
    bouncer: Bouncer,
    database: str,
    supabase15: SupabaseServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
) -> None:
    """Half a minute of edits, each to another lesson, with the pooler killed and started
    again halfway: the daemon keeps running, every edit lands, `verify` exits 0, and the
    next client of the server connection finds nothing of syncd's."""
    root = tmp_path / "courses"
    for i in range(COURSES):
        make_course(root, f"course-{i}", lessons=LESSONS)
    admin = supabase15.admin_dsn(database)
    owner, writer = bouncer.dsn(database), bouncer.dsn(database, "syncd_writer")
    assert run_syncd("migrate", dsn=owner).returncode == 0
    daemon = DaemonProcess(root, writer, "--workers", "2")
    daemons.append(daemon)
    daemon.wait_event("daemon ready", timeout=60)

    files = lessons(root)
    tokens: list[str] = []
    edits = 40
    for i in range(edits):
        path, m, n = files[i % len(files)]
        token = f"edit-{i}-{uuid.uuid4().hex[:8]}"
        atomic_write(path, lesson_text(m, n, token))
        tokens.append(token)
        if i == edits // 2:
            bouncer.restart(down_s=2.0)
        time.sleep(0.6)
    deadline = time.monotonic() + 60
    while (missing := set(tokens) - landed(admin, tokens)) and time.monotonic() < deadline:
        assert daemon.proc.poll() is None, daemon.output()[-4000:]
        time.sleep(0.5)
    assert not missing, f"{len(missing)} edit(s) never landed\n{daemon.output()[-4000:]}"
    assert daemon.proc.poll() is None, daemon.output()[-4000:]
    # it was felt (logged before the edits after it landed; waited for, as the harness reads
    # a line a moment after it is written)
    daemon.wait_for(
        lambda: bool(daemon.named("database unavailable")), what="the restart felt by the daemon"
    )

    done = run_syncd("verify", "--root", str(root), dsn=writer)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert daemon.terminate() == 0, daemon.output()[-4000:]
    assert_nothing_left(bouncer, supabase15, database)


def test_syncds_timeouts_hold_in_its_transactions_and_nowhere_else(db_dsn: str) -> None:
    """Inside each transaction syncd runs (plain, pipelined, with savepoints) its
    statement_timeout and lock_timeout apply; outside it the session has the role's own, and
    the connection makes no server-side prepared statement however often a query runs."""
    settings = DbSettings(db_dsn, statement_timeout_ms=4500)
    with psycopg.connect(db_dsn, autocommit=True) as plain:
        role = [plain.execute(f"show {name}").fetchone() for name in TIMEOUTS]
    with connect(settings) as conn:

        def shown() -> list[Any]:
            return [conn.execute(f"show {name}").fetchone() for name in TIMEOUTS]

        with conn.transaction():
            assert shown() == [("4500ms",), ("1500ms",)]
            with conn.transaction():  # a savepoint: still the same transaction's
                assert shown() == [("4500ms",), ("1500ms",)]
        with conn.work():
            assert shown() == [("4500ms",), ("1500ms",)]
        assert shown() == role
        for _ in range(10):  # twice psycopg's default prepare threshold
            with conn.transaction():
                conn.execute("select 1 from syncd.courses where course = %s", ("x",))
        row = conn.execute("select count(*) from pg_prepared_statements").fetchone()
    assert row == (0,)


def test_a_pipelined_transaction_sends_nothing_after_the_server_is_idle(
    db_dsn: str, tmp_path: Path
) -> None:
    """The wire, traced by libpq: a pipelined write and a pipelined read, one that fails on
    the server and one that fails in Python. Every ReadyForQuery but each transaction's
    last says "in a transaction" (T or E); after the last (I, the moment a transaction
    pooler hands the server to another client) syncd sends nothing more of that
    transaction. (psycopg's pipeline() around transaction() sent a second, empty Sync after
    the COMMIT's; PgBouncer 1.18 dropped its answer now and then and the sync hung.)"""
    trace = tmp_path / "wire.trace"
    with connect(DbSettings(db_dsn)) as conn, trace.open("w") as sink:
        conn.pgconn.trace(sink.fileno())
        conn.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        with conn.work():
            conn.execute("create temporary table t (n int) on commit drop")
            conn.execute("insert into t values (1)")
        with conn.work(read_only=True):
            assert conn.execute("select 1").fetchone() == (1,)
            conn.execute("select 2")
        with pytest.raises(psycopg.errors.DivisionByZero), conn.work():
            conn.execute("select 1/0").fetchone()
        with pytest.raises(KeyError), conn.work():
            conn.execute("select 1")
            raise KeyError("the block failed")
        assert conn.execute("select 3").fetchone() == (3,)  # idle, usable
        conn.pgconn.untrace()
    lines = [line.split("\t") for line in trace.read_text().splitlines()]
    wire = [(parts[0], parts[2], parts[3] if len(parts) > 3 else "") for parts in lines]
    idle = [i for i, (who, what, arg) in enumerate(wire) if what == "ReadyForQuery" and "I" in arg]
    assert len(idle) == 5, wire  # four transactions and the last select
    begin = 0
    for end in idle:
        block = wire[begin : end + 1]
        sent = [what for who, what, _ in block if who == "F"]
        ready = [arg.strip() for who, what, arg in block if what == "ReadyForQuery"]
        assert sent.count("Sync") + sent.count("Query") == len(ready), block
        assert all(status in ("T", "E") for status in ready[:-1]), block
        begin = end + 1
    assert wire[begin:] == [] or all(
        who != "F" or what == "Terminate" for who, what, _ in wire[begin:]
    )
