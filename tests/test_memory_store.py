"""The real Reconciler and verify on the in-memory store: the whole-tree pass, renames,
ownership, the archive guard, repairs and verify's verdicts, without PostgreSQL (real
folders, a fake clock). The contract tests at the end run the same scenario on the SQL
store and compare the counts, so that the in-memory store cannot drift from it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from syncd.course import ParseOptions
from syncd.database import DbSettings, connect
from syncd.errors import RootUnavailable
from syncd.memory import MemoryDatabase, MemoryStore
from syncd.reconcile import Reconciler
from syncd.scheduler import CourseScheduler
from syncd.storage import CourseStorage
from syncd.store import CourseStore
from syncd.tree_pass import Summary
from syncd.verify import Report, verify
from tests.helpers import Clock, InlineExecutor, Log, lesson_text, make_course, write

T = TypeVar("T")
MAX_FILE_BYTES = 2 * 1024 * 1024
LESSON = "lessons/1.2-lesson-1-2.md"


class Tree:
    """One source's root and its reconciler (one process: it remembers folder ids)."""

    def __init__(self, root: Path, store: CourseStorage) -> None:
        self.root, self.store, self.log = root, store, Log()
        self.reconciler = Reconciler(
            root=root, store=store, options=ParseOptions(), log=self.log, clock=Clock(), host="h"
        )

    def rescan(self) -> Summary:
        self.log.events.clear()
        return self.reconciler.reconcile_all(CourseScheduler(1, InlineExecutor()))

    def verify(self) -> Report:
        return verify(self.root, self.store, ParseOptions(), MAX_FILE_BYTES)

    def drifts(self) -> list[tuple[str, str, tuple[str, ...]]]:
        return [(d.kind, d.path, d.fields) for d in self.verify().drifts]


def counts(summary: Summary) -> tuple[int, ...]:
    """courses, inserted, updated, deleted, unchanged, skipped, archived, rejected, failed"""
    s = summary
    return (
        s.courses,
        s.inserted,
        s.updated,
        s.deleted,
        s.unchanged,
        s.skipped,
        s.archived,
        len(s.rejected),
        len(s.failed),
    )


@pytest.fixture
def db() -> MemoryDatabase:
    return MemoryDatabase(clock=Clock())


@pytest.fixture
def tree(tmp_path: Path, db: MemoryDatabase) -> Tree:
    root = tmp_path / "courses"
    make_course(root, "alpha", lessons=3)
    make_course(root, "beta", lessons=1)
    return Tree(root, MemoryStore(db, source="here"))


def ids(db: MemoryDatabase, slug: str) -> dict[str, Any]:
    """slug -> id of the project's live rows."""
    return {row.slug: row.id for row in db.rows(slug)}


# -- the whole-tree pass --------------------------------------------------------------------


def test_a_first_pass_inserts_every_course_and_the_next_skips_them_unread(
    tree: Tree, db: MemoryDatabase
) -> None:
    first = tree.rescan()
    # alpha: outline, module 1, three lessons; beta: outline, module 1, one lesson
    assert counts(first) == (2, 8, 0, 0, 0, 0, 0, 0, 0)
    assert len(db.rows("alpha")) == 5 and len(db.rows("beta")) == 3
    assert counts(tree.rescan()) == (2, 0, 0, 0, 0, 2, 0, 0, 0)
    assert tree.drifts() == []


def test_an_edited_lesson_updates_its_row_alone_and_keeps_its_id(
    tree: Tree, db: MemoryDatabase
) -> None:
    tree.rescan()
    before = db.row(f"alpha/{LESSON}")
    write(tree.root / "alpha" / LESSON, lesson_text(1, 2, "edited"))

    assert counts(tree.rescan()) == (2, 0, 1, 0, 4, 1, 0, 0, 0)
    after = db.row(f"alpha/{LESSON}")
    assert after.id == before.id and "edited" in (after.content or "")


def test_a_lesson_file_removed_soft_deletes_its_row(tree: Tree, db: MemoryDatabase) -> None:
    tree.rescan()
    (tree.root / "alpha" / LESSON).unlink()

    assert counts(tree.rescan()) == (2, 0, 0, 1, 4, 1, 0, 0, 0)
    assert db.row(f"alpha/{LESSON}").deleted_at is not None
    assert tree.drifts() == []


# -- renames --------------------------------------------------------------------------------


def test_a_renamed_course_folder_keeps_its_project_and_row_ids(
    tree: Tree, db: MemoryDatabase
) -> None:
    tree.rescan()
    project = db.project("alpha")
    assert project is not None
    before = ids(db, "alpha")
    (tree.root / "alpha").rename(tree.root / "Novo Nome")

    run = tree.rescan()

    assert [(e["old"], e["new"]) for e in tree.log.named("course renamed")] == [
        ("alpha", "Novo Nome")
    ]
    assert run.archived == 0 and run.inserted == 0
    moved = db.project("novo-nome")
    assert moved is not None and moved.id == project.id and moved.status == "planning"
    assert ids(db, "novo-nome") == before
    assert all((r.file_path or "Novo Nome/").startswith("Novo Nome/") for r in db.rows("novo-nome"))
    assert tree.drifts() == []
    assert counts(tree.rescan()) == (2, 0, 0, 0, 0, 2, 0, 0, 0)


def test_a_copy_of_a_course_is_a_new_course_while_its_moved_original_keeps_its_ids(
    tree: Tree, db: MemoryDatabase
) -> None:
    """``cp -r alpha a-copy; mv alpha zeta``: the copy sorts first and holds the same files,
    but only the folder that was alpha (its inode) takes alpha's identity."""
    tree.rescan()
    before = ids(db, "alpha")
    shutil.copytree(tree.root / "alpha", tree.root / "a-copy")
    (tree.root / "alpha").rename(tree.root / "zeta")

    run = tree.rescan()

    assert [(e["old"], e["new"]) for e in tree.log.named("course renamed")] == [("alpha", "zeta")]
    assert ids(db, "zeta") == before
    copy = ids(db, "a-copy")
    assert len(copy) == 5 and not set(copy.values()) & set(before.values())
    assert run.archived == 0
    assert tree.drifts() == []


# -- ownership ------------------------------------------------------------------------------


def test_a_course_another_source_owns_is_a_conflict_and_nothing_is_written(
    tmp_path: Path, db: MemoryDatabase
) -> None:
    mine = Tree(tmp_path / "a" / "courses", MemoryStore(db, source="a"))
    theirs = Tree(tmp_path / "b" / "courses", MemoryStore(db, source="b"))
    make_course(mine.root, "shared", lessons=2)
    make_course(theirs.root, "shared", lessons=3)
    mine.rescan()
    before = {r.id: r.content for r in db.rows("shared")}

    run = theirs.rescan()

    assert [(i.path, i.kind) for i in run.rejected] == [("shared", "conflict")]
    assert run.inserted == run.updated == run.deleted == 0
    assert {r.id: r.content for r in db.rows("shared")} == before
    assert db.tables.conflicts == {("shared", "b"): "a"}
    assert [(d.kind, d.path) for d in theirs.verify().drifts] == [("conflict", "shared")]
    assert theirs.store.fingerprints()["shared"].source == "a"


def test_a_course_of_a_retired_source_is_adopted(tmp_path: Path, db: MemoryDatabase) -> None:
    old = Tree(tmp_path / "a" / "courses", MemoryStore(db, source="old"))
    make_course(old.root, "course", lessons=1)
    old.rescan()
    db.retire_source("old")
    new = Tree(old.root, MemoryStore(db, source="new"))

    assert counts(new.rescan()) == (1, 0, 0, 0, 0, 1, 0, 0, 0)
    assert new.store.fingerprints()["course"].source == "new"


# -- the archive guard ----------------------------------------------------------------------


def test_a_root_emptied_archives_nothing(tree: Tree, db: MemoryDatabase) -> None:
    tree.rescan()
    for name in ("alpha", "beta"):
        shutil.rmtree(tree.root / name)

    with pytest.raises(RootUnavailable, match="holds no course"):
        tree.rescan()
    assert not any(k.archived for k in tree.store.fingerprints().values())


def test_a_root_missing_archives_nothing(tree: Tree) -> None:
    tree.rescan()
    tree.root.rename(tree.root.with_name("elsewhere"))

    with pytest.raises(RootUnavailable, match="unreadable"):
        tree.rescan()
    assert not any(k.archived for k in tree.store.fingerprints().values())


def test_a_root_unreadable_archives_nothing(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    tree.rescan()
    scandir = os.scandir

    def refuse(path: Any) -> Any:
        if Path(path) == tree.root:
            raise PermissionError(13, "Permission denied")
        return scandir(path)

    monkeypatch.setattr("syncd.tree.os.scandir", refuse)  # the suite runs as root, too

    with pytest.raises(RootUnavailable, match="unreadable"):
        tree.rescan()
    assert not any(k.archived for k in tree.store.fingerprints().values())


def test_a_course_folder_gone_is_archived_only_for_the_source_that_owns_it(
    tmp_path: Path, tree: Tree, db: MemoryDatabase
) -> None:
    other = Tree(tmp_path / "other" / "courses", MemoryStore(db, source="there"))
    make_course(other.root, "gamma", lessons=1)
    other.rescan()
    tree.rescan()
    shutil.rmtree(tree.root / "beta")

    run = tree.rescan()

    assert run.archived == 1
    assert [e["course"] for e in tree.log.named("course archived")] == ["beta"]
    known = tree.store.fingerprints()
    assert known["beta"].archived and not known["gamma"].archived
    beta = db.project("beta")
    assert beta is not None and beta.status == "archived"
    assert all(r.deleted_at is not None for r in db.rows("beta", live=False))
    assert tree.drifts() == []


def test_an_archived_course_that_returns_is_restored_with_its_ids(
    tmp_path: Path, tree: Tree, db: MemoryDatabase
) -> None:
    tree.rescan()
    before = ids(db, "beta")
    (tree.root / "beta").rename(tmp_path / "parked")
    assert tree.rescan().archived == 1
    (tmp_path / "parked").rename(tree.root / "beta")

    tree.rescan()

    beta = db.project("beta")
    assert beta is not None and beta.status == "planning"
    assert ids(db, "beta") == before


# -- rows changed in the app ----------------------------------------------------------------


def test_a_row_edited_in_the_app_is_rewritten_from_its_file(tree: Tree, db: MemoryDatabase) -> None:
    tree.rescan()
    db.edit_row(f"alpha/{LESSON}", title="Set in the app")

    run = tree.rescan()

    assert run.updated == 1
    assert [(e["path"], e["fields"]) for e in tree.log.named("row repaired")] == [
        (f"alpha/{LESSON}", ["title"])
    ]
    assert db.row(f"alpha/{LESSON}").title != "Set in the app"
    assert tree.drifts() == []


def test_a_row_edited_in_the_app_before_its_course_folder_is_renamed_is_still_repaired(
    tree: Tree, db: MemoryDatabase
) -> None:
    """As the SQL rename: the rename's own write does not hide someone else's."""
    tree.rescan()
    db.edit_row(f"alpha/{LESSON}", title="Set in the app")
    (tree.root / "alpha").rename(tree.root / "gamma")

    tree.rescan()

    assert [(e["path"], e["fields"]) for e in tree.log.named("row repaired")] == [
        (f"gamma/{LESSON}", ["title"])
    ]
    assert db.row(f"gamma/{LESSON}").title != "Set in the app"
    assert tree.drifts() == []


def test_a_row_deleted_in_the_app_is_re_created(tree: Tree, db: MemoryDatabase) -> None:
    tree.rescan()
    db.delete_row(f"alpha/{LESSON}")

    assert tree.rescan().inserted == 1
    assert [e["path"] for e in tree.log.named("row repaired")] == [f"alpha/{LESSON}"]
    assert tree.drifts() == []


def test_a_status_set_in_the_app_survives_a_sync(tree: Tree, db: MemoryDatabase) -> None:
    tree.rescan()
    db.edit_row(f"alpha/{LESSON}", status="published")
    write(tree.root / "alpha" / LESSON, lesson_text(1, 2, "edited"))

    tree.rescan()

    assert db.row(f"alpha/{LESSON}").status == "published"


# -- verify's verdicts ----------------------------------------------------------------------


def test_verify_says_each_kind_of_drift(tree: Tree, db: MemoryDatabase) -> None:
    tree.rescan()
    assert tree.verify().in_sync
    write(tree.root / "alpha" / LESSON, lesson_text(1, 2, "edited"))  # a file edited
    db.edit_row("alpha/lessons/1.1-lesson-1-1.md", title="x")  # a row changed
    (tree.root / "alpha/lessons/1.3-lesson-1-3.md").unlink()  # a file gone
    write(tree.root / "alpha/lessons/1.4-new.md", lesson_text(1, 4))  # a file new
    shutil.rmtree(tree.root / "beta")  # a course gone, not archived yet

    assert sorted(tree.drifts()) == [
        ("course-gone", "beta", ()),
        ("gone", "alpha/lessons/1.3-lesson-1-3.md", ()),
        ("missing", "alpha/lessons/1.4-new.md", ()),
        ("stale", "alpha/lessons/1.1-lesson-1-1.md", ("title",)),
        ("stale", f"alpha/{LESSON}", ("content",)),
    ]
    tree.rescan()
    assert tree.drifts() == []


def test_verify_names_a_project_changed_in_the_app(tree: Tree, db: MemoryDatabase) -> None:
    tree.rescan()
    db.edit_project("alpha", name="Renamed in the app")

    assert tree.drifts() == [("stale", "alpha", ("name",))]
    tree.rescan()
    assert [e["action"] for e in tree.log.named("row repaired")] == [
        "project rewritten from its files"
    ]
    assert tree.drifts() == []


def test_verify_names_the_files_the_database_refused(tree: Tree, db: MemoryDatabase) -> None:
    tree.rescan()
    db.delete_row(f"alpha/{LESSON}")
    with db.transaction() as t:
        project = t.project_of("alpha")
        assert project is not None
        t.refused[f"alpha/{LESSON}"] = (project.id, "too long (SQLSTATE 54000)")

    assert tree.drifts() == [("refused", f"alpha/{LESSON}", ())]


# -- the contract: the same scenario on PostgreSQL gives the same counts ----------------------


def scenario(root: Path, store: CourseStorage) -> list[tuple[Any, ...]]:
    """A first pass, an unchanged pass, an edit, a new and a removed lesson, a rename, a
    course gone; each pass's counts and verify's verdict after it."""
    tree = Tree(root, store)
    make_course(root, "alpha", lessons=3)
    make_course(root, "beta", lessons=1)
    make_course(root, "gamma", lessons=6)
    steps: list[Callable[[], None]] = [
        lambda: None,
        lambda: None,
        lambda: write(root / "alpha" / LESSON, lesson_text(1, 2, "edited")),
        lambda: write(root / "gamma/lessons/2.2-new.md", lesson_text(2, 2)),
        (root / "gamma/lessons/1.1-lesson-1-1.md").unlink,
        lambda: (root / "alpha").rename(root / "Alpha Two"),
        lambda: shutil.rmtree(root / "beta"),
    ]
    seen: list[tuple[Any, ...]] = []
    for step in steps:
        step()
        summary = tree.rescan()
        renamed = [(e["old"], e["new"], e["rows"]) for e in tree.log.named("course renamed")]
        seen.append((counts(summary), renamed, sorted(tree.drifts())))
    return seen


def test_the_memory_store_counts_as_the_sql_store_does(tmp_path: Path, db_dsn: str) -> None:
    with connect(DbSettings(db_dsn)) as conn:
        sql = CourseStore(lambda: nullcontext(conn), source="here")  # as `syncd verify` does
        expected = scenario(tmp_path / "sql" / "courses", sql)
    assert scenario(tmp_path / "memory" / "courses", MemoryStore(source="here")) == expected


class SqlApp:
    """Edits made in the app, on PostgreSQL."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def run(self, statement: str, *params: Any) -> None:
        with psycopg.connect(self.dsn) as conn:
            conn.execute(statement, params)

    def edit_title(self, path: str) -> None:
        self.run("update contents set title = 'app' where file_path = %s", path)

    def delete_row(self, path: str) -> None:
        self.run("delete from contents where file_path = %s", path)

    def edit_project(self, slug: str) -> None:
        self.run("update content_projects set name = 'app' where slug = %s", slug)


class MemoryApp:
    def __init__(self, db: MemoryDatabase) -> None:
        self.db = db

    def edit_title(self, path: str) -> None:
        self.db.edit_row(path, title="app")

    def delete_row(self, path: str) -> None:
        self.db.delete_row(path)

    def edit_project(self, slug: str) -> None:
        self.db.edit_project(slug, name="app")


def app_scenario(
    base: Path, stores: Callable[[str], CourseStorage], app: SqlApp | MemoryApp
) -> list[tuple[Any, ...]]:
    """Rows changed in the app, verified then repaired; a course two sources both have."""
    mine, theirs = Tree(base / "a", stores("a")), Tree(base / "b", stores("b"))
    make_course(mine.root, "alpha", lessons=3)
    make_course(mine.root, "shared", lessons=2)
    make_course(theirs.root, "shared", lessons=1)
    make_course(theirs.root, "theirs", lessons=2)
    steps: list[Callable[[], None]] = [
        lambda: None,
        lambda: app.edit_title(f"alpha/{LESSON}"),
        lambda: app.delete_row("alpha/lessons/1.3-lesson-1-3.md"),
        lambda: app.edit_project("alpha"),
    ]
    seen: list[tuple[Any, ...]] = []
    for step in steps:
        step()
        drifts = sorted(mine.drifts())
        summary = mine.rescan()
        repaired = sorted((e["path"], e["action"]) for e in mine.log.named("row repaired"))
        seen.append((drifts, counts(summary), repaired, sorted(mine.drifts())))
    summary = theirs.rescan()
    seen.append((counts(summary), [(i.path, i.kind) for i in summary.rejected], theirs.drifts()))
    return seen


def test_the_memory_store_repairs_and_refuses_as_the_sql_store_does(
    tmp_path: Path, db_dsn: str
) -> None:
    with connect(DbSettings(db_dsn)) as conn:
        expected = app_scenario(
            tmp_path / "sql",
            lambda source: CourseStore(lambda: nullcontext(conn), source=source),
            SqlApp(db_dsn),
        )
    db = MemoryDatabase()
    got = app_scenario(
        tmp_path / "memory", lambda source: MemoryStore(db, source=source), MemoryApp(db)
    )
    assert got == expected
    assert any(drifts for drifts, *_ in expected[1:4])  # the edits were seen, then repaired


def test_a_rename_moves_the_rows_paths_and_keys_at_once(tree: Tree, db: MemoryDatabase) -> None:
    """Before the next sync looks at them: the sync then finds each row by its key."""
    tree.rescan()
    before = ids(db, "alpha")

    moved = tree.store.rename_course("alpha", "Novo Nome", "novo-nome")

    assert moved == 4 and ids(db, "novo-nome") == before  # the rows with a file
    paths = {r.file_path for r in db.rows("novo-nome")}
    assert paths == {None, "Novo Nome/curriculum.yaml"} | {
        f"Novo Nome/lessons/1.{n}-lesson-1-{n}.md" for n in (1, 2, 3)
    }
    assert {m.row_key for m in db.tables.marks.values() if m.row_key.startswith("file:Novo")}
    assert set(tree.store.fingerprints()) == {"Novo Nome", "beta"}
