"""Issue 9: every file under the root is in the database or named. Each numbered problem of
the issue, end to end: rescan and verify on a real PostgreSQL, as the users' trees are."""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import psycopg
import pytest

from tests.daemon_harness import REPO, DaemonProcess, syncd_env
from tests.helpers import Run, lesson_text, make_course, run_cli, write
from tests.pgcluster import SERVICE_USER


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder the service user can reach (pytest's own tmp_path is root's, mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="syncd-tree-"))
    folder.chmod(0o755)
    yield folder
    for dirpath, dirnames, _ in os.walk(folder):
        for name in dirnames:
            os.chmod(os.path.join(dirpath, name), 0o755)
    shutil.rmtree(folder, ignore_errors=True)


# Held while folders above the interpreter are opened: one call at a time on the machine
# (pytest-xdist's workers, another checkout's suite), else one call would put a folder's mode
# back while another's process still needs to pass through it.
INTERPRETER_LOCK = Path(tempfile.gettempdir()) / "syncd-tests-interpreter-reachable.lock"


@contextmanager
def _interpreter_reachable() -> Iterator[None]:
    """The suite's own interpreter may live below a folder closed to others (pyenv in /root,
    mode 0700, on CI machines); in production the service user runs /opt/syncd/venv. For the
    length of the call, folders above the interpreter get the traverse bit for others (never
    read or list), and their modes are put back after."""
    with INTERPRETER_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        opened: list[tuple[Path, int]] = []
        for exe in {Path(sys.executable), Path(sys.executable).resolve()}:
            for folder in exe.parents:
                mode = stat.S_IMODE(folder.stat().st_mode)
                if not mode & stat.S_IXOTH and folder not in [f for f, _ in opened]:
                    opened.append((folder, mode))
        try:
            for folder, mode in opened:
                folder.chmod(mode | stat.S_IXOTH)
            yield
        finally:
            for folder, mode in opened:
                folder.chmod(mode)


def as_service_user(dsn: str, *args: str) -> Run:
    """``syncd`` as the non-root service user it runs as in production (the suite runs as
    root in CI, and root reads every file whatever its mode)."""
    user = SERVICE_USER if os.geteuid() == 0 else None
    if user is not None:
        from pgserver.utils import ensure_user_exists

        ensure_user_exists(user)
    with _interpreter_reachable() if user is not None else nullcontext():
        done = subprocess.run(
            [sys.executable, "-m", "syncd", *args],
            cwd=REPO,
            env=syncd_env(dsn),
            user=user,  # with its own group, not root's: as systemd's User= and Group= run it
            group=user,
            extra_groups=[] if user is not None else None,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    return Run(done.returncode, done.stdout, done.stderr)


def rescan(capsys: pytest.CaptureFixture[str], root: Path, dsn: str) -> Run:
    return run_cli(capsys, ["--rescan", "--root", str(root)], dsn)


def verify(capsys: pytest.CaptureFixture[str], root: Path, dsn: str, *extra: str) -> Run:
    return run_cli(capsys, ["verify", "--root", str(root), *extra], dsn)


def lessons_by_module(dsn: str, course: str) -> dict[str, tuple[int | None, int | None]]:
    """file_path -> (module number, lesson number) of every live lesson of a course."""
    with psycopg.connect(dsn) as conn:
        found = conn.execute(
            "select l.file_path, m.sequence_order, l.sequence_order from contents l"
            " join content_projects p on p.id = l.project_id"
            " left join contents m on m.id = l.parent_content_id"
            "  and m.content_type = 'course_module'"
            " where p.slug = %s and l.content_type = 'course_lesson' and l.deleted_at is null",
            (course,),
        ).fetchall()
    return {path: (module, lesson) for path, module, lesson in found}


def test_lessons_in_module_folders_sync_under_their_module(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """Problem 1: lessons/<module folder>/<lesson>.md reached nothing, and verify said in
    sync. Problem 7: lessons/README.md and lessons/QA-REPORT.md became lessons."""
    root = tmp_path / "courses"
    course = make_course(root, "modular", lessons=1)
    write(course / "lessons/modulo-03/aula-3.2-exemplo.md", lesson_text(3, 2))
    write(course / "lessons/modulo-03/glossario.md", "# Glossário\n\ntermos\n")
    write(course / "lessons/module-4/01-intro.md", "# Intro\n")
    write(course / "lessons/extras/bonus.md", "# Bonus\n")
    write(course / "lessons/README.md", "# About these lessons\n")
    write(course / "lessons/QA-REPORT.md", "# QA\n")
    write(course / "lessons/modulo-03/validation-report.md", "# QA\n")

    first = rescan(capsys, root, db_dsn)
    assert first.code == 0, first.stderr
    assert lessons_by_module(db_dsn, "modular") == {
        "modular/lessons/1.1-lesson-1-1.md": (1, 1),
        "modular/lessons/modulo-03/aula-3.2-exemplo.md": (3, 2),
        "modular/lessons/modulo-03/glossario.md": (3, None),
        "modular/lessons/module-4/01-intro.md": (4, 1),
        "modular/lessons/extras/bonus.md": (None, None),  # under the outline
    }
    assert verify(capsys, root, db_dsn).code == 0
    second = rescan(capsys, root, db_dsn)
    total = second.named("reconcile finished")[0]
    assert (total["inserted"], total["updated"], total["deleted"]) == (0, 0, 0)

    # a lesson added deep down is missing until synced: verify sees it
    write(course / "lessons/modulo-03/aula-3.3-nova.md", lesson_text(3, 3))
    assert verify(capsys, root, db_dsn).code == 1


def live_lessons(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select count(*) from contents where content_type = 'course_lesson'"
            " and deleted_at is null"
        ).fetchone()
    return int(row[0]) if row else -1


def project_status(dsn: str, slug: str) -> str | None:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select status from content_projects where slug = %s", (slug,)
        ).fetchone()
    return str(row[0]) if row else None


@pytest.mark.parametrize("locked", ["lessons", "course", "module folder"])
def test_an_unreadable_folder_keeps_every_row_under_it(
    shared_tmp: Path, db_dsn: str, locked: str
) -> None:
    """Problem 3: as the service user, an unreadable lessons/ folder soft-deleted its
    lessons, an unreadable course folder archived its project; verify said in sync."""
    root = shared_tmp / "courses"
    course = make_course(root, "locked", lessons=4, per_module=2)
    write(course / "lessons/modulo-03/3.1-deep.md", lesson_text(3, 1))
    make_course(root, "open", lessons=2)
    first = as_service_user(db_dsn, "--rescan", "--root", str(root))
    assert first.code == 0, first.stderr
    assert live_lessons(db_dsn) == 7
    folder = {
        "lessons": course / "lessons",
        "course": course,
        "module folder": course / "lessons/modulo-03",
    }[locked]
    folder.chmod(0o700)  # root's: the service user may not enter it

    again = as_service_user(db_dsn, "--rescan", "--root", str(root))

    assert again.code == 0, again.stderr
    assert live_lessons(db_dsn) == 7  # nothing soft-deleted
    assert project_status(db_dsn, "locked") != "archived"
    shown = str(folder.relative_to(root))
    warned = [
        e for e in again.events if e.get("level") == "warning" and shown in str(e.get("path"))
    ]
    assert warned and "unreadable" in str(warned[0].get("reason")), again.stderr
    check = as_service_user(db_dsn, "verify", "--root", str(root))
    assert check.code == 1, check.stdout
    assert shown in check.stdout and "unreadable" in check.stdout

    folder.chmod(0o755)
    assert as_service_user(db_dsn, "--rescan", "--root", str(root)).code == 0
    assert as_service_user(db_dsn, "verify", "--root", str(root)).code == 0


def huge_lesson(module: int, lesson: int) -> str:
    """About 1.3 MB, as a lesson with an inline base64 image: under the 2 MiB file limit,
    but its words overflow PostgreSQL's 1 MB tsvector (SQLSTATE 54000) in the FTS index."""
    import base64
    import random

    image = base64.encodebytes(random.Random(lesson).randbytes(950_000)).decode()
    return lesson_text(module, lesson) + f"\n![img](data:image/png;base64,\n{image})\n"


def test_a_row_the_database_refuses_is_rejected_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """Problem 2: one file PostgreSQL refused rolled back its whole course, on every retry,
    and the log named the course, not the file."""
    root = tmp_path / "courses"
    course = make_course(root, "big", lessons=3)
    assert rescan(capsys, root, db_dsn).code == 0
    with psycopg.connect(db_dsn) as conn:
        before = dict(
            conn.execute(
                "select file_path, content from contents where content_type = 'course_lesson'"
            ).fetchall()
        )
    first, second = sorted(course.glob("lessons/*.md"))[:2]
    first.write_text(lesson_text(1, 1, "edited"), encoding="utf-8")  # an ordinary edit
    second.write_text(huge_lesson(1, 2), encoding="utf-8")  # refused: keeps its old row
    write(course / "lessons/1.9-new-huge.md", huge_lesson(1, 9))  # refused: no row
    write(course / "lessons/1.8-new.md", lesson_text(1, 8))  # an ordinary new lesson

    run = rescan(capsys, root, db_dsn)

    assert run.code == 0, run.stderr
    refused = {e["path"]: e["reason"] for e in run.named("file rejected")}
    assert set(refused) == {
        "big/" + second.relative_to(course).as_posix(),
        "big/lessons/1.9-new-huge.md",
    }
    assert all("54000" in reason for reason in refused.values()), refused
    with psycopg.connect(db_dsn) as conn:
        after = dict(
            conn.execute(
                "select file_path, content from contents where content_type = 'course_lesson'"
                " and deleted_at is null"
            ).fetchall()
        )
    rel_first, rel_second = (f"big/{p.relative_to(course).as_posix()}" for p in (first, second))
    assert "edited" in after[rel_first]  # the rest of the course committed
    assert after[rel_second] == before[rel_second]  # the refused file kept its row
    assert "big/lessons/1.8-new.md" in after and "big/lessons/1.9-new-huge.md" not in after
    check = verify(capsys, root, db_dsn)
    assert check.code == 1
    lines = [line for line in check.stdout.splitlines() if line.startswith("refused")]
    assert len(lines) == 2 and all("54000" in line for line in lines), check.stdout


def test_verify_names_every_file_it_cannot_compare(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """Problem 5: rejected, unreadable, linked and oversized files were left out of verify,
    so it said "in sync": a new 50 MB lesson with no row, a lesson truncated to 0 bytes whose
    row keeps the old text."""
    root = tmp_path / "courses"
    course = make_course(root, "truth", lessons=3)
    assert rescan(capsys, root, db_dsn).code == 0
    assert verify(capsys, root, db_dsn).code == 0
    with (course / "lessons/1.9-huge.md").open("wb") as huge:
        huge.truncate(50 * 1024 * 1024)  # sparse: 50 MB on paper
    (course / "lessons/1.1-lesson-1-1.md").write_bytes(b"")  # a generator mid-write
    (course / "lessons/1.7-bad.md").write_text(
        "---\ntitle: [unclosed\n---\n# Bad\n", encoding="utf-8"
    )
    (course / "lessons/1.6-linked.md").symlink_to(course / "lessons/1.2-lesson-1-2.md")
    write(root / "notes/ideas/one.md", "x")
    write(root / "notes/two.txt", "y")

    run = rescan(capsys, root, db_dsn)
    assert run.code == 0, run.stderr
    check = verify(capsys, root, db_dsn)
    assert check.code == 1
    kinds = {line.split()[1]: line.split()[0] for line in check.stdout.splitlines()}
    assert kinds == {
        "truth/lessons/1.9-huge.md": "too-large",
        "truth/lessons/1.1-lesson-1-1.md": "rejected",
        "truth/lessons/1.7-bad.md": "rejected",
        "truth/lessons/1.6-linked.md": "link",
        "notes": "not-a-course",
    }, check.stdout
    assert "notes  (2 file(s), skipped)" in check.stdout

    as_json = verify(capsys, root, db_dsn, "--json")
    assert as_json.code == 1
    import json

    document = json.loads(as_json.stdout)
    assert document["in_sync"] is False
    assert {d["path"]: d["kind"] for d in document["drifts"]} == {
        k: v for k, v in kinds.items() if v != "not-a-course"
    }
    assert document["skipped_folders"] == [{"folder": "notes", "files": 2}]

    # Only a non-course folder left: in sync, and still listed.
    for name in ("1.9-huge.md", "1.7-bad.md", "1.6-linked.md"):
        (course / "lessons" / name).unlink()
    (course / "lessons/1.1-lesson-1-1.md").write_text(lesson_text(1, 1), encoding="utf-8")
    assert rescan(capsys, root, db_dsn).code == 0
    clean = verify(capsys, root, db_dsn)
    assert clean.code == 0, clean.stdout
    assert "not-a-course" in clean.stdout


def test_a_course_folder_moved_to_another_disk_and_linked_back_is_never_archived(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """Problem 4: `mv root/x /data/ && ln -s /data/x root/x` archived x and soft-deleted its
    rows, logged at info; a course that starts out as a link was never mentioned."""
    root = tmp_path / "courses"
    make_course(root, "moved", lessons=3)
    make_course(root, "stays", lessons=1)
    assert rescan(capsys, root, db_dsn).code == 0
    data = tmp_path / "data"
    data.mkdir()
    (root / "moved").rename(data / "moved")
    (root / "moved").symlink_to(data / "moved")
    make_course(data, "born-linked", lessons=1)
    (root / "born-linked").symlink_to(data / "born-linked")

    run = rescan(capsys, root, db_dsn)

    assert run.code == 0, run.stderr
    assert project_status(db_dsn, "moved") != "archived"
    assert live_lessons(db_dsn) == 4
    warned = {e["path"]: e["reason"] for e in run.named("file rejected")}
    assert set(warned) == {"moved", "born-linked"}
    assert all("symbolic link" in r for r in warned.values())
    assert all(e["level"] == "warning" for e in run.named("file rejected"))
    check = verify(capsys, root, db_dsn)
    assert check.code == 1
    assert {line.split()[1] for line in check.stdout.splitlines() if line.startswith("link")} == {
        "moved",
        "born-linked",
    }


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_the_daemon_names_a_new_link_at_once_and_does_not_spin_on_a_loop(
    tmp_path: Path, db_dsn: str, polling: bool
) -> None:
    """Problem 4: a linked lesson was named only when some other file of its course
    changed; under --polling a symlink loop inside a course cost 65% of a core while idle."""
    root = tmp_path / "courses"
    course = make_course(root, "watched", lessons=2)
    looped = make_course(root, "looped", lessons=1)
    (looped / "lessons/a").symlink_to(looped)  # lessons/a/lessons/b/lessons/a/...
    (looped / "lessons/b").symlink_to(looped)
    daemon = DaemonProcess(root, db_dsn, *(["--polling"] if polling else []))
    try:
        daemon.wait_event("daemon ready", timeout=60)
        first = len(daemon.named("file rejected"))
        (course / "lessons/1.5-linked.md").symlink_to(course / "lessons/1.1-lesson-1-1.md")
        daemon.wait_for(
            lambda: any(
                e.get("path") == "watched/lessons/1.5-linked.md"
                for e in daemon.named("file rejected")[first:]
            ),
            what="a warning naming the new link",
        )
        heartbeats = len(daemon.named("heartbeat"))
        cpu_before, wall_before = daemon.cpu_seconds(), time.monotonic()
        daemon.wait_event("heartbeat", count=heartbeats + 4, timeout=30)  # it kept looking
        share = (daemon.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
        assert share < 0.2, f"idle daemon used {share:.0%} of a core"
        assert live_lessons(db_dsn) == 3
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


def test_course_folders_with_any_name_and_visible_skips(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """Problem 6: a folder that is not a course but holds content was logged once at info
    with no count; a course folder named `Curso Novo` was refused as "not a valid slug"."""
    root = tmp_path / "courses"
    make_course(root, "Curso Novo", lessons=2)
    write(root / "no-migration/notes/a.md", "a")
    write(root / "no-migration/b.md", "b")
    write(root / "no-migration/c.txt", "c")

    run = rescan(capsys, root, db_dsn)
    assert run.code == 0, run.stderr
    assert project_status(db_dsn, "curso-novo") is not None
    with psycopg.connect(db_dsn) as conn:
        paths = conn.execute(
            "select file_path from contents where file_path is not null order by 1"
        ).fetchall()
    assert paths == [
        ("Curso Novo/curriculum.yaml",),
        *[(f"Curso Novo/lessons/1.{n}-lesson-1-{n}.md",) for n in (1, 2)],
    ]
    skipped = run.named("folder skipped")
    assert [(e["folder"], e["files"], e["level"]) for e in skipped] == [
        ("no-migration", 3, "warning")
    ]
    assert run.named("reconcile finished")[0]["skipped_folders"] == {"no-migration": 3}
    report = run_cli(capsys, ["report"], db_dsn)
    assert report.code == 0
    assert any(line.split()[:2] == ["no-migration", "3"] for line in report.stdout.splitlines())
    assert verify(capsys, root, db_dsn).code == 0

    # A second folder deriving the same slug is a reported conflict: the first owner keeps it.
    make_course(root, "curso-novo", lessons=5)
    again = rescan(capsys, root, db_dsn)
    assert again.code == 0, again.stderr
    conflict = [e for e in again.named("file rejected") if e["path"] == "curso-novo"]
    assert conflict and "Curso Novo" in conflict[0]["reason"]
    assert live_lessons(db_dsn) == 2  # nothing written back and forth
    check = verify(capsys, root, db_dsn)
    assert check.code == 1 and "rejected     curso-novo" in check.stdout, check.stdout


def test_follow_symlinks_reads_linked_courses_folders_and_files_and_names_loops(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    data = tmp_path / "data"
    make_course(data, "moved", lessons=2)
    (root).mkdir()
    (root / "moved").symlink_to(data / "moved")  # a course folder on another disk
    course = make_course(root, "local", lessons=1)
    write(data / "shared-module/2.1-shared.md", lesson_text(2, 1))
    (course / "lessons/modulo-02").symlink_to(data / "shared-module")  # a linked folder
    write(data / "extra.md", lesson_text(1, 5))
    (course / "lessons/1.5-extra.md").symlink_to(data / "extra.md")  # a linked file
    (course / "lessons/again").symlink_to(course / "lessons")  # a loop

    run = run_cli(capsys, ["--rescan", "--root", str(root), "--follow-symlinks"], db_dsn)

    assert run.code == 0, run.stderr
    assert lessons_by_module(db_dsn, "moved") == {
        "moved/lessons/1.1-lesson-1-1.md": (1, 1),
        "moved/lessons/1.2-lesson-1-2.md": (1, 2),
    }
    assert lessons_by_module(db_dsn, "local") == {
        "local/lessons/1.1-lesson-1-1.md": (1, 1),
        "local/lessons/1.5-extra.md": (1, 5),
        "local/lessons/modulo-02/2.1-shared.md": (2, 1),
    }
    loops = [e for e in run.named("file rejected") if e["path"] == "local/lessons/again"]
    assert loops and "read already" in loops[0]["reason"]
    check = run_cli(capsys, ["verify", "--root", str(root), "--follow-symlinks"], db_dsn)
    assert check.code == 1
    assert [line.split()[:2] for line in check.stdout.splitlines()] == [
        ["link", "local/lessons/again"]
    ]
    (course / "lessons/again").unlink()
    assert run_cli(capsys, ["--rescan", "--root", str(root), "--follow-symlinks"], db_dsn).code == 0
    assert run_cli(capsys, ["verify", "--root", str(root), "--follow-symlinks"], db_dsn).code == 0
    # Without the flag the same tree is named, and nothing is lost.
    plain = run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn)
    assert plain.code == 0
    assert live_lessons(db_dsn) == 5


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
def test_the_daemon_watches_what_a_followed_link_points_to(
    tmp_path: Path, db_dsn: str, polling: bool
) -> None:
    root = tmp_path / "courses"
    data = tmp_path / "data"
    make_course(data, "moved", lessons=1)
    root.mkdir()
    (root / "moved").symlink_to(data / "moved")
    (data / "moved/lessons/a").symlink_to(data / "moved")  # loops inside the target
    (data / "moved/lessons/b").symlink_to(data / "moved")
    args = ["--follow-symlinks", *(["--polling"] if polling else [])]
    daemon = DaemonProcess(root, db_dsn, *args)
    try:
        daemon.wait_event("daemon ready", timeout=60)
        daemon.wait_event("link target watched")
        write(data / "moved/lessons/1.2-new.md", lesson_text(1, 2))  # outside the root
        daemon.wait_for(
            lambda: "moved/lessons/1.2-new.md" in lessons_by_module(db_dsn, "moved"),
            what="the lesson written in the link's target synced",
        )
        heartbeats = len(daemon.named("heartbeat"))
        cpu_before, wall_before = daemon.cpu_seconds(), time.monotonic()
        daemon.wait_event("heartbeat", count=heartbeats + 4, timeout=30)
        share = (daemon.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before)
        assert share < 0.2, f"idle daemon used {share:.0%} of a core"
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


def test_follow_symlinks_never_reads_the_root_or_another_course_through_a_link(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    course = make_course(root, "one", lessons=1)
    make_course(root, "two", lessons=2)
    (course / "lessons/rootlink").symlink_to(root)
    (course / "lessons/twolink").symlink_to(root / "two")
    run = run_cli(capsys, ["--rescan", "--root", str(root), "--follow-symlinks"], db_dsn)
    assert run.code == 0, run.stderr
    assert set(lessons_by_module(db_dsn, "one")) == {"one/lessons/1.1-lesson-1-1.md"}
    named = {e["path"] for e in run.named("file rejected")}
    assert named == {"one/lessons/rootlink", "one/lessons/twolink"}


def test_sources_folders_are_ignored_at_every_depth_and_verify_of_a_missing_root_exits_5(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    course = make_course(root, "raw", lessons=1)
    write(course / "lessons/sources/transcript.md", "# raw\n")
    write(course / "research/sources/raw.md", "# raw\n")
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn).code == 0
    assert (
        rows_count(db_dsn, "select count(*) from contents where file_path like '%%/sources/%%'")
        == 0
    )
    missing = run_cli(capsys, ["verify", "--root", str(tmp_path / "nowhere")], db_dsn)
    assert missing.code == 5 and "Traceback" not in missing.stderr


def rows_count(dsn: str, sql: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else -1


def test_rows_under_a_refused_row_are_named_too(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """A module row the database refuses (its description too long for the full-text
    index) keeps its lessons out too: each of them is named, none is dropped in silence."""
    root = tmp_path / "courses"
    course = make_course(root, "deep-refusal", lessons=2)
    description = huge_lesson(1, 1).replace('"', "'").replace("\n", " ")
    (course / "curriculum.yaml").write_text(
        'title: "Deep"\nmodules:\n  - module_id: 1\n    module_title: "M"\n'
        f'    description: "{description}"\n',
        encoding="utf-8",
    )
    run = rescan(capsys, root, db_dsn)
    assert run.code == 0, run.stderr
    named = {e["path"] for e in run.named("file rejected")}
    assert {
        "deep-refusal/lessons/1.1-lesson-1-1.md",
        "deep-refusal/lessons/1.2-lesson-1-2.md",
    } <= named
    check = verify(capsys, root, db_dsn)
    assert check.code == 1


def test_the_daemon_as_the_service_user_exits_5_on_a_root_it_cannot_read(
    shared_tmp: Path, db_dsn: str
) -> None:
    """Operator report (issue 12 review): on a root the service user may not read, the
    daemon waited for ever without READY (under systemd: a 300 s start timeout, restarted
    every 5 minutes). It exits 5, as `--rescan` and `verify` do."""
    root = shared_tmp / "courses"
    make_course(root, "c", lessons=1)
    root.chmod(0o700)  # root's: the service user may not list it
    run = as_service_user(db_dsn, "--root", str(root), "--health-file", str(shared_tmp / "h"))
    assert run.code == 5, run.stderr
    assert "Permission denied" in run.stderr and "--root" in run.stderr
