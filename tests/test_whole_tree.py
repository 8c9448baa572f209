"""Issue 9: every file under the root is in the database or named. Each numbered problem of
the issue, end to end: rescan and verify on a real PostgreSQL, as the users' trees are."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.helpers import Run, lesson_text, make_course, run_cli, write


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
