"""Content history (issue 20): a version of a contents row for each change syncd writes, in
the same transaction; kept as SYNCD_HISTORY_KEEP says; read by `syncd history`; protected by
row-level security like the content. On plain PostgreSQL and the Supabase-shaped 15 and 16,
written as the login syncd_writer (no BYPASSRLS), as production runs it."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd import migrate
from tests.conftest import Target
from tests.daemon_harness import DaemonProcess
from tests.helpers import Run, atomic_write, lesson_text, make_course, run_cli, write
from tests.test_rls import World, acting, as_user, count, login_writer, refused, seed

Conn = psycopg.Connection[Any]
HISTORY = "20251201001500"


@pytest.fixture
def admin(db_target: Target) -> Iterator[Conn]:
    """A superuser's connection: it looks, edits "in the app" and impersonates."""
    with psycopg.connect(db_target.admin_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def writer(db_target: Target) -> str:
    return login_writer(db_target)


def rescan(capsys: pytest.CaptureFixture[str], root: Path, dsn: str, **env: str) -> Run:
    run = run_cli(capsys, ["--rescan", "--root", str(root)], dsn, env)
    assert run.code == 0, run.stderr
    return run


def history(capsys: pytest.CaptureFixture[str], root: Path, dsn: str, *argv: str) -> Run:
    return run_cli(capsys, ["history", "--root", str(root), *argv], dsn)


def versions(conn: Conn, file_path: str) -> list[tuple[int, str, str | None]]:
    """(version, kind, source) of the row at ``file_path``, oldest first."""
    rows = conn.execute(
        "select v.version, v.kind, v.source from content_versions v"
        " join contents c on c.id = v.content_id where c.file_path = %s order by v.version",
        (file_path,),
    ).fetchall()
    return [tuple(r) for r in rows]


def kinds(conn: Conn, file_path: str) -> list[str]:
    return [kind for _, kind, _ in versions(conn, file_path)]


def total(conn: Conn) -> int:
    return count(conn, "select 1 from content_versions")


def test_a_version_per_change_and_none_for_a_write_that_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, admin: Conn, writer: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "alpha", lessons=3)
    one, two, three = (f"alpha/lessons/1.{n}-lesson-1-{n}.md" for n in (1, 2, 3))

    rescan(capsys, root, writer)
    rows = count(admin, "select 1 from contents where deleted_at is null")
    assert total(admin) == rows  # version 1 of every row: outline, module, lessons
    assert kinds(admin, one) == ["created"]
    (source,) = {s for _, _, s in versions(admin, one)}
    assert source and source.endswith(str(root.resolve()))  # the writing source

    # nothing changed, the same bytes rewritten, a touch: nothing added
    rescan(capsys, root, writer)
    (root / one).write_bytes((root / one).read_bytes())
    (root / two).touch()
    rescan(capsys, root, writer)
    assert total(admin) == rows

    # an edit: one version, of that row only
    write(root / one, lesson_text(1, 1, "Edited."))
    rescan(capsys, root, writer)
    assert kinds(admin, one) == ["created", "updated"]
    assert total(admin) == rows + 1

    # deleted, then back: the row's own history goes on
    parked = (root / two).read_bytes()
    (root / two).unlink()
    rescan(capsys, root, writer)
    write(root / two, parked)
    rescan(capsys, root, writer)
    assert kinds(admin, two) == ["created", "deleted", "revived"]

    # moved within the course (renamed, same content): its new path
    (root / three).rename(root / "alpha/lessons/1.3-renamed.md")
    rescan(capsys, root, writer)
    moved = admin.execute(
        "select v.kind, v.file_path from content_versions v join contents c on c.id = v.content_id"
        " where c.file_path = 'alpha/lessons/1.3-renamed.md' order by v.version"
    ).fetchall()
    assert moved[-1] == ("moved", "alpha/lessons/1.3-renamed.md")

    # the content and its hash are the row's, as written
    content, digest, size = admin.execute(
        "select v.content, v.content_hash, v.size from content_versions v"
        " join contents c on c.id = v.content_id where c.file_path = %s and v.version = 2",
        (one,),
    ).fetchone() or (None, None, None)
    assert content == lesson_text(1, 1, "Edited.")
    assert bytes(digest) == hashlib.sha256(content.encode()).digest()
    assert size == len(content.encode())


def test_a_course_folder_renamed_records_each_rows_new_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, admin: Conn, writer: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "alpha", lessons=2)
    rescan(capsys, root, writer)
    (root / "alpha").rename(root / "beta")
    rescan(capsys, root, writer)
    assert kinds(admin, "beta/lessons/1.1-lesson-1-1.md") == ["created", "moved"]
    assert kinds(admin, "beta/lessons/1.2-lesson-1-2.md") == ["created", "moved"]


def test_an_edit_in_the_app_is_recorded_then_the_repair(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, admin: Conn, writer: str
) -> None:
    """Item 6: what the app changed, and what syncd put back, each a version."""
    root = tmp_path / "courses"
    make_course(root, "alpha", lessons=2)
    lesson = "alpha/lessons/1.1-lesson-1-1.md"
    rescan(capsys, root, writer)
    admin.execute(
        "update contents set content = 'rewritten in the app', title = 'App title'"
        " where file_path = %s",
        (lesson,),
    )
    rescan(capsys, root, writer)
    rows = admin.execute(
        "select v.version, v.kind, v.source, v.content, v.title, v.fields from content_versions v"
        " join contents c on c.id = v.content_id where c.file_path = %s order by v.version",
        (lesson,),
    ).fetchall()
    assert [(r[1], r[2] is None) for r in rows] == [
        ("created", False),
        ("app-edit", True),
        ("repaired", False),
    ]
    _, _, _, app_content, app_title, _ = rows[1]
    assert (app_content, app_title) == ("rewritten in the app", "App title")
    _, _, _, put_back, _, fields = rows[2]
    assert put_back == (root / lesson).read_text(encoding="utf-8")
    assert {"content", "title"} <= set(fields)

    # the history command shows them, and their difference
    listed = history(capsys, root, writer, str(root / lesson))
    assert listed.code == 0, listed.stderr
    assert "app-edit" in listed.stdout and "(the app)" in listed.stdout
    assert "repaired (" in listed.stdout
    diff = history(capsys, root, writer, str(root / lesson), "--diff", "2", "3")
    assert "-rewritten in the app" in diff.stdout
    assert "title: 'App title' -> " in diff.stdout


def test_retention_keeps_the_last_n_versions_or_n_days(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, admin: Conn, writer: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "alpha", lessons=2)
    lesson = "alpha/lessons/1.1-lesson-1-1.md"
    rescan(capsys, root, writer, SYNCD_HISTORY_KEEP="3")
    for n in range(5):
        write(root / lesson, lesson_text(1, 1, f"Edit {n}."))
        rescan(capsys, root, writer, SYNCD_HISTORY_KEEP="3")
    assert [v for v, _, _ in versions(admin, lesson)] == [4, 5, 6]  # numbers never reused
    assert len(versions(admin, "alpha/lessons/1.2-lesson-1-2.md")) == 1  # untouched: kept

    # by age: what is older than the days goes, the latest stays
    admin.execute("update content_versions set recorded_at = now() - interval '40 days'")
    write(root / lesson, lesson_text(1, 1, "Recent."))
    rescan(capsys, root, writer, SYNCD_HISTORY_KEEP="30d")
    assert [v for v, _, _ in versions(admin, lesson)] == [7]
    assert rescan(capsys, root, writer).code == 0  # the default keeps all again

    bad = run_cli(capsys, ["--rescan", "--root", str(root)], writer, {"SYNCD_HISTORY_KEEP": "0d"})
    assert bad.code == 2 and "SYNCD_HISTORY_KEEP" in bad.stderr


def test_history_lists_diffs_and_restores_a_version_the_daemon_then_syncs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, admin: Conn, writer: str
) -> None:
    """Item 4: `--restore N` writes the file (the source of truth); it refuses to lose edits
    no version holds unless forced."""
    root = tmp_path / "courses"
    make_course(root, "alpha", lessons=1)
    path = root / "alpha/lessons/1.1-lesson-1-1.md"
    approved = path.read_text(encoding="utf-8")
    rescan(capsys, root, writer)
    write(path, lesson_text(1, 1, "A later generation."))
    rescan(capsys, root, writer)

    listed = history(capsys, root, writer, str(path))
    assert listed.code == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[1].split()[:6] == ["version", "when", "(UTC)", "source", "kind", "bytes"]
    assert [line.split()[0] for line in lines[2:]] == ["1", "2"]
    assert hashlib.sha256(approved.encode()).hexdigest()[:12] in lines[2]

    diff = history(capsys, root, writer, str(path), "--diff", "1", "2")
    assert "+Body of lesson 1.1. A later generation." in diff.stdout

    write(path, lesson_text(1, 1, "Unsynced edit."))  # not in any version
    refused_run = history(capsys, root, writer, str(path), "--restore", "1")
    assert refused_run.code == 1 and "--force" in refused_run.stdout
    assert "Unsynced edit." in path.read_text(encoding="utf-8")  # untouched

    forced = history(capsys, root, writer, str(path), "--restore", "1", "--force")
    assert forced.code == 0, forced.stderr
    assert path.read_text(encoding="utf-8") == approved
    rescan(capsys, root, writer)
    assert kinds(admin, "alpha/lessons/1.1-lesson-1-1.md") == ["created", "updated", "updated"]
    same = admin.execute(
        "select count(distinct v.content_hash) from content_versions v"
        " join contents c on c.id = v.content_id where c.file_path = %s and v.version in (1, 3)",
        ("alpha/lessons/1.1-lesson-1-1.md",),
    ).fetchone()
    assert same == (1,)

    # the file as the latest version: a restore needs no force
    again = history(capsys, root, writer, str(path), "--restore", "2")
    assert again.code == 0, again.stdout
    missing = history(capsys, root, writer, str(path), "--restore", "9")
    assert missing.code == 2 and "no version 9" in missing.stderr
    nothing = history(capsys, root, writer, str(root / "alpha/lessons/none.md"))
    assert nothing.code == 1 and "no history" in nothing.stdout


def test_the_history_is_read_by_its_creator_alone_and_written_by_syncd_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, admin: Conn, writer: str
) -> None:
    """Item 2, by impersonation: ana reads her project's history (the table and the view),
    bia reads none of it, not even of a published lesson; anon reads nothing; no API role,
    service_role included, writes or deletes a version."""
    world: World = seed(admin)
    root = tmp_path / "courses"
    make_course(root, "anas-course", lessons=2)
    rescan(capsys, root, writer, SYNCD_CREATOR_MIND="ana")
    admin.execute("update contents set status = 'published' where file_path like 'anas-course/%'")
    mine = count(
        admin,
        "select 1 from content_versions v join content_projects p on p.id = v.project_id"
        " where p.slug = 'anas-course'",
    )
    assert mine > 0
    with as_user(admin, world.user["ana"]):
        assert count(admin, "select 1 from content_versions") == mine
        assert count(admin, "select 1 from content_history") == mine
    with as_user(admin, world.user["bia"]):
        assert count(admin, "select 1 from content_versions") == 0
        assert count(admin, "select 1 from content_history") == 0
        assert count(admin, "select 1 from contents where status = 'published'") > 0
    some = admin.execute("select content_id, project_id from content_versions limit 1").fetchone()
    assert some is not None
    everything = total(admin)
    for role, user in (
        ("authenticated", world.user["ana"]),
        ("anon", None),
        ("service_role", None),
    ):
        with acting(admin, role, user):
            if role == "anon":
                refused(admin, "select 1 from content_versions")
                refused(admin, "select 1 from content_history")
            refused(
                admin,
                "insert into content_versions (content_id, version, project_id, kind,"
                " content_hash, size) values (%s, 99, %s, 'updated', '\\x00', 0)",
                uuid.uuid4(),
                some[1],
            )
            refused(admin, "delete from content_versions")
            refused(admin, "update content_versions set title = 'x'")
            refused(admin, "truncate content_versions")
    with acting(admin, "service_role"):  # reads everything, as for contents
        assert count(admin, "select 1 from content_versions") == everything
    assert total(admin) == everything  # nothing written or deleted by any of them


def test_the_migration_gives_existing_rows_version_1_and_rolls_back(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_target: Target
) -> None:
    """A tree synced before the history: its first version is the row as it stands."""
    root = tmp_path / "courses"
    make_course(root, "alpha", lessons=3)
    with psycopg.connect(db_target.owner_dsn, autocommit=True) as owner:
        rolled = migrate.rollback_last(owner)
        assert rolled is not None and rolled.version == HISTORY
        assert owner.execute("select to_regclass('public.content_versions')").fetchone() == (None,)
        run = run_cli(capsys, ["--rescan", "--root", str(root)], db_target.owner_dsn)
        assert run.code == 4 and HISTORY in run.stderr  # pending: named, nothing written
        migrate.apply_pending(owner)
        rescan(capsys, root, db_target.owner_dsn)
        assert total(owner) == count(owner, "select 1 from contents")
        migrate.rollback_last(owner)
        rows = count(owner, "select 1 from contents where deleted_at is null")
        migrate.apply_pending(owner)
        assert kinds(owner, "alpha/lessons/1.1-lesson-1-1.md") == ["existing"]
        assert total(owner) == rows
        write(root / "alpha/lessons/1.1-lesson-1-1.md", lesson_text(1, 1, "After."))
        rescan(capsys, root, db_target.owner_dsn)
        assert kinds(owner, "alpha/lessons/1.1-lesson-1-1.md") == ["existing", "updated"]


def test_the_daemon_records_each_saved_edit_and_keeps_its_limit(
    tmp_path: Path, db_dsn: str, daemons: list[DaemonProcess]
) -> None:
    """The daemon writes versions as saves land, and applies SYNCD_HISTORY_KEEP."""
    root = tmp_path / "courses"
    make_course(root, "alpha", lessons=2)
    lesson = "alpha/lessons/1.1-lesson-1-1.md"
    daemon = DaemonProcess(root, db_dsn, env={"SYNCD_HISTORY_KEEP": "2"})
    daemons.append(daemon)
    daemon.wait_event("daemon ready")
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        for n in range(1, 4):
            atomic_write(root / lesson, lesson_text(1, 1, f"Save {n}."))
            daemon.wait_for(
                lambda n=n: [v for v, _, _ in versions(conn, lesson)] == [n, n + 1],
                what=f"save {n} recorded as version {n + 1}, the one before it kept",
            )
        assert kinds(conn, lesson) == ["updated", "updated"]
        assert [v for v, _, _ in versions(conn, "alpha/lessons/1.2-lesson-1-2.md")] == [1]
    assert daemon.terminate() == 0


def test_an_app_edit_met_by_a_move_or_a_course_rename_is_still_an_app_edit_then_a_repair(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, admin: Conn, writer: str
) -> None:
    """Found by an operator's probe: an edit in SQL and a rename in the same sync left no
    app-edit or repair (a file moved), or recorded the app's title as syncd's move (a course
    folder renamed)."""
    root = tmp_path / "courses"
    make_course(root, "alpha", lessons=2)
    rescan(capsys, root, writer)
    admin.execute(
        "update contents set content = content || 'SQL paragraph.'"
        " where file_path = 'alpha/lessons/1.1-lesson-1-1.md'"
    )
    (root / "alpha/lessons/1.1-lesson-1-1.md").rename(root / "alpha/lessons/1.1-renamed.md")
    rescan(capsys, root, writer)
    assert kinds(admin, "alpha/lessons/1.1-renamed.md") == ["created", "app-edit", "repaired"]

    admin.execute(
        "update contents set title = 'App title' where file_path = 'alpha/lessons/1.2-lesson-1-2.md'"
    )
    (root / "alpha").rename(root / "beta")
    rescan(capsys, root, writer)
    rows = admin.execute(
        "select v.kind, v.source is null, v.title from content_versions v"
        " join contents c on c.id = v.content_id where c.file_path = %s order by v.version",
        ("beta/lessons/1.2-lesson-1-2.md",),
    ).fetchall()
    assert [(kind, app) for kind, app, _ in rows] == [
        ("created", False),
        ("app-edit", True),
        ("moved", False),
        ("repaired", False),
    ]
    assert rows[1][2] == "App title" and rows[-1][2] != "App title"


def test_a_restore_never_makes_a_second_row_and_says_why_it_writes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, admin: Conn, writer: str
) -> None:
    """Found by the probe: a restore at a moved row's old path made a second row; one onto a
    folder was reported as the database being unavailable (exit 3); a file holding an older
    version needed --force."""
    root = tmp_path / "courses"
    make_course(root, "alpha", lessons=1)
    old = root / "alpha/lessons/1.1-lesson-1-1.md"
    rescan(capsys, root, writer)
    for n in (1, 2):
        write(old, lesson_text(1, 1, f"Generation {n}."))
        rescan(capsys, root, writer)
    # the file holds version 2 of 3 (a restore, changed back): no edit of it would be lost
    back = history(capsys, root, writer, str(old), "--restore", "2")
    assert back.code == 0 and "restored version 2" in back.stdout
    again = history(capsys, root, writer, str(old), "--restore", "1")
    assert again.code == 0, again.stdout
    rescan(capsys, root, writer)

    new = root / "alpha/lessons/1.1-moved.md"
    old.rename(new)
    rescan(capsys, root, writer)
    for force in ((), ("--force",)):
        refused_run = history(capsys, root, writer, str(old), "--restore", "1", *force)
        assert refused_run.code == 1, refused_run.stdout
        assert "alpha/lessons/1.1-moved.md now" in refused_run.stdout
    assert not old.exists()
    listed = history(capsys, root, writer, str(old))
    assert "(its file is alpha/lessons/1.1-moved.md now)" in listed.stdout

    new.unlink()
    rescan(capsys, root, writer)  # deleted: its last path is free to restore into
    new.mkdir()
    folder = history(capsys, root, writer, str(new), "--restore", "1")
    assert folder.code == 1 and "not restored: cannot" in folder.stdout
    new.rmdir()
    restored = history(capsys, root, writer, str(new), "--restore", "1")
    assert restored.code == 0, restored.stdout
    umask = os.umask(0)
    os.umask(umask)
    assert new.stat().st_mode & 0o777 == 0o666 & ~umask  # as an editor's new file, not 0600
    rescan(capsys, root, writer)
    assert kinds(admin, "alpha/lessons/1.1-moved.md")[-2:] == ["deleted", "revived"]
    assert count(admin, "select 1 from contents where content_type = 'course_lesson'") == 1
    diff = history(capsys, root, writer, str(new), "--diff", "1", "1")
    assert diff.stdout == "(no difference)\n"
    lone = history(capsys, root, writer, str(new), "--force")
    assert lone.code == 2 and "--force goes with --restore" in lone.stderr


def test_a_path_is_printed_with_its_control_characters_escaped() -> None:
    from syncd.history import shown

    assert shown("curso/lessons/1.1-ação\x1b[31m\nx.md") == "curso/lessons/1.1-ação\\x1b[31m\\nx.md"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_restore_run_as_root_leaves_the_file_to_its_owner(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """`sudo syncd history --restore` on a tree a service user owns: the file stays that
    user's (a root-owned lesson would be closed to the generator that writes it)."""
    root = tmp_path / "courses"
    path = make_course(root, "alpha", lessons=1) / "lessons/1.1-lesson-1-1.md"
    rescan(capsys, root, db_dsn)
    write(path, lesson_text(1, 1, "Later."))
    rescan(capsys, root, db_dsn)
    service = 65534  # nobody, as a service user
    os.chown(path, service, service)
    os.chown(path.parent, service, service)
    assert history(capsys, root, db_dsn, str(path), "--restore", "1").code == 0
    assert (path.stat().st_uid, path.stat().st_gid) == (service, service)
    path.unlink()
    assert history(capsys, root, db_dsn, str(path), "--restore", "1").code == 0
    assert path.stat().st_uid == service  # a new file: its folder's owner
