"""Tenants (issue 18, items 4 and 5): no signed-in user can block or take another creator's
file, and a published lesson is readable in its context.

Proven by impersonation, as in test_rls (``SET LOCAL ROLE authenticated`` with the JWT claims
of a user), on plain PostgreSQL and the Supabase-shaped PostgreSQL 15 and 16, and end to end:
syncd, logged in as ``syncd_writer``, syncing creator ana's courses (``SYNCD_CREATOR_MIND``)
while creator bia writes what she may.

The report: signed in as B, an INSERT into B's own project of a row with the predictable
slug of A's next lesson succeeded; when A's file appeared it was rejected for ever. And B saw
A's published lesson but not its project (a join for the course title gave NULL)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from syncd.layout import content_slug
from tests.conftest import Target
from tests.helpers import Run, lesson_text, make_course, run_cli, write
from tests.test_rls import (
    INSERT_CONTENT,
    World,
    acting,
    affected,
    as_user,
    count,
    ids,
    login_writer,
    refused,
    seed,
)

Conn = psycopg.Connection[Any]
RESERVED = "is reserved for syncd"
ANOTHER_PROJECT = "belongs to another project's course"


@pytest.fixture
def conn(db_target: Target) -> Iterator[Conn]:
    """A superuser's connection: it seeds, and impersonates any role."""
    with psycopg.connect(db_target.admin_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def world(conn: Conn) -> World:
    return seed(conn)


def committed_as(conn: Conn, role: str, user: uuid.UUID | None, query: str, *params: Any) -> Any:
    """``query`` run and committed as ``role`` with the claims of ``user`` (what the app, or
    PostgREST, does for that user); its first row, if it returns any."""
    claims = json.dumps({"sub": str(user), "role": role} if user else {"role": role})
    with conn.transaction():
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        cursor = conn.execute(query, params or None)
        return cursor.fetchone() if cursor.description else None


def one(conn: Conn, query: str, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None, query
    return row


# -- item 4: the database refuses the squat --------------------------------------------------


def test_a_signed_in_user_cannot_take_the_slug_of_another_creators_file(
    conn: Conn, world: World
) -> None:
    """The report's squat and its variants, as creator B in B's own project: the slug of A's
    next lesson, a slug changed into A's namespace, the slug of a course that does not exist
    yet, and the legacy slugs of A's existing course."""
    next_lesson = content_slug("course-a", "lessons/9.1-squat.md")
    not_yet = content_slug("not-yet", "lessons/1.1-intro.md")
    b, b_row = world.project["b"], world.content["b_outline"]
    with as_user(conn, world.user["bia"]):
        assert RESERVED in refused(conn, INSERT_CONTENT, next_lesson, b)
        assert RESERVED in refused(
            conn, "update contents set slug = %s where id = %s", next_lesson, b_row
        )
        assert RESERVED in refused(conn, INSERT_CONTENT, not_yet, b)
        for legacy in ("course-a-outline", "course-a-modulo-9", "course-a-licao-9-1"):
            assert ANOTHER_PROJECT in refused(conn, INSERT_CONTENT, legacy, b), legacy
        assert ANOTHER_PROJECT in refused(
            conn, "update contents set slug = 'course-a2-outline' where id = %s", b_row
        )
        # B's own course's legacy slugs, those of a course nobody has, and any slug without
        # "--" stay B's to use.
        assert affected(conn, INSERT_CONTENT, "course-b-modulo-9", b) == 1
        assert affected(conn, INSERT_CONTENT, "someday-outline", b) == 1
        assert affected(conn, "update contents set slug = 'b-renamed' where id = %s", b_row) == 1
    with conn.transaction(force_rollback=True):
        conn.execute("set local role anon")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(INSERT_CONTENT, (not_yet, b))


def test_syncds_namespace_is_written_by_syncd_and_the_owner_alone(
    conn: Conn, world: World, db_target: Target
) -> None:
    """A creator still edits the rows syncd wrote in her project (the slug is untouched),
    but does not write a slug of syncd's namespace, even in her own project; nor does the
    app's service_role. syncd's writer and the tables' owner do."""
    a = world.project["a"]
    synced = conn.execute(
        "insert into contents (content_type, slug, title, project_id)"
        " values ('course_lesson', %s, 'x', %s) returning id",
        (content_slug("course-a", "lessons/1.1-intro.md"), a),
    ).fetchone()
    assert synced is not None
    with as_user(conn, world.user["ana"]):
        assert affected(conn, "update contents set title = 'edited' where id = %s", synced[0]) == 1
        assert RESERVED in refused(conn, INSERT_CONTENT, "course-a--extra", a)
        assert RESERVED in refused(
            conn,
            "update contents set slug = 'course-a--x' where id = %s",
            world.content["a_draft"],
        )
    with acting(conn, "service_role"):
        assert RESERVED in refused(conn, INSERT_CONTENT, "course-a--by-the-app", a)
        assert ANOTHER_PROJECT in refused(
            conn, INSERT_CONTENT, "course-a-outline", world.project["b"]
        )
    with acting(conn, "syncd_writer"):
        assert affected(conn, INSERT_CONTENT, "course-a--by-syncd", a) == 1
    with psycopg.connect(db_target.owner_dsn) as owner:
        assert owner.execute(INSERT_CONTENT, ("course-a--by-the-owner", a)).rowcount == 1
        owner.rollback()


# -- item 4: end to end, syncd against what bia wrote ----------------------------------------

ANA = {"SYNCD_CREATOR_MIND": "ana"}


def rescan(capsys: pytest.CaptureFixture[str], root: Path, dsn: str) -> Run:
    return run_cli(capsys, ["--rescan", "--root", str(root)], dsn, ANA)


def verify(capsys: pytest.CaptureFixture[str], root: Path, dsn: str) -> Run:
    return run_cli(capsys, ["verify", "--root", str(root)], dsn, ANA)


def project_of(conn: Conn, slug: str) -> tuple[uuid.UUID, str | None]:
    """(id, creator mind slug) of the project with this slug."""
    row = one(
        conn,
        "select p.id, m.slug from content_projects p left join minds m on m.id = p.creator_mind_id"
        " where p.slug = %s",
        slug,
    )
    return row[0], row[1]


def test_a_squat_made_before_the_namespace_was_reserved_is_taken_back(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_target: Target, conn: Conn, world: World
) -> None:
    """The report, end to end. B's row holding the slug of A's next lesson was written before
    the namespace was reserved (here by the superuser, whom nothing refuses): A's file still
    syncs to A's project under its own slug; B's row keeps its id, project and text and gets
    another slug, recorded and logged."""
    root = tmp_path / "courses"
    make_course(root, "vibecoding", lessons=2)
    writer = login_writer(db_target)
    assert rescan(capsys, root, writer).code == 0
    squat = content_slug("vibecoding", "lessons/9.1-squat.md")
    squatter = one(
        conn,
        "insert into contents (content_type, slug, title, project_id, status)"
        " values ('course_lesson', %s, 'squatted', %s, 'published') returning id",
        squat,
        world.project["b"],
    )[0]

    write(root / "vibecoding" / "lessons" / "9.1-squat.md", lesson_text(9, 1))
    run = rescan(capsys, root, writer)

    assert run.code == 0, run.stderr
    assert run.named("file rejected") == []
    project, creator = project_of(conn, "vibecoding")
    assert creator == "ana"
    assert one(
        conn,
        "select project_id, slug from contents where file_path = 'vibecoding/lessons/9.1-squat.md'",
    ) == (project, squat)
    kept = one(conn, "select project_id, title, status, slug from contents where id = %s", squatter)
    assert kept[:3] == (world.project["b"], "squatted", "published")
    assert kept[3].startswith("reclaimed--") and kept[3] != squat
    [event] = run.named("slug reclaimed")
    assert event["slug"] == squat and event["from_row"] == str(squatter)
    assert event["path"] == "vibecoding/lessons/9.1-squat.md"
    assert one(
        conn,
        "select slug, new_slug, project_id from syncd.reclaimed_slugs where content_id = %s",
        squatter,
    ) == (squat, kept[3], world.project["b"])
    assert verify(capsys, root, writer).code == 0
    # B's row never stands in for A's: the slug now names A's lesson, which B cannot read
    # (a draft), and B cannot take it again.
    with as_user(conn, world.user["bia"]):
        assert count(conn, "select 1 from contents where slug = %s", squat) == 0
        assert RESERVED in refused(
            conn, "update contents set slug = %s where id = %s", squat + "-2", squatter
        )


def test_slugs_squatted_before_a_course_exists_leave_its_files_alone(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_target: Target, conn: Conn, world: World
) -> None:
    """Before A's course exists B cannot take its file slugs; B may write its legacy outline
    and module slugs (a course of that name does not exist yet): A's outline and modules
    then sync under syncd's own forms."""
    bia = world.user["bia"]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        committed_as(
            conn,
            "authenticated",
            bia,
            INSERT_CONTENT,
            content_slug("later", "lessons/1.1-lesson-1-1.md"),
            world.project["b"],
        )
    for slug in ("later-outline", "later-modulo-1"):
        committed_as(conn, "authenticated", bia, INSERT_CONTENT, slug, world.project["b"])

    root = tmp_path / "courses"
    make_course(root, "later", lessons=2)
    writer = login_writer(db_target)
    run = rescan(capsys, root, writer)

    assert run.code == 0, run.stderr
    assert run.named("file rejected") == []
    project, _ = project_of(conn, "later")
    synced = conn.execute(
        "select content_type, slug from contents where project_id = %s order by 1, 2", (project,)
    ).fetchall()
    assert synced == [
        ("course_lesson", content_slug("later", "lessons/1.1-lesson-1-1.md")),
        ("course_lesson", content_slug("later", "lessons/1.2-lesson-1-2.md")),
        ("course_module", "later--module-1"),
        ("course_outline", "later--outline"),
    ]
    assert verify(capsys, root, writer).code == 0


def test_a_file_whose_slug_a_renamed_course_keeps_syncs_under_a_derived_slug(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_target: Target, conn: Conn
) -> None:
    """A course renamed keeps its rows' slugs (they are syncd's, never taken). A new course
    of the old name has files that derive those slugs: they sync under a derived slug (the
    project's id appended) instead of being rejected for ever."""
    root = tmp_path / "courses"
    make_course(root, "old", lessons=1)
    writer = login_writer(db_target)
    assert rescan(capsys, root, writer).code == 0
    (root / "old").rename(root / "new")
    assert rescan(capsys, root, writer).code == 0
    make_course(root, "old", lessons=1)
    write(root / "old" / "lessons" / "1.1-lesson-1-1.md", lesson_text(1, 1, "A new course."))

    run = rescan(capsys, root, writer)

    assert run.code == 0, run.stderr
    assert run.named("file rejected") == []
    canonical = content_slug("old", "lessons/1.1-lesson-1-1.md")
    renamed, _ = project_of(conn, "new")
    fresh, _ = project_of(conn, "old")
    assert one(conn, "select project_id from contents where slug = %s", canonical) == (renamed,)
    assert one(
        conn, "select slug from contents where file_path = 'old/lessons/1.1-lesson-1-1.md'"
    ) == (f"{canonical}-{fresh.hex[:8]}",)
    assert verify(capsys, root, writer).code == 0


def test_a_project_another_creator_made_is_never_taken(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_target: Target, conn: Conn, world: World
) -> None:
    """B made a project with the slug of A's course folder (by chance or not) before A's
    first sync: syncd writes nothing of A's course into it (before, it took B's project and
    its rows), and names the course with the reason and what A can do: rename the folder."""
    bia = world.user["bia"]
    theirs = committed_as(
        conn,
        "authenticated",
        bia,
        "insert into content_projects (slug, name, creator_mind_id)"
        " values ('newcourse', 'B''s own', %s) returning id",
        world.mind["bia"],
    )[0]
    committed_as(
        conn,
        "authenticated",
        bia,
        "insert into contents (content_type, slug, title, project_id, file_path)"
        " values ('course_lesson', 'bs-lesson', 'B''s', %s, 'newcourse/lessons/1.1-lesson-1-1.md')",
        theirs,
    )
    root = tmp_path / "courses"
    make_course(root, "newcourse", lessons=2)
    writer = login_writer(db_target)

    run = rescan(capsys, root, writer)

    assert one(
        conn, "select name, creator_mind_id, status from content_projects where id = %s", theirs
    ) == ("B's own", world.mind["bia"], "planning")
    assert conn.execute(
        "select slug, title, project_id from contents where project_id = %s", (theirs,)
    ).fetchall() == [("bs-lesson", "B's", theirs)]
    [named] = [e for e in run.named("file rejected") if e["path"] == "newcourse"]
    assert "another creator" in named["reason"] and "rename the course folder" in named["reason"]
    checked = verify(capsys, root, writer)
    assert checked.code == 1
    assert any(
        line.split()[:2] == ["conflict", "newcourse"] for line in checked.stdout.splitlines()
    ), checked.stdout

    (root / "newcourse").rename(root / "newcourse-ana")
    assert rescan(capsys, root, writer).code == 0
    assert project_of(conn, "newcourse-ana")[1] == "ana"
    assert verify(capsys, root, writer).code == 0


def test_a_project_the_creator_made_in_the_app_is_adopted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_target: Target, conn: Conn, world: World
) -> None:
    made = committed_as(
        conn,
        "authenticated",
        world.user["ana"],
        "insert into content_projects (slug, name, creator_mind_id)"
        " values ('appmade', 'Made in the app', %s) returning id",
        world.mind["ana"],
    )[0]
    root = tmp_path / "courses"
    make_course(root, "appmade", lessons=1)
    writer = login_writer(db_target)
    assert rescan(capsys, root, writer).code == 0
    assert project_of(conn, "appmade") == (made, "ana")
    assert count(conn, "select 1 from contents where project_id = %s", made) == 3
    assert verify(capsys, root, writer).code == 0


BRIEF = """---
creator_mind: ana
---

# Course Brief - Briefed

## 1. Informações básicas

**Título do Curso:**
```
Briefed
```

## 2. ICP & Público-alvo

Pessoas que escrevem todos os dias.
"""


def test_an_audience_profile_of_another_creator_is_never_taken(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_target: Target, conn: Conn, world: World
) -> None:
    """B owns an audience profile with the slug A's brief derives (`<course>-audience`):
    syncd neither rewrites it nor points A's project at it (before, it did both, and B, its
    owner, could then edit A's course's audience); the course syncs without it and names
    it."""
    theirs = committed_as(
        conn,
        "authenticated",
        world.user["bia"],
        "insert into audience_profiles (slug, name, owner_mind_id)"
        " values ('briefed-audience', 'B''s audience', %s) returning id",
        world.mind["bia"],
    )[0]
    root = tmp_path / "courses"
    make_course(root, "briefed", lessons=2)
    write(root / "briefed" / "COURSE-BRIEF.md", BRIEF)
    writer = login_writer(db_target)

    run = rescan(capsys, root, writer)

    assert one(
        conn, "select name, description, owner_mind_id from audience_profiles where id = %s", theirs
    ) == ("B's audience", None, world.mind["bia"])
    project, creator = project_of(conn, "briefed")
    assert creator == "ana"
    assert one(conn, "select target_audience_id from content_projects where id = %s", project) == (
        None,
    )
    assert count(conn, "select 1 from contents where project_id = %s", project) == 4
    [named] = [e for e in run.named("file rejected") if "briefed-audience" in e["reason"]]
    assert "another creator" in named["reason"]
    assert verify(capsys, root, writer).code == 1


# -- item 5: published means readable in context ---------------------------------------------


def add_module(conn: Conn, world: World) -> dict[str, uuid.UUID]:
    """Under A's outline: module 1 with a published and a draft lesson, module 2 with a draft
    lesson only."""
    made: dict[str, uuid.UUID] = {}
    for name, kind, parent, order, status in [
        ("m1", "course_module", "a_outline", 1, "draft"),
        ("m1_published", "course_lesson", "m1", 1, "published"),
        ("m1_draft", "course_lesson", "m1", 2, "draft"),
        ("m2", "course_module", "a_outline", 2, "draft"),
        ("m2_draft", "course_lesson", "m2", 1, "draft"),
    ]:
        parent_id = made.get(parent) or world.content[parent]
        made[name] = one(
            conn,
            "insert into contents (content_type, slug, title, project_id, parent_content_id,"
            " sequence_order, status) values (%s, %s, %s, %s, %s, %s, %s) returning id",
            kind,
            f"ctx-{name}",
            f"Title {name}",
            world.project["a"],
            parent_id,
            order,
            status,
        )[0]
    return made


@pytest.mark.parametrize("who", ["bia", "ze", "nobody"])
def test_a_published_lesson_is_read_with_its_project_and_its_structure(
    conn: Conn, world: World, who: str
) -> None:
    """What a signed-in user who is not its creator reads of a published lesson: the lesson,
    its project's row (a join for the course title and slug works), the project's structure
    (its outline and modules: where the lesson sits; the outline's text names every module
    anyway), and the view's project and creator names. Not the draft lessons beside it, not
    the audience, not the links; and none of it for writing."""
    m = add_module(conn, world)
    a, c = world.project["a"], world.content
    with as_user(conn, world.user[who]):
        assert ids(conn, "select id from contents where project_id = %s", a) == {
            c["a_published"],
            c["a_outline"],
            m["m1_published"],
            m["m1"],
            m["m2"],
        }
        assert conn.execute(
            "select p.name, p.slug, mod.title, mod.sequence_order"
            " from contents l join content_projects p on p.id = l.project_id"
            " join contents mod on mod.id = l.parent_content_id where l.id = %s",
            (m["m1_published"],),
        ).fetchall() == [("Course a", "course-a", "Title m1", 1)]
        assert conn.execute(
            "select project_name, creator_name, persona_name from v_contents_with_creators"
            " where id = %s",
            (m["m1_published"],),
        ).fetchall() == [("Course a", "Ana", "Pia")]
        assert ids(conn, "select id from content_projects where id <> %s", world.project["b"]) == {
            a
        }  # a2 has nothing published
        assert (
            count(conn, "select 1 from audience_profiles where id = %s", world.audience["a"]) == 0
        )
        assert (
            count(conn, "select 1 from content_tags where content_id = %s", m["m1_published"]) == 0
        )
        assert affected(conn, "update content_projects set name = 'x' where id = %s", a) == 0
        assert (
            affected(
                conn,
                "update contents set title = 'x' where id = any(%s)",
                [m["m1"], c["a_outline"], m["m1_published"]],
            )
            == 0
        )


def test_the_context_closes_with_the_last_published_row(conn: Conn, world: World) -> None:
    """A soft-deleted or unpublished row opens nothing; the project and its structure stay
    readable while one published row is left, and close with it."""
    m = add_module(conn, world)
    a, c = world.project["a"], world.content
    conn.execute("update contents set deleted_at = now() where id = %s", (m["m1_published"],))
    conn.execute("update contents set deleted_at = now() where id = %s", (m["m2"],))
    with as_user(conn, world.user["ze"]):
        assert ids(conn, "select id from contents where project_id = %s", a) == {
            c["a_published"],
            c["a_outline"],
            m["m1"],
        }
    conn.execute("update contents set status = 'draft' where id = %s", (c["a_published"],))
    with as_user(conn, world.user["ze"]):
        assert count(conn, "select 1 from contents where project_id = %s", a) == 0
        assert count(conn, "select 1 from content_projects where id = %s", a) == 0
