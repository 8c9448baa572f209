"""Issue 16, item 7: `syncd verify` tells the whole truth and the rescan repairs it. The
project's fields, its audience, and the tag and mind links of its rows are compared and
repaired like contents rows; a `stale` line names the fields that differ, never syncd's own
bookkeeping (hashes, write marks) and never a field the app owns."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.helpers import Run, run_cli

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "courses"
COURSE = "python-em-30-dias"
LESSON = f"{COURSE}/lessons/1.1-por-que-python.md"


def rescan(capsys: pytest.CaptureFixture[str], root: Path, dsn: str) -> Run:
    return run_cli(capsys, ["--rescan", "--root", str(root)], dsn)


def verify(capsys: pytest.CaptureFixture[str], root: Path, dsn: str, *extra: str) -> Run:
    return run_cli(capsys, ["verify", "--root", str(root), *extra], dsn)


def execute(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(sql, params or None)
        return cur.fetchall() if cur.description else []


def stale_lines(run: Run) -> list[str]:
    return [" ".join(line.split()) for line in run.stdout.splitlines() if line.startswith("stale")]


def totals(run: Run) -> tuple[int, int, int, int]:
    done = run.named("reconcile finished")[0]
    return done["inserted"], done["updated"], done["deleted"], done["archived"]


@pytest.fixture
def synced(capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str) -> Path:
    """The example course (brief with minds, tags and an audience), synced and in sync."""
    root = tmp_path / "courses"
    shutil.copytree(EXAMPLES / COURSE, root / COURSE)
    assert rescan(capsys, root, db_dsn).code == 0
    assert verify(capsys, root, db_dsn).code == 0
    return root


def repaired_by_rescan(
    capsys: pytest.CaptureFixture[str], root: Path, dsn: str
) -> list[tuple[str, tuple[str, ...]]]:
    """Rescan; the repairs it logged as (path, fields); then verify is clean and the next
    rescan finds nothing more to do (the write marks were kept)."""
    run = rescan(capsys, root, dsn)
    assert run.code == 0, run.stderr
    after = verify(capsys, root, dsn)
    assert after.code == 0, after.stdout
    again = rescan(capsys, root, dsn)
    assert totals(again) == (0, 0, 0, 0)
    assert [e["reason"] for e in again.named("course skipped")] == ["unchanged"]
    return [(e["path"], tuple(e["fields"])) for e in run.named("row repaired")]


def test_a_project_name_changed_in_sql_is_named_by_verify_and_repaired(
    capsys: pytest.CaptureFixture[str], synced: Path, db_dsn: str
) -> None:
    """Problem: a project's name changed in SQL, and verify said "in sync"."""
    ((name,),) = execute(db_dsn, "select name from content_projects where slug = %s", COURSE)
    execute(db_dsn, "update content_projects set name = 'Renamed in SQL' where slug = %s", COURSE)

    check = verify(capsys, synced, db_dsn)

    assert check.code == 1
    assert stale_lines(check) == [f"stale {COURSE} (project: name)"]
    drifts = json.loads(verify(capsys, synced, db_dsn, "--json").stdout)["drifts"]
    assert [(d["kind"], d["path"], d["fields"]) for d in drifts] == [("stale", COURSE, ["name"])]
    assert repaired_by_rescan(capsys, synced, db_dsn) == [(COURSE, ("name",))]
    assert execute(db_dsn, "select name from content_projects where slug = %s", COURSE) == [(name,)]


def test_an_audience_field_changed_in_sql_is_named_by_verify_and_repaired(
    capsys: pytest.CaptureFixture[str], synced: Path, db_dsn: str
) -> None:
    ((description,),) = execute(
        db_dsn, "select description from audience_profiles where slug = %s", f"{COURSE}-audience"
    )
    execute(
        db_dsn,
        "update audience_profiles set description = 'edited in SQL' where slug = %s",
        f"{COURSE}-audience",
    )

    check = verify(capsys, synced, db_dsn)

    assert check.code == 1
    assert stale_lines(check) == [f"stale {COURSE} (project: audience.description)"]
    assert repaired_by_rescan(capsys, synced, db_dsn) == [(COURSE, ("audience.description",))]
    assert execute(
        db_dsn, "select description from audience_profiles where slug = %s", f"{COURSE}-audience"
    ) == [(description,)]


def test_a_tag_link_deleted_in_sql_is_named_by_verify_and_repaired(
    capsys: pytest.CaptureFixture[str], synced: Path, db_dsn: str
) -> None:
    """Problem: a tag link deleted in SQL, and verify said "in sync" (the docs said links
    edited elsewhere are repaired; they were not)."""
    outline = "select id, file_path from contents where content_type = 'course_outline'"
    ((outline_id, outline_path),) = execute(db_dsn, outline)
    count = "select count(*) from content_tags where content_id = %s"
    ((tags,),) = execute(db_dsn, count, outline_id)
    assert tags >= 2
    execute(
        db_dsn,
        "delete from content_tags where content_id = %s"
        " and tag_id = (select id from tags where name = 'Python')",
        outline_id,
    )

    check = verify(capsys, synced, db_dsn)

    assert check.code == 1
    assert stale_lines(check) == [f"stale {outline_path} (tags)"]
    assert repaired_by_rescan(capsys, synced, db_dsn) == [(outline_path, ("tags",))]
    assert execute(db_dsn, count, outline_id) == [(tags,)]


def test_a_mind_link_deleted_or_added_in_sql_is_named_by_verify_and_repaired(
    capsys: pytest.CaptureFixture[str], synced: Path, db_dsn: str
) -> None:
    ((lesson_id,),) = execute(db_dsn, "select id from contents where file_path = %s", LESSON)
    links = "select mind_id, role from content_minds where content_id = %s order by 1"
    before = execute(db_dsn, links, lesson_id)
    assert before
    execute(db_dsn, "delete from content_minds where content_id = %s", lesson_id)
    execute(db_dsn, "insert into minds (slug, display_name) values ('intruder', 'Intruder')")
    other = f"{COURSE}/lessons/1.2-instalando.md"
    execute(
        db_dsn,
        "insert into content_minds (content_id, mind_id, role)"
        " select c.id, m.id, 'guest' from contents c, minds m"
        " where c.file_path = %s and m.slug = 'intruder'",
        other,
    )

    check = verify(capsys, synced, db_dsn)

    assert check.code == 1
    assert sorted(stale_lines(check)) == [f"stale {LESSON} (minds)", f"stale {other} (minds)"]
    assert sorted(repaired_by_rescan(capsys, synced, db_dsn)) == [
        (LESSON, ("minds",)),
        (other, ("minds",)),
    ]
    assert execute(db_dsn, links, lesson_id) == before
    assert execute(db_dsn, "select count(*) from content_minds where role = 'guest'") == [(0,)]


def test_a_stale_row_names_its_fields_and_only_those(
    capsys: pytest.CaptureFixture[str], synced: Path, db_dsn: str
) -> None:
    execute(
        db_dsn,
        "update contents set title = 'vandalised', sequence_order = 9 where file_path = %s",
        LESSON,
    )
    execute(
        db_dsn,
        "delete from content_tags where content_id = (select id from contents"
        " where content_type = 'course_outline')",
    )

    check = verify(capsys, synced, db_dsn)

    assert check.code == 1
    ((outline_path,),) = execute(
        db_dsn, "select file_path from contents where content_type = 'course_outline'"
    )
    assert sorted(stale_lines(check)) == sorted(
        [f"stale {LESSON} (title, sequence_order)", f"stale {outline_path} (tags)"]
    )
    assert sorted(repaired_by_rescan(capsys, synced, db_dsn)) == sorted(
        [(LESSON, ("title", "sequence_order")), (outline_path, ("tags",))]
    )


def test_fields_the_app_owns_are_never_reported_nor_repaired(
    capsys: pytest.CaptureFixture[str], synced: Path, db_dsn: str
) -> None:
    """A status or a publication set in the app is the app's: verify stays in sync, and the
    next rescan keeps it and logs no repair."""
    execute(
        db_dsn,
        "update contents set status = 'published', published_at = now(),"
        " published_url = 'https://example.com/x' where file_path = %s",
        LESSON,
    )
    execute(db_dsn, "update content_projects set status = 'completed' where slug = %s", COURSE)

    check = verify(capsys, synced, db_dsn)

    assert check.code == 0, check.stdout
    assert repaired_by_rescan(capsys, synced, db_dsn) == []
    assert execute(db_dsn, "select status from contents where file_path = %s", LESSON) == [
        ("published",)
    ]
    assert execute(db_dsn, "select status from content_projects where slug = %s", COURSE) == [
        ("completed",)
    ]


def test_after_a_restore_bookkeeping_differences_are_not_stale(
    capsys: pytest.CaptureFixture[str], synced: Path, db_dsn: str
) -> None:
    """Problem: after a database restore, 183 of 237 `stale` rows were byte-identical to
    their files: every row's xmin had moved on and syncd.rows had been restored from another
    moment. The rows are as the files say: verify is clean, and the next rescan re-marks
    them silently (no `row repaired`)."""
    with psycopg.connect(db_dsn) as conn:  # what a dump and restore does to the marks
        conn.execute("update contents set title = title")
        conn.execute("update content_projects set name = name")
        conn.execute("update audience_profiles set name = name")
        conn.execute("update syncd.rows set row_hash = '\\x00'::bytea where row_key like 'file:%'")
        conn.execute("delete from syncd.rows where row_key like 'module:%'")
        conn.execute("update syncd.rows set written_xmin = '2'::xid where row_key = 'outline'")

    check = verify(capsys, synced, db_dsn)

    assert check.code == 0, check.stdout
    assert repaired_by_rescan(capsys, synced, db_dsn) == []


def test_the_running_daemon_repairs_a_project_and_a_link_at_its_safety_reconcile(
    tmp_path: Path, db_dsn: str
) -> None:
    from tests.daemon_harness import DaemonProcess

    root = tmp_path / "courses"
    shutil.copytree(EXAMPLES / COURSE, root / COURSE)
    daemon = DaemonProcess(root, db_dsn, "--reconcile-interval", "2")
    try:
        daemon.wait_event("daemon ready", timeout=60)
        ((name,),) = execute(db_dsn, "select name from content_projects where slug = %s", COURSE)
        links = "select count(*) from content_minds where content_id = (select id from contents where file_path = %s)"
        before = execute(db_dsn, links, LESSON)
        with psycopg.connect(db_dsn) as conn:
            conn.execute(
                "update content_projects set name = 'vandalised' where slug = %s", (COURSE,)
            )
            conn.execute(
                "delete from content_minds where content_id ="
                " (select id from contents where file_path = %s)",
                (LESSON,),
            )
        daemon.wait_for(
            lambda: len(daemon.named("row repaired")) >= 2, what="both repaired", timeout=30
        )
        repairs = {(e["path"], tuple(e["fields"])) for e in daemon.named("row repaired")}
        assert repairs == {(COURSE, ("name",)), (LESSON, ("minds",))}
        assert execute(db_dsn, "select name from content_projects where slug = %s", COURSE) == [
            (name,)
        ]
        assert execute(db_dsn, links, LESSON) == before
        assert daemon.terminate() == 0
    finally:
        daemon.kill()
