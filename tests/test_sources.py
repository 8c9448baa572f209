"""Issue 10: the database follows the tree when several roots write into one database and
people edit it in the app. Sources, and who owns which field."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import EXAMPLES, Run, lesson_text, make_course, run_cli, write


def rescan(capsys: pytest.CaptureFixture[str], root: Path, dsn: str, *extra: str) -> Run:
    return run_cli(capsys, ["--rescan", "--root", str(root), *extra], dsn)


def rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params or None).fetchall()


def statuses(dsn: str) -> dict[str, str]:
    return dict(rows(dsn, "select slug, status from content_projects"))


def totals(run: Run) -> tuple[int, int, int, int]:
    done = run.named("reconcile finished")[0]
    return done["inserted"], done["updated"], done["deleted"], done["archived"]


def two_roots(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "machine-a" / "courses", tmp_path / "machine-b" / "courses"
    for n in range(4):
        make_course(a, f"a-course-{n}", lessons=3)
        make_course(b, f"b-course-{n}", lessons=2)
    return a, b


def test_two_roots_share_one_database_without_ping_pong(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """Problem 1: root B's rescan archived all of A's projects, and each later rescan of A
    or B undid the other."""
    a, b = two_roots(tmp_path)
    for round_ in range(10):
        for root in (a, b):
            run = rescan(capsys, root, db_dsn)
            assert run.code == 0, run.stderr
            if round_ > 0:
                assert totals(run) == (0, 0, 0, 0), (round_, root, totals(run))
    assert "archived" not in statuses(db_dsn).values()
    assert len(statuses(db_dsn)) == 8
    assert rows(db_dsn, "select count(*) from contents where deleted_at is not null") == [(0,)]
    # Each root's verify speaks of its own tree only.
    for root in (a, b):
        assert run_cli(capsys, ["verify", "--root", str(root)], db_dsn).code == 0


def test_the_quickstart_against_a_team_database_archives_nothing_of_theirs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """Problem 1: the README's quickstart with the production DATABASE_URL still set archived
    every real course, with exit 0."""
    a, _ = two_roots(tmp_path)
    assert rescan(capsys, a, db_dsn).code == 0
    examples = tmp_path / "examples"
    shutil.copytree(EXAMPLES, examples)

    run = rescan(capsys, examples, db_dsn)

    assert run.code == 0, run.stderr
    assert totals(run)[3] == 0
    assert "archived" not in {s for slug, s in statuses(db_dsn).items() if slug.startswith("a-")}


def test_a_course_folder_held_by_two_sources_is_a_conflict_the_first_owner_keeps(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    a, b = two_roots(tmp_path)
    make_course(a, "shared", lessons=3)
    shutil.copytree(a / "shared", b / "shared")
    write(b / "shared/lessons/1.1-lesson-1-1.md", lesson_text(1, 1, "B's version"))
    assert rescan(capsys, a, db_dsn).code == 0

    run = rescan(capsys, b, db_dsn)

    assert run.code == 0, run.stderr
    conflict = [e for e in run.named("file rejected") if e["path"] == "shared"]
    assert conflict and "synced by source" in conflict[0]["reason"], run.stderr
    assert rows(db_dsn, "select count(*) from contents where content like '%B''s version%'") == [
        (0,)
    ]
    check = run_cli(capsys, ["verify", "--root", str(b)], db_dsn)
    assert check.code == 1
    assert [line.split()[:2] for line in check.stdout.splitlines()] == [["conflict", "shared"]]
    report = run_cli(capsys, ["report"], db_dsn)
    assert any(line.split()[:1] == ["shared"] for line in report.stdout.splitlines()), report.stdout
    # A goes on as before: nothing was written back and forth.
    assert totals(rescan(capsys, a, db_dsn)) == (0, 0, 0, 0)
    assert totals(rescan(capsys, b, db_dsn)) == (0, 0, 0, 0)


def test_sources_are_listed_retired_on_purpose_and_handed_over(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    a, b = two_roots(tmp_path)
    assert rescan(capsys, a, db_dsn, "--source", "laptop-ana").code == 0
    assert rescan(capsys, b, db_dsn, "--source", "server-bia").code == 0

    listed = run_cli(capsys, ["sources"], db_dsn)
    assert listed.code == 0
    lines = {line.split()[0]: line for line in listed.stdout.splitlines() if line.split()}
    assert lines["laptop-ana"].split()[-1] == "4" and str(a) in lines["laptop-ana"]
    assert lines["server-bia"].split()[-1] == "4"

    # Ana's machine is gone for good: her courses are handed to a new machine's root.
    moved = tmp_path / "new-machine" / "courses"
    shutil.copytree(a, moved)
    early = rescan(capsys, moved, db_dsn, "--source", "desktop-ana")  # before the hand-over
    assert early.code == 0 and len(early.named("file rejected")) == 4  # conflicts, no writes
    handed = run_cli(
        capsys, ["sources", "--hand-over", "laptop-ana", "--to", "desktop-ana"], db_dsn
    )
    assert handed.code == 0, handed.stderr
    assert totals(rescan(capsys, moved, db_dsn, "--source", "desktop-ana")) == (0, 0, 0, 0)
    refused = rescan(capsys, a, db_dsn, "--source", "laptop-ana")
    assert refused.code == 4 and "retired" in refused.stderr

    # Bia's server is retired on purpose: its courses are archived, and stay so.
    retired = run_cli(capsys, ["sources", "--retire", "server-bia"], db_dsn)
    assert retired.code == 0, retired.stderr
    archived = {slug for slug, s in statuses(db_dsn).items() if s == "archived"}
    assert archived == {f"b-course-{n}" for n in range(4)}
    assert rescan(capsys, moved, db_dsn, "--source", "desktop-ana").code == 0
    assert {slug for slug, s in statuses(db_dsn).items() if s == "archived"} == archived


def test_courses_synced_before_sources_are_adopted_by_the_first_source_that_syncs_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    a, b = two_roots(tmp_path)
    assert rescan(capsys, a, db_dsn).code == 0
    with psycopg.connect(db_dsn) as conn:
        conn.execute("update syncd.courses set source = null")  # as a run from before
    make_course(b, "a-course-0", lessons=3)  # the same folder name, on another machine

    assert totals(rescan(capsys, a, db_dsn)) == (0, 0, 0, 0)  # adopted, nothing rewritten
    owners = dict(rows(db_dsn, "select course, source from syncd.courses"))
    assert len(set(owners.values())) == 1 and str(a) in next(iter(owners.values()))
    conflict = rescan(capsys, b, db_dsn)
    assert [e["path"] for e in conflict.named("file rejected")] == ["a-course-0"]


# -- who owns which field ------------------------------------------------------------------


def test_a_status_set_in_the_app_survives_edits_that_leave_the_frontmatter_status(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """Problem 4: a lesson whose frontmatter says status: draft was reset from published
    to draft by any edit, even one that did not touch the status."""
    root = tmp_path / "courses"
    course = make_course(root, "owned", lessons=1)
    lesson = course / "lessons/1.2-status.md"
    lesson.write_text("---\nstatus: draft\n---\n# S\n\nfirst\n", encoding="utf-8")
    assert rescan(capsys, root, db_dsn).code == 0
    path = "owned/lessons/1.2-status.md"
    with psycopg.connect(db_dsn) as conn:
        conn.execute("update contents set status = 'published' where file_path = %s", (path,))

    lesson.write_text("---\nstatus: draft\n---\n# S\n\nsecond\n", encoding="utf-8")
    assert rescan(capsys, root, db_dsn).code == 0
    assert rows(
        db_dsn, "select status, content like '%%second%%' from contents where file_path = %s", path
    ) == [("published", True)]

    lesson.write_text("---\nstatus: reviewed\n---\n# S\n\nsecond\n", encoding="utf-8")
    assert rescan(capsys, root, db_dsn).code == 0
    assert rows(db_dsn, "select status from contents where file_path = %s", path) == [("reviewed",)]


def test_a_project_archived_in_the_app_stays_archived_and_syncds_own_archive_is_undone_exactly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """Problem 4: a project archived in the app was un-archived by the next rescan, to
    in_progress rather than the status it had."""
    root = tmp_path / "courses"
    make_course(root, "kept", lessons=1)
    make_course(root, "moved", lessons=1)
    make_course(root, "other", lessons=1)
    assert rescan(capsys, root, db_dsn).code == 0
    with psycopg.connect(db_dsn) as conn:
        conn.execute("update content_projects set status = 'archived' where slug = 'kept'")
        conn.execute("update content_projects set status = 'completed' where slug = 'moved'")
    write(root / "kept/lessons/1.5-new.md", lesson_text(1, 5))  # an edit in the archived course
    assert rescan(capsys, root, db_dsn).code == 0
    assert statuses(db_dsn)["kept"] == "archived"
    assert rows(
        db_dsn, "select count(*) from contents where file_path = 'kept/lessons/1.5-new.md'"
    ) == [(1,)]

    parked = tmp_path / "parked"
    (root / "moved").rename(parked)
    assert rescan(capsys, root, db_dsn).code == 0
    assert statuses(db_dsn)["moved"] == "archived"
    parked.rename(root / "moved")
    assert rescan(capsys, root, db_dsn).code == 0
    assert statuses(db_dsn) == {"kept": "archived", "moved": "completed", "other": "planning"}


# -- edits made in the database are repaired --------------------------------------------------


def test_rows_edited_or_deleted_in_sql_are_repaired_by_the_next_rescan(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """Problem 2: a row changed in SQL stayed changed through rescans, touches and unrelated
    edits (verify called it stale and nothing fixed it); a row deleted in SQL came back only
    when another file of its course changed."""
    root = tmp_path / "courses"
    make_course(root, "repaired", lessons=3)
    assert rescan(capsys, root, db_dsn).code == 0
    edited, deleted = "repaired/lessons/1.1-lesson-1-1.md", "repaired/lessons/1.2-lesson-1-2.md"
    ((edited_id, original),) = rows(
        db_dsn, "select id, content from contents where file_path = %s", edited
    )
    with psycopg.connect(db_dsn) as conn:
        conn.execute(
            "update contents set content = 'vandalised', status = 'published' where file_path = %s",
            (edited,),
        )
        conn.execute("delete from contents where file_path = %s", (deleted,))
    assert run_cli(capsys, ["verify", "--root", str(root)], db_dsn).code == 1

    run = rescan(capsys, root, db_dsn)

    assert run.code == 0, run.stderr
    assert rows(
        db_dsn, "select id, content, status from contents where file_path = %s", edited
    ) == [
        (edited_id, original, "published")  # same id, file-owned content back, app's status kept
    ]
    assert rows(
        db_dsn, "select count(*) from contents where file_path = %s and deleted_at is null", deleted
    ) == [(1,)]
    repairs = {(e["path"], e["action"]) for e in run.named("row repaired")}
    assert repairs == {(edited, "rewritten from its file"), (deleted, "re-created from its file")}
    assert run_cli(capsys, ["verify", "--root", str(root)], db_dsn).code == 0
    assert totals(rescan(capsys, root, db_dsn)) == (0, 0, 0, 0)  # and then nothing more


def test_the_running_daemon_repairs_edits_made_in_sql_at_its_safety_reconcile(
    tmp_path: Path, db_dsn: str
) -> None:
    from tests.daemon_harness import DaemonProcess

    root = tmp_path / "courses"
    make_course(root, "watched", lessons=2)
    daemon = DaemonProcess(root, db_dsn, "--reconcile-interval", "2")
    try:
        daemon.wait_event("daemon ready", timeout=60)
        path = "watched/lessons/1.1-lesson-1-1.md"
        with psycopg.connect(db_dsn) as conn:
            conn.execute("update contents set title = 'vandalised' where file_path = %s", (path,))
            conn.execute(
                "delete from contents where file_path = 'watched/lessons/1.2-lesson-1-2.md'"
            )
        daemon.wait_for(
            lambda: len(daemon.named("row repaired")) >= 2, what="both rows repaired", timeout=30
        )
        assert rows(db_dsn, "select title from contents where file_path = %s", path) != [
            ("vandalised",)
        ]
        assert rows(
            db_dsn,
            "select count(*) from contents where deleted_at is null and content_type = 'course_lesson'",
        ) == [(2,)]
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


# -- renames keep identity ------------------------------------------------------------------


def test_a_renamed_lesson_keeps_its_row_id_slug_and_app_status(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """Problem 3: a lesson renamed with the same bytes got a new row (new id, new slug,
    status back to draft) and the published row was soft-deleted."""
    root = tmp_path / "courses"
    course = make_course(root, "renames", lessons=3)
    assert rescan(capsys, root, db_dsn).code == 0
    old = "renames/lessons/1.2-lesson-1-2.md"
    ((row_id, slug),) = rows(db_dsn, "select id, slug from contents where file_path = %s", old)
    with psycopg.connect(db_dsn) as conn:
        conn.execute("update contents set status = 'published' where id = %s", (row_id,))
    (course / "lessons/1.2-lesson-1-2.md").rename(course / "lessons/2.5-moved-and-renamed.md")

    run = rescan(capsys, root, db_dsn)

    assert run.code == 0, run.stderr
    assert rows(
        db_dsn,
        "select l.id, l.slug, l.status, l.deleted_at is null, l.sequence_order, m.sequence_order"
        " from contents l join contents m on m.id = l.parent_content_id"
        " where l.file_path = 'renames/lessons/2.5-moved-and-renamed.md'",
    ) == [(row_id, slug, "published", True, 5, 2)]
    assert rows(db_dsn, "select count(*) from contents where file_path = %s", old) == [(0,)]
    assert totals(run)[:3] == (1, 1, 0)  # the new module 2; the moved lesson; nothing deleted
    assert run_cli(capsys, ["verify", "--root", str(root)], db_dsn).code == 0


@pytest.mark.parametrize("across_a_restart", [False, True], ids=["one-rescan", "two-rescans"])
def test_a_renamed_course_folder_keeps_its_project_and_row_ids(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str, across_a_restart: bool
) -> None:
    """Problem 3: a renamed course folder archived its project and created a new one with
    all-new row ids."""
    root = tmp_path / "courses"
    make_course(root, "old-name", lessons=4)
    make_course(root, "bystander", lessons=1)
    assert rescan(capsys, root, db_dsn).code == 0
    before = dict(
        rows(
            db_dsn,
            "select slug, id from contents where project_id = (select id from content_projects where slug = 'old-name')",
        )
    )
    ((project_id,),) = rows(db_dsn, "select id from content_projects where slug = 'old-name'")
    if across_a_restart:
        parked = tmp_path / "parked"
        (root / "old-name").rename(parked)
        assert rescan(capsys, root, db_dsn).code == 0  # gone: archived
        assert statuses(db_dsn)["old-name"] == "archived"
        parked.rename(root / "Novo Nome")
    else:
        (root / "old-name").rename(root / "Novo Nome")

    run = rescan(capsys, root, db_dsn)

    assert run.code == 0, run.stderr
    assert [(e["old"], e["new"]) for e in run.named("course renamed")] == [
        ("old-name", "Novo Nome")
    ]
    assert rows(db_dsn, "select id, status from content_projects where slug = 'novo-nome'") == [
        (project_id, "planning")
    ]
    after = dict(
        rows(
            db_dsn,
            "select slug, id from contents where project_id = %s and deleted_at is null",
            project_id,
        )
    )
    assert after == before  # every row id (and slug) kept
    paths = {
        p
        for (p,) in rows(
            db_dsn,
            "select file_path from contents where project_id = %s and file_path is not null",
            project_id,
        )
    }
    assert paths and all(p.startswith("Novo Nome/") for p in paths)
    assert "old-name" not in statuses(db_dsn)
    assert run_cli(capsys, ["verify", "--root", str(root)], db_dsn).code == 0
    assert totals(rescan(capsys, root, db_dsn)) == (0, 0, 0, 0)


# -- found by an operator-style review ------------------------------------------------------


def test_a_row_deleted_in_sql_after_a_single_sync_is_re_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "once", lessons=2)
    assert rescan(capsys, root, db_dsn).code == 0  # written once: the count must be known
    path = "once/lessons/1.2-lesson-1-2.md"
    with psycopg.connect(db_dsn) as conn:
        conn.execute("delete from contents where file_path = %s", (path,))
    run = rescan(capsys, root, db_dsn)
    assert [e["path"] for e in run.named("row repaired")] == [path]
    assert run_cli(capsys, ["verify", "--root", str(root)], db_dsn).code == 0


def test_a_course_renamed_to_a_name_of_the_same_slug_and_edited_stays_one_live_project(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "course-y", lessons=3)
    assert rescan(capsys, root, db_dsn).code == 0
    ((project_id,),) = rows(db_dsn, "select id from content_projects")
    (root / "course-y").rename(root / "Course Y")
    write(root / "Course Y/lessons/1.1-lesson-1-1.md", lesson_text(1, 1, "edited"))

    run = rescan(capsys, root, db_dsn)

    assert run.code == 0, run.stderr
    assert totals(run)[3] == 0  # nothing archived
    assert rows(db_dsn, "select id, slug, status from content_projects") == [
        (project_id, "course-y", "planning")
    ]
    assert rows(
        db_dsn,
        "select count(*) from contents where deleted_at is null and file_path like 'Course Y/%%'",
    ) == [(4,)]
    assert run.named("row repaired") == []  # a rename repairs nothing
    assert run_cli(capsys, ["verify", "--root", str(root)], db_dsn).code == 0


def test_two_roots_whose_folder_names_derive_one_slug_are_a_conflict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    c, d = tmp_path / "c" / "courses", tmp_path / "d" / "courses"
    make_course(c, "Python Em 30 Dias", lessons=3)
    make_course(d, "python-em-30-dias", lessons=2)
    assert rescan(capsys, c, db_dsn).code == 0
    before = rows(db_dsn, "select id, file_path from contents order by id")

    run = rescan(capsys, d, db_dsn)

    assert run.code == 0, run.stderr
    assert [e["path"] for e in run.named("file rejected")] == ["python-em-30-dias"]
    assert rows(db_dsn, "select id, file_path from contents order by id") == before
    assert run_cli(capsys, ["verify", "--root", str(c)], db_dsn).code == 0
    check = run_cli(capsys, ["verify", "--root", str(d)], db_dsn)
    assert [line.split()[:2] for line in check.stdout.splitlines()] == [
        ["conflict", "python-em-30-dias"]
    ]
    report = run_cli(capsys, ["report"], db_dsn)
    assert any(line.startswith("python-em-30-dias") for line in report.stdout.splitlines())


def test_renames_that_cannot_be_told_apart_or_named_move_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    for name in ("twin-a", "twin-b", "plain"):
        make_course(
            root,
            name,
            lessons=1,
        )
    for name in ("twin-a", "twin-b"):  # identical files
        (root / name / "curriculum.yaml").write_text(
            'title: "Twin"\nmodules:\n  - module_id: 1\n    module_title: "M"\n', encoding="utf-8"
        )
    assert rescan(capsys, root, db_dsn).code == 0
    projects = dict(rows(db_dsn, "select slug, id from content_projects"))
    (root / "twin-a").rename(root / "twin-x")
    (root / "twin-b").rename(root / "twin-y")
    (root / "plain").rename(root / "¿¡!")

    run = rescan(capsys, root, db_dsn)

    assert run.code == 0, run.stderr
    assert run.named("course renamed") == []
    assert len(run.named("course rename ambiguous")) == 2
    assert [e["path"] for e in run.named("file rejected")] == ["¿¡!"]
    after = dict(rows(db_dsn, "select slug, id from content_projects"))
    assert {k: after[k] for k in projects} == projects  # old projects kept (archived), none moved
    assert after["plain"] == projects["plain"] and "" not in after
