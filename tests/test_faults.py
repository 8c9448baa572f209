"""Fault injection: kills, crashes, silent networks, read-only databases, a vanishing tree,
concurrent writers and a second daemon. Every scenario ends with `syncd verify` exiting 0
and no duplicate or orphan rows."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.conftest import Server
from tests.daemon_harness import REPO, DaemonProcess, run_syncd, syncd_env
from tests.helpers import lesson_text, make_course, make_tree, write
from tests.proxy import proxy_in_front_of

pytestmark = pytest.mark.fault


syncd = run_syncd


def converge(root: Path, dsn: str, within: float = 60) -> None:
    """`syncd verify` exits 0 within ``within`` seconds, and the rows are sound."""
    deadline = time.monotonic() + within
    while True:
        result = syncd("verify", "--root", str(root), dsn=dsn)
        if result.returncode == 0:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no convergence within {within}s:\n{result.stdout[-3000:]}")
        time.sleep(1)
    assert_sound(dsn)


def assert_sound(dsn: str) -> None:
    checks = {
        "duplicate live file rows": """select file_path from contents where deleted_at is null
            and file_path is not null group by file_path having count(*) > 1""",
        "duplicate modules": """select project_id, sequence_order from contents where deleted_at is null
            and content_type = 'course_module' group by 1, 2 having count(*) > 1""",
        "duplicate outlines": """select project_id from contents where deleted_at is null
            and content_type = 'course_outline' group by 1 having count(*) > 1""",
        "lesson without a live parent": """select l.id from contents l left join contents p
            on p.id = l.parent_content_id where l.deleted_at is null and l.content_type = 'course_lesson'
            and (p.id is null or p.deleted_at is not null or p.project_id <> l.project_id)""",
        "row without a project": "select id from contents where project_id is null",
        "bookkeeping of another project": """select r.content_id from syncd.rows r join contents c
            on c.id = r.content_id where c.project_id <> r.project_id""",
    }
    with psycopg.connect(dsn) as conn:
        for name, sql in checks.items():
            assert conn.execute(sql).fetchall() == [], name


def start(daemons: list[DaemonProcess], root: Path, dsn: str, *args: str) -> DaemonProcess:
    daemon = DaemonProcess(root, dsn, *args)
    daemons.append(daemon)
    return daemon


def test_sigkill_at_ten_random_moments_of_a_5000_lesson_backfill_converges(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    root = tmp_path / "courses"
    make_tree(root, 5000)
    rng = random.Random(20261126)
    for _ in range(10):
        daemon = start(daemons, root, db_dsn)
        daemon.wait_event("reconcile started", timeout=60)
        time.sleep(rng.uniform(0.0, 1.5))
        daemon.kill()
    final = start(daemons, root, db_dsn)
    final.wait_event("daemon ready", timeout=180)
    assert final.terminate() == 0
    converge(root, db_dsn)
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute(
            "select count(*) from contents where content_type = 'course_lesson'"
        ).fetchone() == (5000,)


@pytest.fixture
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """A server of this test's own, so that it can be crashed without hurting others."""
    folder = tmp_path_factory.mktemp("crash-pg")
    folder.chmod(0o755)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(folder / "pgdata", cleanup_mode="delete")
    admin = server.get_uri()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("create database crash")
    with psycopg.connect(make_conninfo(admin, dbname="crash")) as conn:
        from syncd import migrate

        migrate.apply_pending(conn)
    try:
        yield server, make_conninfo(admin, dbname="crash")
    finally:
        server.cleanup()


def test_an_immediate_server_crash_mid_transaction_never_shows_a_partial_course(
    tmp_path: Path, own_server: tuple[Any, str]
) -> None:
    import pgserver

    server, dsn = own_server
    root = tmp_path / "courses"
    make_tree(root, 3000, per_course=3000)  # one course, one big transaction
    for lesson in (root / "gen-00000/lessons").iterdir():
        lesson.write_text(lesson.read_text(encoding="utf-8") + "filler " * 800, encoding="utf-8")
    seen: set[int] = set()
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                with psycopg.connect(dsn, connect_timeout=1) as conn:
                    while not stop.is_set():
                        seen.add(conn.execute("select count(*) from contents").fetchone()[0])  # type: ignore[index]
                        time.sleep(0.01)
            except psycopg.OperationalError:
                time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    env = syncd_env(dsn)
    rescan = subprocess.Popen(
        [sys.executable, "-m", "syncd", "--rescan", "--root", str(root)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                writing = conn.execute("""select count(*) from pg_stat_activity
                    where application_name = 'syncd' and state = 'active'
                      and query ilike '%%insert into public.contents%%'""").fetchone()
                if writing and writing[0]:
                    break
                time.sleep(0.005)
            else:
                raise AssertionError("the course transaction never started")
        user = "pgserver" if os.geteuid() == 0 else None
        pgserver.pg_ctl(["-m", "immediate", "-w", "stop"], pgdata=server.pgdata, user=user)
        assert rescan.wait(timeout=60) == 3  # database unreachable
        with server._lock:  # pgserver's own restart path: a stale postmaster.pid is handled
            server.ensure_postgres_running()
        time.sleep(0.5)
    finally:
        if rescan.poll() is None:
            rescan.kill()
        stop.set()  # a failure above must not leave the watcher polling forever
        watcher.join(timeout=10)
    assert 0 in seen, "the watcher never read the table while the course was written"
    assert seen <= {0}, f"a partly written course was visible: {sorted(seen)}"
    assert syncd("--rescan", "--root", str(root), dsn=dsn).returncode == 0
    converge(root, dsn)


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_a_proxy_that_stops_answering_opens_the_breaker_without_piling_up(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    proxy, through_proxy = proxy_in_front_of(db_dsn)
    root = tmp_path / "courses"
    make_tree(root, 60)
    try:
        daemon = start(
            daemons,
            root,
            through_proxy,
            "--quiet-ms",
            "100",
            "--breaker-reset",
            "1",
            "--breaker-failures",
            "2",
            "--statement-timeout-ms",
            "1000",
            "--connect-timeout",
            "1",
        )
        daemon.wait_event("daemon ready", timeout=60)
        threads, fds = _threads(daemon.proc.pid), _fds(daemon.proc.pid)
        proxy.deafen()
        samples = []
        for n in range(30):  # 15 s of edits against a silent database
            write(root / f"gen-0000{n % 3}/lessons/4.{n + 1}-deaf.md", lesson_text(4, n + 1))
            samples.append((_threads(daemon.proc.pid), _fds(daemon.proc.pid)))
            time.sleep(0.5)
        daemon.wait_event("breaker opened", timeout=60)
        assert daemon.named("database call timed out") or daemon.named("database unavailable")
        # bounded, whatever the time: the pool holds at most workers + 1 connections, its 3
        # reconnect workers may each have a connect attempt in flight, and a deadline briefly
        # dups a socket; threads: the course workers and the deadline thread. A pile-up
        # (a thread or socket per attempt) would grow past this within the 15 s.
        workers, pool_workers = 4, 3
        assert max(t for t, _ in samples) <= threads + workers + 2, (
            f"threads piled up: {threads} -> {samples}"
        )
        assert max(f for _, f in samples) <= fds + workers + 1 + pool_workers + 2, (
            f"connections piled up: {fds} -> {samples}"
        )
        proxy.heal()
        converge(root, db_dsn, within=30)
        assert daemon.terminate() == 0
    finally:
        proxy.close()


def test_a_read_only_database_is_waited_out(
    tmp_path: Path, pg_server: Server, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    root = tmp_path / "courses"
    make_tree(root, 40)
    dbname = conninfo_to_dict(db_dsn)["dbname"]
    daemon = start(daemons, root, db_dsn, "--quiet-ms", "100", "--breaker-reset", "1")
    daemon.wait_event("daemon ready", timeout=60)
    with psycopg.connect(pg_server.admin_dsn, autocommit=True) as admin:
        admin.execute(f"alter database {dbname} set default_transaction_read_only = on")
        admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = %s"
            " and application_name = 'syncd'",
            (dbname,),
        )
        write(root / "gen-00000/lessons/4.1-read-only.md", lesson_text(4, 1))
        daemon.wait_for(
            lambda: any(
                "(SQLSTATE 25006)" in e.get("reason", "")  # not a port or a pid that has it
                for e in daemon.named("database unavailable")
            ),
            timeout=30,
            what="a read-only refusal treated as transient",
        )
        assert daemon.proc.poll() is None
        admin.execute(f"alter database {dbname} reset default_transaction_read_only")
    converge(root, db_dsn, within=30)
    assert daemon.terminate() == 0


def test_a_vanished_emptied_or_unmounted_root_archives_nothing_and_resumes(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    root = tmp_path / "courses"
    make_tree(root, 60)
    daemon = start(daemons, root, db_dsn, "--quiet-ms", "100")
    daemon.wait_event("daemon ready", timeout=60)

    def archived() -> int:
        with psycopg.connect(db_dsn) as conn:
            return conn.execute(
                "select count(*) from content_projects where status = 'archived'"
            ).fetchone()[0]  # type: ignore[index]

    aside = tmp_path / "aside"
    aside.mkdir()
    for course in list(root.iterdir()):  # emptied
        course.rename(aside / course.name)
    daemon.wait_event("course root unavailable", timeout=30)
    time.sleep(1)
    assert archived() == 0
    for course in list(aside.iterdir()):
        course.rename(root / course.name)
    converge(root, db_dsn, within=30)

    root.rename(tmp_path / "gone")  # deleted (or renamed away)
    daemon.wait_event("course root unavailable", count=2, timeout=30)
    time.sleep(1)
    root.mkdir()  # "unmounted": an empty mount point in its place
    time.sleep(2)
    assert archived() == 0
    root.rmdir()
    (tmp_path / "gone").rename(root)
    daemon.wait_event("course root is back or replaced: watching it again", count=2, timeout=30)
    write(root / "gen-00001/lessons/4.1-after.md", lesson_text(4, 1))
    converge(root, db_dsn, within=30)
    assert archived() == 0
    assert daemon.terminate() == 0


def test_eight_concurrent_writers_for_a_minute_converge(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    root = tmp_path / "courses"
    make_tree(root, 200)
    daemon = start(daemons, root, db_dsn)
    daemon.wait_event("daemon ready", timeout=60)
    writers = [
        subprocess.Popen(
            [sys.executable, str(REPO / "tests/fault_writer.py"), str(root), str(seed), "60"]
        )
        for seed in range(8)
    ]
    for writer in writers:
        assert writer.wait(timeout=120) == 0
    converge(root, db_dsn, within=60)
    assert daemon.proc.poll() is None
    assert daemon.terminate() == 0


def test_two_daemons_on_one_tree_and_database(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    root = tmp_path / "courses"
    make_tree(root, 100)
    first = start(daemons, root, db_dsn, "--quiet-ms", "100")
    second = start(daemons, root, db_dsn, "--quiet-ms", "100")
    first.wait_event("daemon ready", timeout=60)
    second.wait_event("daemon ready", timeout=60)
    for n in range(5):
        make_course(root, f"both-{n}", lessons=20)
    for n in range(30):
        write(root / f"gen-0000{n % 5}/lessons/1.1-lesson-1-1.md", lesson_text(1, 1, f"edit {n}"))
        time.sleep(0.02)
    converge(root, db_dsn, within=60)
    for daemon in (first, second):
        assert daemon.terminate() == 0  # and every line it wrote read
        assert not [
            e for e in daemon.named("database unavailable") if "40P01" in e.get("reason", "")
        ]
