"""Issue 11 (in part): one exit-code table for every command, and the small things an
operator meets first at the terminal."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from syncd.exits import ExitCode
from tests.daemon_harness import REPO, DaemonProcess
from tests.helpers import make_course, run_cli


def test_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "--version"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("syncd ")


@pytest.mark.parametrize("argv", [["--rescan"], ["verify"], []], ids=["rescan", "verify", "daemon"])
def test_a_missing_root_exits_5_in_every_command_and_names_the_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str, argv: list[str]
) -> None:
    run = run_cli(capsys, [*argv, "--root", str(tmp_path / "nowhere")], db_dsn)
    assert run.code == ExitCode.ROOT_UNAVAILABLE == 5
    assert "Traceback" not in run.stderr
    failed = run.named("course root unavailable")
    assert failed and "nowhere" in failed[0]["reason"]


def _tables(dsn: str) -> dict[str, int]:
    """Tables per schema, and the rows of syncd.sources (when it is there)."""
    with psycopg.connect(dsn) as conn:
        found: dict[str, int] = {
            schema: count
            for schema, count in conn.execute(
                "select table_schema, count(*) from information_schema.tables"
                " where table_schema in ('public', 'syncd') group by 1"
            )
        }
        if found.get("syncd"):
            found["sources"] = conn.execute("select count(*) from syncd.sources").fetchone()[0]
    return found


@pytest.mark.parametrize("argv", [["--rescan"], ["verify"], []], ids=["rescan", "verify", "daemon"])
def test_a_command_that_fails_on_a_missing_root_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str, argv: list[str]
) -> None:
    before = _tables(db_dsn)
    assert before["sources"] == 0
    run = run_cli(capsys, [*argv, "--root", str(tmp_path / "nowhere")], db_dsn)
    assert run.code == ExitCode.ROOT_UNAVAILABLE
    assert _tables(db_dsn) == before  # no source registered


@pytest.mark.parametrize("argv", [["--rescan"], ["verify"], []], ids=["rescan", "verify", "daemon"])
def test_a_missing_root_applies_no_migration_either(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, empty_dsn: str, argv: list[str]
) -> None:
    run = run_cli(capsys, [*argv, "--migrate", "--root", str(tmp_path / "nowhere")], empty_dsn)
    assert run.code == ExitCode.ROOT_UNAVAILABLE
    assert _tables(empty_dsn) == {}  # the database is as it was: empty


def test_an_emptied_root_does_not_touch_the_source_either(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "c", lessons=1)
    assert run_cli(capsys, ["--rescan", "--root", str(root), "--source", "s"], db_dsn).code == 0
    seen = "select last_seen from syncd.sources where name = 's'"
    with psycopg.connect(db_dsn) as conn:
        before = conn.execute(seen).fetchone()
    shutil.rmtree(root / "c")
    run = run_cli(capsys, ["--rescan", "--root", str(root), "--source", "s"], db_dsn)
    assert run.code == ExitCode.ROOT_UNAVAILABLE
    with psycopg.connect(db_dsn) as conn:
        assert conn.execute(seen).fetchone() == before


def test_a_course_the_database_refuses_makes_the_rescan_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "good", lessons=1)
    make_course(root, "refused", lessons=1)
    with psycopg.connect(db_dsn) as conn:
        conn.execute("""
            create function refuse() returns trigger language plpgsql as $$
            begin
              if new.file_path like 'refused/%' then raise exception 'no, thanks'; end if;
              return new;
            end $$;
            create trigger refuse before insert on contents for each row execute function refuse();""")
    run = run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn)
    assert run.code == ExitCode.DRIFT == 1
    assert [e["course"] for e in run.named("course rejected")] == ["refused"]
    assert "1 course(s) failed" in run.stderr and "\n  refused: " in run.stderr
    finished = run.named("reconcile finished")[0]
    assert (finished["courses"], finished["failed"]) == (2, 1)  # the failed one is a course too


def test_rejected_files_alone_leave_the_rescan_at_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    course = make_course(root, "c", lessons=2)
    (course / "lessons/1.2-lesson-1-2.md").write_text("---\n[unclosed\n---\n# x\n", "utf-8")
    run = run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn)
    assert run.code == ExitCode.OK
    assert "1 file(s) rejected:" in run.stderr
    assert run_cli(capsys, ["verify", "--root", str(root)], db_dsn).code == ExitCode.DRIFT


def test_ctrl_c_stops_the_daemon_cleanly_with_130(tmp_path: Path, db_dsn: str) -> None:
    root = tmp_path / "courses"
    make_course(root, "c", lessons=1)
    daemon = DaemonProcess(root, db_dsn)
    try:
        daemon.wait_event("daemon ready", timeout=60)
        daemon.proc.send_signal(signal.SIGINT)
        assert daemon.wait_exit(timeout=30) == ExitCode.INTERRUPTED == 130  # every line read
        assert daemon.named("daemon stopped")
    finally:
        daemon.kill()


def test_migrate_status_has_a_header_and_a_state_column(
    capsys: pytest.CaptureFixture[str], empty_dsn: str
) -> None:
    before = run_cli(capsys, ["migrate", "--status"], empty_dsn)
    lines = before.stdout.splitlines()
    assert lines[0].split() == ["version", "name", "state", "applied_at"]
    assert all(line.split()[2] == "pending" for line in lines[2:])
    assert run_cli(capsys, ["migrate"], empty_dsn).code == 0
    after = run_cli(capsys, ["migrate", "--status"], empty_dsn).stdout.splitlines()
    assert all(line.split()[2] == "applied" for line in after[2:])


def test_reports_24_hour_figures_count_updates_of_rows_created_today(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    course = make_course(root, "today", lessons=2)
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn).code == 0
    (course / "lessons/1.1-lesson-1-1.md").write_text("# Edited today\n", encoding="utf-8")
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn).code == 0
    report = run_cli(capsys, ["report"], db_dsn).stdout
    lesson_line = next(line for line in report.splitlines() if line.startswith("course_lesson"))
    assert lesson_line.split()[1:4] == ["2", "1", "0"]  # created, updated, soft-deleted


def test_a_skipped_course_says_skipped(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "same", lessons=1)
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn).code == 0
    again = run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn)
    assert again.named("course synced") == []
    assert [(e["course"], e["reason"]) for e in again.named("course skipped")] == [
        ("same", "unchanged")
    ]


def test_an_unreachable_database_names_the_server_and_the_timeout_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    root = tmp_path / "courses"
    make_course(root, "c", lessons=1)
    dsn = "postgresql://syncd:not-shown-pw@127.0.0.1:1/creatoros"
    run = run_cli(capsys, ["--rescan", "--root", str(root), "--connect-timeout", "1"], dsn)
    assert run.code == ExitCode.UNREACHABLE == 3
    reason = run.named("database unavailable")[0]["reason"]
    assert "127.0.0.1:1" in reason and "--connect-timeout 1" in reason, reason
    assert "not-shown-pw" not in run.stderr + run.stdout


class _DeadObserver:
    """An observer whose thread has died (as when watchdog's thread raises), every time."""

    def is_alive(self) -> bool:
        return False

    def stop(self) -> None:
        return None

    def join(self, timeout: float | None = None) -> None:
        return None


def test_a_watcher_that_dies_and_cannot_be_restarted_exits_6(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "c", lessons=1)
    monkeypatch.setattr("syncd.daemon.start_observer", lambda *_a, **_k: _DeadObserver())
    run = run_cli(capsys, ["--root", str(root)], db_dsn)
    assert run.code == ExitCode.WATCHER_DIED == 6
    assert [e["restarts"] for e in run.named("watcher died")] == [1, 2, 3, 4]
    assert run.named("daemon stopped")[0]["exit_code"] == 6


def test_a_writer_thread_that_crashes_exits_7(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "c", lessons=1)

    def bug(*_args: object) -> None:
        raise RuntimeError("a bug in syncd")

    # outside any course's job: the writer's own loop (a bug in one course's job is that
    # course's, see test_unattended)
    monkeypatch.setattr("syncd.debounce.Debouncer.take_due", bug)
    run = run_cli(capsys, ["--root", str(root)], db_dsn)
    assert run.code == ExitCode.WRITER_DIED == 7
    assert run.named("writer crashed")
    assert run.named("daemon stopped")[0]["exit_code"] == 7


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;?]*[ -/]*[@-~]", "", text)


def test_at_a_terminal_a_rescan_shows_a_bar_and_a_summary_not_a_line_per_course(
    tmp_path: Path, db_dsn: str
) -> None:
    import os
    import pty

    root = tmp_path / "courses"
    for i in range(12):
        make_course(root, f"c{i:02d}", lessons=2)
    pid, fd = pty.fork()
    if pid == 0:  # the child: syncd on a terminal
        os.chdir(REPO)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
        env.update({"DATABASE_URL": db_dsn, "TERM": "xterm", "COLUMNS": "120"})
        os.execve(  # noqa: S606 - the child of pty.fork becomes syncd, no shell wanted
            sys.executable, [sys.executable, "-m", "syncd", "--rescan", "--root", str(root)], env
        )
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    screen = _strip_ansi(b"".join(chunks).decode("utf-8", "replace"))
    assert os.waitstatus_to_exitcode(status) == 0, screen
    assert "rescan summary" in screen and "inserted" in screen
    assert "reconcile finished" in screen
    assert "course synced" not in screen  # per-course lines are debug at a terminal


def test_an_interrupted_rescan_says_how_far_it_got_and_that_a_rerun_resumes(
    tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    for i in range(60):
        make_course(root, f"c{i:02d}", lessons=3)
    # The pass's second batch of courses (c16 to c31: 16 a batch) waits for the lock of
    # course c16, held here until the interrupt is sent: the pass cannot end before it,
    # however late this process sees the first course synced (a machine loaded by other
    # tests: once, 60 courses were all written before the SIGINT and the rescan exited 0).
    holder = psycopg.connect(db_dsn, autocommit=True)
    holder.execute("select pg_advisory_lock(hashtextextended('syncd:course:' || 'c16', 0))")
    daemon = DaemonProcess(root, db_dsn, "--rescan", "--workers", "1")
    try:
        daemon.wait_event("course synced", timeout=60)
        daemon.proc.send_signal(signal.SIGINT)
        holder.close()
        assert daemon.proc.wait(timeout=30) == ExitCode.INTERRUPTED
        daemon.wait_event("rescan interrupted", timeout=10)
        said = daemon.named("rescan interrupted")[0]
        assert 0 < said["done"] < said["total"] == 60
        assert "resumes" in said["hint"]
    finally:
        holder.close()
        daemon.kill()
    rerun = DaemonProcess(root, db_dsn, "--rescan")
    try:
        assert rerun.proc.wait(timeout=120) == 0
        finished = rerun.wait_event("reconcile finished")
        # it resumes: exactly the courses said to be done are skipped, the rest are written
        assert finished["skipped"] == said["done"], (finished, said)
        assert finished["courses"] == 60
    finally:
        rerun.kill()


def test_a_daemon_started_on_an_emptied_root_exits_5_like_every_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """The tree is not mounted: the database has courses, the root is empty. The daemon
    used to wait there for ever without READY (systemd: a start timeout every 5 minutes)."""
    root = tmp_path / "courses"
    make_course(root, "c", lessons=1)
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn).code == 0
    for path in sorted(root.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    run = run_cli(capsys, ["--root", str(root)], db_dsn)
    assert run.code == ExitCode.ROOT_UNAVAILABLE == 5
    failed = run.named("course root unavailable")
    assert failed and "is the tree mounted?" in failed[-1]["reason"]
    assert not run.named("daemon ready")


def test_in_a_container_a_source_must_be_named(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_dsn: str
) -> None:
    marker = tmp_path / ".containerenv"
    marker.write_text("", encoding="utf-8")
    monkeypatch.setattr("syncd.config.CONTAINER_MARKERS", (marker,))
    monkeypatch.setattr("syncd.config.host_name", lambda: "5281cb97485b")  # a container id
    root = tmp_path / "courses"
    make_course(root, "c", lessons=1)
    run = run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn)
    assert run.code == ExitCode.CONFIG == 2
    assert "SYNCD_SOURCE" in run.named("configuration error")[0]["reason"]
    named = run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn, {"SYNCD_SOURCE": "box-1"})
    assert named.code == 0


def test_the_image_requires_a_named_source(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "c", lessons=1)
    required = {"SYNCD_SOURCE_REQUIRED": "1"}  # set by the Dockerfile
    run = run_cli(capsys, ["--root", str(root)], db_dsn, required)
    assert run.code == ExitCode.CONFIG and "SYNCD_SOURCE" in run.stderr
    assert run_cli(capsys, ["verify", "--root", str(root)], db_dsn, required).code == 2


# -- --no-embedded (issue 18, item 1) -------------------------------------------------------

DATABASE_COMMANDS = [
    ["--rescan"],
    ["run"],
    ["verify"],
    ["migrate"],
    ["migrate", "--status"],
    ["report"],
    ["sources"],
    ["minds"],
]


@pytest.mark.parametrize("argv", DATABASE_COMMANDS, ids=" ".join)
def test_no_embedded_without_database_url_exits_2_in_every_database_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str]
) -> None:
    root = make_course(tmp_path / "courses", "course-a", lessons=1).parent
    data_dir = tmp_path / "pg"
    for how in (["--no-embedded"], []):
        env = {} if how else {"SYNCD_NO_EMBEDDED": "true"}
        extra = ["--root", str(root)] if argv[0] in ("--rescan", "run", "verify") else []
        run = run_cli(capsys, [*argv, *how, *extra, "--data-dir", str(data_dir)], None, env)
        assert run.code == 2, (how, run.stderr)
        reason = run.named("configuration error")[0]["reason"]
        assert "DATABASE_URL is not set" in reason and "export" in reason, reason
        assert "--no-embedded" in reason and "SYNCD_NO_EMBEDDED" in reason, reason
        assert not data_dir.exists()
