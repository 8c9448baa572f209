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

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from syncd.parser import content_slug
from tests.conftest import Target
from tests.test_rls import (
    INSERT_CONTENT,
    World,
    acting,
    affected,
    as_user,
    count,
    ids,
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
def test_a_published_lesson_is_read_with_its_project_and_the_rows_it_hangs_under(
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
