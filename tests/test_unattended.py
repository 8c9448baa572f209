"""Weeks unattended (issue 16): no crash loop, no stall behind one lock, the cause of an
outage said, a stop that fits the unit. A real daemon, a real PostgreSQL, a real tree."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from syncd.exits import ExitCode
from tests.conftest import Server
from tests.daemon_harness import DaemonProcess, run_syncd
from tests.helpers import lesson_text, make_course, write
from tests.proxy import proxy_in_front_of
from tests.test_daemon import documented_alerts, run_alert

WAIT_S = 60.0

REFUSE_ARCHIVE = """
create function refuse_archive() returns trigger language plpgsql as $$
begin
  if new.status = 'archived' then raise exception 'archive refused by policy'; end if;
  return new;
end $$;
create trigger refuse_archive before update on content_projects
  for each row execute function refuse_archive();
"""


def start(daemons: list[DaemonProcess], root: Path, dsn: str, *args: str) -> DaemonProcess:
    daemon = DaemonProcess(root, dsn, *args)
    daemons.append(daemon)
    return daemon


def lesson_body(dsn: str, path: str) -> str | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select content from contents where file_path = %s and deleted_at is null", (path,)
        ).fetchone()
    return None if row is None else str(row[0])


def wait_for_body(dsn: str, path: str, text: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = lesson_body(dsn, path)
        if body is not None and text in body:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never held {text!r} (has {lesson_body(dsn, path)!r})")


def edit(root: Path, course: str, marker: str) -> str:
    path = f"{course}/lessons/1.1-lesson-1-1.md"
    write(root / path, lesson_text(1, 1, marker))
    return path


def test_a_refused_archive_in_the_first_reconcile_does_not_end_the_daemon(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    """A course folder removed while a trigger refuses its archive (P0001): the writer
    crashed (exit 7) and systemd restarted it into the same crash."""
    root = tmp_path / "courses"
    for name in ("kept", "gone"):
        make_course(root, name)
    first = run_syncd("--rescan", "--root", str(root), dsn=db_dsn, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    with psycopg.connect(db_dsn) as conn:
        conn.execute(REFUSE_ARCHIVE)
    shutil.rmtree(root / "gone")

    daemon = start(daemons, root, db_dsn)
    refused = daemon.wait_event("course rejected")
    assert refused["course"] == "gone" and refused["sqlstate"] == "P0001"
    assert "archive refused by policy" in refused["reason"]
    daemon.wait_event("daemon ready")
    path = edit(root, "kept", "after the refusal")
    wait_for_body(db_dsn, path, "after the refusal")  # everything else goes on

    with psycopg.connect(db_dsn) as conn:
        conn.execute("drop trigger refuse_archive on content_projects")
    daemon.wait_event("course recovered", timeout=WAIT_S)  # retried on its own back-off
    with psycopg.connect(db_dsn) as conn:
        status = conn.execute("select status from content_projects where slug = 'gone'").fetchone()
    assert status == ("archived",)
    assert daemon.terminate() == 0
    assert not daemon.named("writer crashed") and not daemon.named("course sync crashed")


def test_a_row_locked_in_the_app_stalls_only_its_own_course(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    """A project row held FOR UPDATE by another session: three statement timeouts opened
    the breaker and every course waited for the lock; health said "unreachable"."""
    root = tmp_path / "courses"
    for name in ("locked", "free-a", "free-b"):
        make_course(root, name)
    health_file = tmp_path / "health.json"
    daemon = start(
        daemons,
        root,
        db_dsn,
        "--statement-timeout-ms",
        "3000",  # lock_timeout 1 s
        "--health-file",
        str(health_file),
    )
    daemon.wait_event("daemon ready", timeout=WAIT_S)
    release = threading.Event()
    locked = threading.Event()

    def hold_lock() -> None:
        with psycopg.connect(db_dsn) as conn:
            conn.execute("select * from content_projects where slug = 'locked' for update")
            locked.set()
            release.wait(WAIT_S * 2)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(10)
        stuck_path = edit(root, "locked", "while locked")
        for round_ in range(3):  # edits to the other courses keep landing meanwhile
            for name in ("free-a", "free-b"):
                wait_for_body(db_dsn, edit(root, name, f"edit {round_}"), f"edit {round_}", 20)
            daemon.wait_event("course failed", count=round_ + 1)
        failed = daemon.named("course failed")[0]
        assert failed["course"] == "locked" and failed["sqlstate"] == "55P03"
        assert failed["kind"] == "busy"
        # the heartbeat and the health file name it, with how long
        daemon.wait_for(
            lambda: any(
                e.get("failing") and "locked" in e["failing"][0] for e in daemon.named("heartbeat")
            ),
            what="a heartbeat naming the stuck course",
        )

        # the file is rewritten every few seconds, not with each heartbeat: waited for
        def health_state() -> dict[str, Any]:
            loaded: dict[str, Any] = json.loads(health_file.read_text(encoding="utf-8"))
            return loaded

        daemon.wait_for(
            lambda: any(f["course"] == "locked" for f in health_state()["failing"]),
            what="the health file naming the stuck course",
        )
        state = health_state()
        assert [f["course"] for f in state["failing"]] == ["locked"]
        assert state["breaker"] == "closed"
        assert not daemon.named("breaker opened")
        log = tmp_path / "syncd.log"
        log.write_text(daemon.output(), encoding="utf-8")
        alert = documented_alerts()[
            "a course stuck or refused on its own (a lock held in the app, a trigger): the others go on"
        ]
        assert run_alert(alert, log)[0].startswith("locked: ")
    finally:
        release.set()
        holder.join()
    wait_for_body(db_dsn, stuck_path, "while locked")
    daemon.wait_event("course recovered")
    assert daemon.terminate() == 0


@pytest.fixture
def password_role(pg_server: Server, db_dsn: str) -> Iterator[tuple[str, str, str]]:
    """A LOGIN member of syncd_writer whose password the server checks (scram), as a
    Supabase project does: (role, password, its DSN). The suite's servers trust local
    connections, so a line for this role alone goes first in pg_hba.conf."""
    assert pg_server.data_dir is not None, "needs the suite's own server (pg_hba.conf)"
    role, password = f"syncd_rot_{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    hba = pg_server.data_dir / "pg_hba.conf"
    original = hba.read_text(encoding="utf-8")
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(f"create role {role} login password '{password}' in role syncd_writer")
        hba.write_text(f"local all {role} scram-sha-256\n{original}", encoding="utf-8")
        conn.execute("select pg_reload_conf()")
    try:
        yield role, password, make_conninfo(db_dsn, user=role, password=password)
    finally:
        hba.write_text(original, encoding="utf-8")
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            conn.execute("select pg_reload_conf()")
            conn.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity where usename = %s",
                (role,),
            )
            conn.execute(f"drop owned by {role}")
            conn.execute(f"drop role {role}")


def test_a_password_rotated_while_running_is_said_and_ends_the_daemon_after_the_grace(
    tmp_path: Path,
    db_dsn: str,
    password_role: tuple[str, str, str],
    daemons: list[DaemonProcess],
) -> None:
    """A password rotated while syncd runs: its own events said only "no connection
    available" and `breaker opened`, for ever, with the watchdog fed."""
    role, password, role_dsn = password_role
    root = tmp_path / "courses"
    make_course(root, "c1")
    health_file = tmp_path / "health.json"
    daemon = start(
        daemons,
        root,
        role_dsn,
        "--connect-timeout",
        "1",
        "--auth-grace",
        "10",
        "--health-file",
        str(health_file),
    )
    daemon.wait_event("daemon ready", timeout=WAIT_S)
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute(f"alter role {role} password 'rotated-{uuid.uuid4().hex}'")
        # Until none is left: a pooled connection still logging in when the password
        # changed is not yet listed under the role, and would survive one pass.
        deadline = time.monotonic() + WAIT_S
        while conn.execute(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where usename = %s or (backend_type = 'client backend' and usename is null)",
            (role,),
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the old sessions would not go"
            time.sleep(0.1)
    edit(root, "c1", "after the rotation")
    said = daemon.wait_event("database authentication failed", timeout=WAIT_S)
    assert "password authentication failed" in said["reason"]
    assert said["exits_in_s"] > 0

    def away_for_the_password() -> bool:
        state = json.loads(health_file.read_text(encoding="utf-8"))
        return bool(state["breaker_kind"] == "auth" and state["unreachable_since"] is not None)

    # the kind of the last failure is written as soon as it happens; the breaker opens
    # after a few of them (slower under load): the verdict is about the second
    daemon.wait_for(away_for_the_password, what="the health file saying why")
    verdict = run_syncd(
        "health",
        "--health-file",
        str(health_file),
        "--unreachable-after",
        "0",
        dsn=db_dsn,
        timeout=30,
    )
    assert verdict.returncode == ExitCode.UNHEALTHY
    assert "database rejects syncd's password" in verdict.stdout
    assert daemon.wait_exit(timeout=WAIT_S) == ExitCode.FATAL_DB  # after --auth-grace
    stopped = daemon.named("daemon stopped")[-1]
    assert stopped["exit_code"] == ExitCode.FATAL_DB
    assert stopped["unsynced"] == 1  # the edit after the rotation never landed: said so
    assert password not in daemon.output()
    log = tmp_path / "syncd.log"
    log.write_text(daemon.output(), encoding="utf-8")
    alert = documented_alerts()[
        "the database rejects syncd's password (rotated?): the daemon exits 4 after --auth-grace"
    ]
    assert run_alert(alert, log), "the documented password alert did not fire"


def test_a_rejected_password_at_start_is_its_own_event_and_exit_4(
    tmp_path: Path, password_role: tuple[str, str, str]
) -> None:
    _role, password, role_dsn = password_role
    wrong = make_conninfo(role_dsn, password=f"wrong-{password}")
    root = tmp_path / "courses"
    make_course(root, "c1")
    done = run_syncd("--root", str(root), dsn=wrong, timeout=120)
    assert done.returncode == ExitCode.FATAL_DB
    events = [
        json.loads(line)
        for line in done.stderr.splitlines() + done.stdout.splitlines()
        if line.startswith("{")
    ]
    (said,) = [e for e in events if e["event"] == "database authentication failed"]
    assert "password authentication failed" in said["reason"]
    assert password not in done.stdout + done.stderr


def test_a_copy_and_a_rename_of_one_course_at_once_neither_crash_nor_archive_it(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    """`cp -r O Y; mv O X`: both new folders took O as their rename; the second raised
    KeyError and the daemon ended (exit 7); a rename was followed by `course archived`."""
    root = tmp_path / "courses"
    for i in range(3):
        make_course(root, f"orig-{i}")
    daemon = start(daemons, root, db_dsn, "--workers", "4")
    daemon.wait_event("daemon ready", timeout=WAIT_S)
    with psycopg.connect(db_dsn) as conn:
        ids = dict(conn.execute("select slug, id from content_projects").fetchall())
    for i in range(3):
        shutil.copytree(root / f"orig-{i}", root / f"copy-{i}")
        os.rename(root / f"orig-{i}", root / f"moved-{i}")
    daemon.wait_event("course renamed", count=3, timeout=WAIT_S)
    daemon.wait_for(
        lambda: len({e["course"] for e in daemon.named("course synced")} & _names()) == 6,
        what="every copy and every moved course synced",
    )
    assert daemon.proc.poll() is None
    assert not daemon.named("course archived"), daemon.named("course archived")
    with psycopg.connect(db_dsn) as conn:
        live = conn.execute(
            "select count(*) from content_projects where status <> 'archived'"
        ).fetchone()
    assert live == (6,)
    with psycopg.connect(db_dsn) as conn:  # `mv` keeps the folder's inode: X is O, Y a copy
        after = dict(conn.execute("select slug, id from content_projects").fetchall())
    assert [after[f"moved-{i}"] for i in range(3)] == [ids[f"orig-{i}"] for i in range(3)]
    assert not daemon.named("row repaired"), daemon.named("row repaired")
    assert daemon.terminate() == 0


def _names() -> set[str]:
    return {f"{kind}-{i}" for kind in ("copy", "moved") for i in range(3)}


def test_ctrl_c_says_130_in_the_last_log_line(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    root = tmp_path / "courses"
    make_course(root, "c1")
    daemon = start(daemons, root, db_dsn)
    daemon.wait_event("daemon ready", timeout=WAIT_S)
    daemon.proc.send_signal(signal.SIGINT)
    assert daemon.proc.wait(timeout=WAIT_S) == ExitCode.INTERRUPTED
    daemon.wait_event("daemon stopped")
    assert daemon.named("daemon stopped")[-1]["exit_code"] == 130


def test_the_stop_fits_the_shutdown_timeout_with_a_database_call_hanging(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    """The stop could spend --shutdown-timeout on the join, again on the flush, and more:
    up to 55 s against the unit's TimeoutStopSec=45. Now one budget: --shutdown-timeout,
    then a few seconds to close (STOP_TAIL_S)."""
    proxy, through_proxy = proxy_in_front_of(db_dsn)
    root = tmp_path / "courses"
    make_course(root, "c1")
    try:
        daemon = start(daemons, root, through_proxy, "--shutdown-timeout", "3")
        daemon.wait_event("daemon ready", timeout=WAIT_S)
        proxy.deafen()  # every call from now on hangs until its client deadline (65 s)
        edit(root, "c1", "never lands")
        daemon.wait_for(
            lambda: any(e.get("pending") for e in daemon.named("heartbeat")),
            what="the edit pending",
        )
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        code = daemon.proc.wait(timeout=WAIT_S)
        took = time.monotonic() - started
        daemon.wait_exit()  # and its last lines read
    finally:
        proxy.close()
    assert code == 0
    # --shutdown-timeout 3 + STOP_TAIL_S 4, with room for a loaded machine; far below 45 s
    assert took < 15, took
    stopped = daemon.named("daemon stopped")[-1]
    assert stopped["unsynced"] == 1


def test_a_trigger_with_a_bug_refuses_its_course_not_syncd(tmp_path: Path, db_dsn: str) -> None:
    """An undefined column inside a trigger (42703, class 42) was taken for syncd's own
    schema or privileges: exit 4, which the unit never restarts, for every course."""
    root = tmp_path / "courses"
    for name in ("broken", "fine"):
        make_course(root, name)
    with psycopg.connect(db_dsn) as conn:
        conn.execute("""
            create function audit_broken() returns trigger language plpgsql as $$
            begin
              if new.file_path like 'broken/%' then
                perform no_such_column from content_projects;
              end if;
              return new;
            end $$;
            create trigger audit_broken before insert on contents
              for each row execute function audit_broken();""")
    done = run_syncd("--rescan", "--root", str(root), dsn=db_dsn, timeout=120)
    assert done.returncode == ExitCode.DRIFT, done.stdout + done.stderr
    assert "broken" in done.stderr and "42703" in done.stderr
    with psycopg.connect(db_dsn) as conn:
        synced = conn.execute(
            "select count(*) from contents where file_path like 'fine/%' and deleted_at is null"
        ).fetchone()
    assert synced == (4,)  # its module and its three lessons


def test_an_edit_in_a_folder_that_is_not_a_course_leaves_nothing_pending(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    """Operator trial: an edit under a non-course folder (the corpus's `no-migration/`) was
    rescheduled every 2 s for ever as a vanished course waiting for its rename: pending 1,
    the lag alert firing, and each phantom job told the breaker the database was fine."""
    root = tmp_path / "courses"
    make_course(root, "c1")
    notes = write(root / "notes" / "log.md", "# notes\n")
    daemon = start(daemons, root, db_dsn)
    daemon.wait_event("daemon ready", timeout=WAIT_S)
    notes.write_text("# notes\n\nmore\n", encoding="utf-8")
    time.sleep(0.2)  # the notes' job is due first (50 ms after its close)
    path = edit(root, "c1", "after the notes")
    wait_for_body(db_dsn, path, "after the notes")
    seen = len(daemon.named("heartbeat"))
    daemon.wait_event("heartbeat", count=seen + 3, timeout=WAIT_S)
    last = daemon.named("heartbeat")[-2:]
    assert [(h["pending"], h["lag_s"]) for h in last] == [(0, 0.0), (0, 0.0)], last
    assert daemon.terminate() == 0
    assert daemon.named("daemon stopped")[-1]["unsynced"] == 0
