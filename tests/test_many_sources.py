"""Dozens of sources on one project (issue 17, item 3): 20 daemons, each with its own root
and source, all writing through one transaction pooler (PgBouncer in transaction mode, as
Supabase's port 6543) whose server pool holds 5 connections, in front of the Supabase-shaped
PostgreSQL 15."""

from __future__ import annotations

import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from tests.conftest import SupabaseServer
from tests.daemon_harness import DaemonProcess, run_syncd
from tests.helpers import atomic_write, landed, lesson_text, make_course
from tests.pgbouncer import TROUBLE, Bouncer, ServerConnections, require_pgbouncer

SOURCES = 20
COURSES, LESSONS = 2, 3  # per root: each course is an outline, a module and 3 lessons
POOL = 5  # the pooler's server connections for syncd_writer's pool
WORKERS = "2"  # per daemon: 40 client connections at most, 8 for each server connection
# a full reconcile every 2 s: each daemon looks at the other sources' courses again and again
DAEMON_ARGS = ("--workers", WORKERS, "--reconcile-interval", "2")


@pytest.fixture
def pooler(supabase15: SupabaseServer) -> Iterator[Bouncer]:
    require_pgbouncer()
    bouncer = Bouncer(supabase15.cluster.socket_dir, "transaction", pool_size=POOL)
    bouncer.start()
    try:
        yield bouncer
    finally:
        bouncer.close()


@pytest.fixture
def project(supabase15: SupabaseServer) -> Iterator[str]:
    """One migrated Supabase-shaped database; syncd_writer may log in."""
    name = supabase15.create_database()
    with psycopg.connect(supabase15.admin_dsn(), autocommit=True) as conn:
        conn.execute("alter role syncd_writer login password 'writer-test-secret'")
    try:
        yield name
    finally:
        supabase15.drop_database(name)


def source_name(i: int) -> str:
    return f"machine-{i:02d}"


def lesson_files(root: Path) -> list[tuple[Path, int, int]]:
    found = []
    for path in sorted(root.glob("*/lessons/*.md")):
        m, n = re.match(r"(\d+)\.(\d+)-", path.name).groups()  # type: ignore[union-attr]
        found.append((path, int(m), int(n)))
    return found


def edit_every_lesson(root: Path, tag: str) -> list[str]:
    """Each lesson of ``root`` rewritten once (an atomic rename), with a token of its own."""
    tokens = []
    for path, m, n in lesson_files(root):
        token = f"{tag}-{uuid.uuid4().hex[:8]}"
        atomic_write(path, lesson_text(m, n, token))
        tokens.append(token)
    return tokens


def reconciled_since(daemon: DaemonProcess, moment: float) -> bool:
    """Has a full reconcile that started after ``moment`` (wall clock) finished? One runs at
    a time: its `reconcile finished` is the first one after its `reconcile started`."""
    passes = [
        (e["event"], datetime.fromisoformat(e["timestamp"]).timestamp())
        for e in list(daemon.events)
        if e.get("event") in ("reconcile started", "reconcile finished")
    ]
    later = [
        i for i, (event, at) in enumerate(passes) if event == "reconcile started" and at > moment
    ]
    return bool(later) and any(event == "reconcile finished" for event, _ in passes[later[0] :])


def test_twenty_sources_converge_through_one_transaction_pooler_of_five_connections(
    pooler: Bouncer,
    project: str,
    supabase15: SupabaseServer,
    tmp_path: Path,
    daemons: list[DaemonProcess],
) -> None:
    """20 daemons start at once, each on its own root (2 courses) and source, through a
    transaction pooler with 5 server connections; every lesson of every root is edited at
    the same moment while they start, and twice more once they are ready: every last edit
    lands, `verify` (20 more clients, while the daemons run) exits 0 for each root, no
    daemon fails a course, exits or logs a deadlock or a connection limit, each course
    belongs to its own root's source, nothing is archived or deleted, and PostgreSQL never
    sees more than 5 connections of syncd's."""
    admin = supabase15.admin_dsn(project)
    writer = pooler.dsn(project, "syncd_writer")
    roots = []
    for i in range(SOURCES):
        root = tmp_path / f"m{i:02d}" / "courses"
        for c in range(COURSES):
            make_course(root, f"m{i:02d}-course-{c}", lessons=LESSONS)
        roots.append(root)

    def own(i: int) -> list[str]:
        """What ties a command to root i: its source and its own health file."""
        health = tmp_path / f"m{i:02d}" / "health.json"
        return ["--source", source_name(i), "--health-file", str(health)]

    def edit_all(tag: str) -> list[str]:
        with ThreadPoolExecutor(SOURCES) as pool:  # every root edited at the same moment
            batches = pool.map(
                edit_every_lesson, roots, [f"{tag}-m{i:02d}" for i in range(SOURCES)]
            )
            return [token for batch in batches for token in batch]

    started = time.monotonic()
    with ServerConnections(admin, project, "syncd_writer", pooler) as server:
        for i, root in enumerate(roots):  # Popen returns at once: they all start together
            daemons.append(DaemonProcess(root, writer, *DAEMON_ARGS, *own(i)))
        edit_all("starting")  # while they start: their first reconcile or their watch sees it
        for daemon in daemons:
            daemon.wait_event("daemon ready", timeout=60)
        ready_s = time.monotonic() - started
        edit_all("first")
        time.sleep(0.3)  # the first edits are being synced when the second come
        tokens = edit_all("second")  # the last of every lesson: each must be in its row
        assert len(tokens) == SOURCES * COURSES * LESSONS

        deadline = time.monotonic() + 60
        while missing := set(tokens) - landed(admin, tokens):
            for daemon in daemons:  # a daemon that exits fails the wait at once, with its log
                assert daemon.proc.poll() is None, daemon.output()[-4000:]
            assert time.monotonic() < deadline, f"{len(missing)} edit(s) never landed"
            time.sleep(0.2)

        landed_s = time.monotonic() - started - ready_s
        # every course of every source is in the database now: a full reconcile that starts
        # later sees them all (a source archiving another's would then). Told by the time of
        # its `reconcile started` line, not by counting lines: the reader may not have read
        # the last ones yet, and a count taken now could name a reconcile already under way.
        landed_at = time.time()

        def verify(i: int) -> subprocess.CompletedProcess[str]:
            return run_syncd("verify", "--root", str(roots[i]), *own(i), dsn=writer)

        with ThreadPoolExecutor(SOURCES) as pool:  # 20 more clients while the daemons run
            verified = list(pool.map(verify, range(SOURCES)))
        for daemon in daemons:
            daemon.wait_for(
                lambda daemon=daemon: reconciled_since(daemon, landed_at),
                timeout=30,
                what="a full reconcile started after every edit landed, finished",
            )

    for i, done in enumerate(verified):
        assert done.returncode == 0, f"{source_name(i)}: {done.stdout}{done.stderr[-3000:]}"
        assert not TROUBLE.search(done.stderr), done.stderr[-3000:]
    for daemon in daemons:
        assert daemon.proc.poll() is None, daemon.output()[-4000:]
        assert not TROUBLE.search(daemon.output()), daemon.output()[-4000:]
        assert not daemon.named("course failed"), daemon.named("course failed")
        assert not daemon.named("course archived"), daemon.named("course archived")
        assert all(e["archived"] == 0 for e in daemon.named("reconcile finished"))
    assert not TROUBLE.search(pooler.log), pooler.log[-3000:]

    with psycopg.connect(admin) as conn:
        owners = conn.execute(
            "select course, source, archived_at from syncd.courses order by course"
        ).fetchall()
        archived = conn.execute(
            "select count(*) from public.content_projects where status = 'archived'"
        ).fetchone()
        deleted = conn.execute(
            "select count(*) filter (where deleted_at is not null), count(*) from public.contents"
        ).fetchone()
    assert owners == [
        (f"m{i:02d}-course-{c}", source_name(i), None)
        for i in range(SOURCES)
        for c in range(COURSES)
    ]
    assert archived == (0,)
    assert deleted == (0, SOURCES * COURSES * (LESSONS + 2))

    assert server.samples > 100, server.samples  # it watched the whole run
    assert 1 <= server.most_open <= POOL, server.most_open
    # the clients: each daemon at most --workers, each verify one at a time (docs/supabase.md)
    assert server.most_clients <= SOURCES * int(WORKERS) + SOURCES, server.most_clients
    print(  # -s shows what it took
        f"all ready {ready_s:.1f} s, edits landed {landed_s:.1f} s later; server connections:"
        f" at most {server.most_open} open, {server.most_busy} in use; clients at most"
        f" {server.most_clients}, {server.most_waiting} waiting ({server.samples} samples)"
    )

    # one SIGTERM each, all at once (a second one could land in the interpreter's exit,
    # after Python gave its handlers up, and end the process with -15)
    for daemon in daemons:
        daemon.proc.terminate()
    for daemon in daemons:
        assert daemon.proc.wait(timeout=30) == 0, daemon.output()[-4000:]
