"""Row-level security and the least-privilege writer, proven by impersonation on a real
PostgreSQL: inside a transaction, ``SET LOCAL ROLE authenticated`` (or anon, service_role,
syncd_writer) with the JWT claims in ``request.jwt.claims``, as PostgREST does. Every
impersonated transaction is rolled back, so each check starts from the same fixture.

Every scenario runs on three databases (``db_target``): plain PostgreSQL, and the
Supabase-shaped ones on PostgreSQL 15 and 16, where the migrations ran as the demoted
``postgres`` and the API roles hold Supabase's default privileges."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.conninfo import make_conninfo

from syncd import migrate
from syncd.privileges import REQUIRED, ROW_ACCESS, WRITTEN_TABLES, missing_privileges
from tests.conftest import Target
from tests.helpers import EXAMPLES, Run, run_cli

Conn = psycopg.Connection[Any]

CHECK_SCRIPT = migrate.schema_dir() / "checks" / "rls_scenarios.sql"
CREATOROS_TABLES = (
    "content_projects",
    "contents",
    "content_minds",
    "content_tags",
    "audience_profiles",
)


# -- fixture -------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """Creators ana (projects a, a2) and bia (project b); pia is the persona of a; olga owns
    the audience profile b targets; ze is signed in and owns nothing; nobody is an auth user
    without a mind."""

    user: dict[str, uuid.UUID]
    mind: dict[str, uuid.UUID]
    audience: dict[str, uuid.UUID]  # a, spare (ana's), o (olga's), free (no owner)
    project: dict[str, uuid.UUID]
    content: dict[str, uuid.UUID]
    tag: int

    def contents_of(self, prefix: str) -> list[uuid.UUID]:
        return [v for k, v in self.content.items() if k.startswith(prefix)]


def _ids(*names: str) -> dict[str, uuid.UUID]:
    return {name: uuid.uuid4() for name in names}


def seed(conn: Conn) -> World:
    """The fixture, written as the superuser (RLS does not apply to it)."""
    user = _ids("ana", "bia", "pia", "olga", "ze", "nobody")
    mind = _ids("ana", "bia", "pia", "olga", "ze")
    audience = _ids("a", "spare", "o", "free")
    project = _ids("a", "a2", "b")
    content = _ids(
        "a_outline",
        "a_draft",
        "a_published",
        "a_published_deleted",
        "a_draft_deleted",
        "b_outline",
        "b_published",
    )
    with conn.transaction():
        for name, uid in user.items():
            conn.execute(
                "insert into auth.users (id, email) values (%s, %s)", (uid, f"{name}@example.com")
            )
        for name, mid in mind.items():
            conn.execute(
                "insert into public.minds (id, slug, display_name) values (%s, %s, %s)",
                (mid, name, name.title()),
            )
            conn.execute(
                "insert into public.user_profiles (id, mind_id) values (%s, %s)",
                (user[name], mid),
            )
        for name, aid, owner in [
            ("a", audience["a"], mind["ana"]),
            ("spare", audience["spare"], mind["ana"]),
            ("o", audience["o"], mind["olga"]),
            ("free", audience["free"], None),
        ]:
            conn.execute(
                "insert into public.audience_profiles (id, slug, name, owner_mind_id)"
                " values (%s, %s, %s, %s)",
                (aid, f"aud-{name}", f"Audience {name}", owner),
            )
        for name, creator, persona, target in [
            ("a", "ana", "pia", "a"),
            ("a2", "ana", None, "free"),
            ("b", "bia", None, "o"),
        ]:
            conn.execute(
                "insert into public.content_projects (id, slug, name, project_type,"
                " creator_mind_id, persona_mind_id, target_audience_id)"
                " values (%s, %s, %s, 'course', %s, %s, %s)",
                (
                    project[name],
                    f"course-{name}",
                    f"Course {name}",
                    mind[creator],
                    mind[persona] if persona else None,
                    audience[target],
                ),
            )
        for name, kind, owner, parent, status, deleted in [
            ("a_outline", "course_outline", "a", None, "draft", False),
            ("a_draft", "course_lesson", "a", "a_outline", "draft", False),
            ("a_published", "course_lesson", "a", "a_outline", "published", False),
            ("a_published_deleted", "course_lesson", "a", "a_outline", "published", True),
            ("a_draft_deleted", "course_lesson", "a", "a_outline", "draft", True),
            ("b_outline", "course_outline", "b", None, "draft", False),
            ("b_published", "course_lesson", "b", "b_outline", "published", False),
        ]:
            conn.execute(
                "insert into public.contents (id, content_type, slug, title, project_id,"
                " parent_content_id, status, deleted_at)"
                " values (%s, %s, %s, %s, %s, %s, %s, case when %s then now() end)",
                (
                    content[name],
                    kind,
                    name.replace("_", "-"),
                    name,
                    project[owner],
                    content[parent] if parent else None,
                    status,
                    deleted,
                ),
            )
        row = conn.execute(
            "insert into public.tags (name, tag_type) values ('python', 'theme') returning id"
        ).fetchone()
        assert row is not None
        tag: int = row[0]
        conn.execute(
            "insert into public.content_tags (content_id, tag_id)"
            " select id, %s from public.contents",
            (tag,),
        )
        conn.execute(
            "insert into public.content_minds (content_id, mind_id, role)"
            " select c.id, p.creator_mind_id, 'creator'"
            " from public.contents c join public.content_projects p on p.id = c.project_id"
            " union all select %s, %s, 'contributor'",
            (content["a_outline"], mind["pia"]),
        )
    return World(user, mind, audience, project, content, tag)


@pytest.fixture
def conn(db_target: Target) -> Iterator[Conn]:
    """A superuser's connection (it seeds, and impersonates any role)."""
    with psycopg.connect(db_target.admin_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def plain_conn(db_dsn: str) -> Iterator[Conn]:
    with psycopg.connect(db_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def world(conn: Conn) -> World:
    return seed(conn)


# -- impersonation ---------------------------------------------------------------------------


@contextmanager
def acting(conn: Conn, role: str, user: uuid.UUID | None = None) -> Iterator[Conn]:
    """A transaction as ``role`` (with the claims of auth user ``user``), rolled back."""
    # Always valid JSON: Supabase's auth.uid() casts the claims to jsonb, as PostgREST sets them.
    claims = json.dumps({"sub": str(user), "role": role} if user else {"role": role})
    with conn.transaction(force_rollback=True):
        conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        yield conn


def as_user(conn: Conn, user: uuid.UUID) -> Any:
    return acting(conn, "authenticated", user)


def ids(conn: Conn, query: str, *params: Any) -> set[Any]:
    return {row[0] for row in conn.execute(query, params or None).fetchall()}


def count(conn: Conn, query: str, *params: Any) -> int:
    row = conn.execute(f"select count(*) from ({query}) as q", params or None).fetchone()
    assert row is not None
    return int(row[0])


def affected(conn: Conn, query: str, *params: Any) -> int:
    return conn.execute(query, params or None).rowcount


def refused(conn: Conn, query: str, *params: Any) -> str:
    """The message of the 42501 error ``query`` raises (in a savepoint, so the transaction
    goes on)."""
    with pytest.raises(errors.InsufficientPrivilege) as caught, conn.transaction():
        conn.execute(query, params or None)
    assert caught.value.sqlstate == "42501"
    return str(caught.value)


def rls_refused(conn: Conn, query: str, *params: Any) -> None:
    message = refused(conn, query, *params)
    assert "violates row-level security policy" in message, message


def denied(conn: Conn, query: str, *params: Any) -> None:
    message = refused(conn, query, *params)
    assert message.startswith("permission denied"), message


def without_effect(conn: Conn, query: str, *params: Any) -> None:
    """``query`` changes nothing: refused for lack of a privilege (plain PostgreSQL), or
    admitted by the privilege and filtered to no row by RLS (Supabase's default grants)."""
    try:
        with conn.transaction():
            assert conn.execute(query, params or None).rowcount == 0, query
    except errors.InsufficientPrivilege as exc:
        assert str(exc).startswith("permission denied"), exc


INSERT_CONTENT = (
    "insert into public.contents (content_type, slug, title, project_id)"
    " values ('course_lesson', %s, 'x', %s)"
)


# -- scenarios -------------------------------------------------------------------------------


def test_creator_b_neither_sees_nor_touches_creator_as_rows(conn: Conn, world: World) -> None:
    a_projects = [world.project["a"], world.project["a2"]]
    a_contents = world.contents_of("a_")
    with as_user(conn, world.user["bia"]):
        # Of A's rows B sees only what every signed-in user sees: the published row with its
        # context, the project it belongs to and the outline it hangs under (issue 18 item 5,
        # tests/test_tenants.py); a2, with nothing published, not at all.
        assert ids(conn, "select id from content_projects") == {
            world.project["b"],
            world.project["a"],
        }
        assert ids(conn, "select id from contents where id = any(%s)", a_contents) == {
            world.content["a_published"],
            world.content["a_outline"],
        }
        assert (
            count(conn, "select 1 from content_minds where content_id = any(%s)", a_contents) == 0
        )
        assert count(conn, "select 1 from content_tags where content_id = any(%s)", a_contents) == 0
        assert ids(conn, "select id from audience_profiles") == {world.audience["o"]}

        assert (
            affected(conn, "update content_projects set name = 'x' where id = any(%s)", a_projects)
            == 0
        )
        assert affected(conn, "delete from content_projects where id = any(%s)", a_projects) == 0
        assert affected(conn, "update contents set title = 'x' where id = any(%s)", a_contents) == 0
        assert affected(conn, "delete from contents where id = any(%s)", a_contents) == 0
        assert (
            affected(conn, "delete from content_tags where content_id = any(%s)", a_contents) == 0
        )
        assert (
            affected(
                conn,
                "update content_minds set role = 'other' where content_id = any(%s)",
                a_contents,
            )
            == 0
        )
        assert (
            affected(
                conn, "update audience_profiles set name = 'x' where id = %s", world.audience["a"]
            )
            == 0
        )
        assert (
            affected(conn, "delete from audience_profiles where id = %s", world.audience["a"]) == 0
        )

        rls_refused(conn, INSERT_CONTENT, "intruder", world.project["a"])
        rls_refused(
            conn,
            "update contents set project_id = %s where id = %s",
            world.project["a"],
            world.content["b_outline"],
        )
        rls_refused(
            conn,
            "insert into content_tags (content_id, tag_id) values (%s, %s)",
            world.content["a_draft"],
            world.tag,
        )
        rls_refused(
            conn,
            "insert into content_minds (content_id, mind_id, role) values (%s, %s, 'co_author')",
            world.content["a_published"],
            world.mind["bia"],
        )
        rls_refused(
            conn,
            "insert into content_projects (slug, name, creator_mind_id) values ('fake', 'x', %s)",
            world.mind["ana"],
        )
        rls_refused(
            conn,
            "update content_projects set creator_mind_id = %s where id = %s",
            world.mind["ana"],
            world.project["b"],
        )


def test_the_service_role_sees_and_writes_everything(conn: Conn, world: World) -> None:
    totals = {t: count(conn, f"select 1 from public.{t}") for t in CREATOROS_TABLES}
    with acting(conn, "service_role"):
        assert {t: count(conn, f"select 1 from public.{t}") for t in CREATOROS_TABLES} == totals
        assert affected(conn, "update contents set title = title || '!'") == totals["contents"]
        assert affected(conn, INSERT_CONTENT, "by-service", world.project["a"]) == 1
        assert (
            affected(
                conn, "delete from content_minds where content_id = %s", world.content["a_outline"]
            )
            == 2
        )
        assert (
            affected(conn, "insert into audience_profiles (slug, name) values ('shared', 'x')") == 1
        )
        assert (
            affected(
                conn,
                "update content_projects set creator_mind_id = %s where id = %s",
                world.mind["ana"],
                world.project["b"],
            )
            == 1
        )


@pytest.mark.parametrize("who", ["ze", "nobody"])
def test_published_rows_are_readable_by_every_authenticated_user_unless_soft_deleted(
    conn: Conn, world: World, who: str
) -> None:
    published = {world.content["a_published"], world.content["b_published"]}
    context = {world.content["a_outline"], world.content["b_outline"]}  # what they hang under
    with as_user(conn, world.user[who]):
        assert ids(conn, "select id from contents") == published | context
        assert ids(conn, "select id from v_contents_with_creators") == published | context
        assert (
            count(
                conn, "select 1 from contents where id = %s", world.content["a_published_deleted"]
            )
            == 0
        )
        assert (
            affected(conn, "update contents set title = 'x' where id = any(%s)", list(published))
            == 0
        )
        # their projects, for reading (issue 18 item 5)
        assert ids(conn, "select id from content_projects") == {
            world.project["a"],
            world.project["b"],
        }
        assert affected(conn, "update content_projects set name = 'x'") == 0


ANON_OBJECTS = (*CREATOROS_TABLES, "v_contents_with_creators")


def anon_may_do_anything(conn: Conn) -> list[str]:
    rows = conn.execute(
        "select t from unnest(%s::text[]) as t where has_table_privilege("
        "'anon', 'public.' || t, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER')",
        (list(ANON_OBJECTS),),
    ).fetchall()
    return [r[0] for r in rows]


def test_anon_is_refused_outright(conn: Conn, world: World) -> None:
    """anon holds no privilege on the CreatorOS tables, so it gets "permission denied", not
    an empty result: deliberate, and the same with a signed-in user's claims. On the
    Supabase-shaped databases anon had every privilege through default privileges."""
    assert anon_may_do_anything(conn) == []
    for claims in (None, world.user["ana"]):
        with acting(conn, "anon", claims):
            for table in ANON_OBJECTS:
                denied(conn, f"select 1 from public.{table}")
            denied(conn, "insert into audience_profiles (slug, name) values ('anon', 'x')")


def test_the_persona_reads_the_project_row_but_not_its_unpublished_contents(
    conn: Conn, world: World
) -> None:
    with as_user(conn, world.user["pia"]):
        # a as its persona; b as every signed-in user does (it has a published row)
        assert ids(conn, "select id from content_projects") == {
            world.project["a"],
            world.project["b"],
        }
        # what every signed-in user reads: the published row and the outline it hangs under
        assert ids(conn, "select id from contents where project_id = %s", world.project["a"]) == {
            world.content["a_published"],
            world.content["a_outline"],
        }
        assert count(conn, "select 1 from content_minds") == 0  # not even its own link
        assert (
            affected(
                conn, "update content_projects set name = 'x' where id = %s", world.project["a"]
            )
            == 0
        )
        rls_refused(conn, INSERT_CONTENT, "by-persona", world.project["a"])


def test_link_tables_are_protected_through_their_parent_content(conn: Conn, world: World) -> None:
    a_contents = world.contents_of("a_")
    b_contents = world.contents_of("b_")
    with as_user(conn, world.user["ana"]):
        # Reads: every link of its own contents (soft-deleted ones included), none of B's.
        assert (
            count(conn, "select 1 from content_minds where content_id = any(%s)", a_contents) == 6
        )
        assert count(conn, "select 1 from content_tags where content_id = any(%s)", a_contents) == 5
        assert (
            count(conn, "select 1 from content_minds where content_id = any(%s)", b_contents) == 0
        )
        assert count(conn, "select 1 from content_tags where content_id = any(%s)", b_contents) == 0
        # Writes on its own links go through.
        assert (
            affected(
                conn,
                "insert into content_minds (content_id, mind_id, role) values (%s, %s, 'guest')",
                world.content["a_draft"],
                world.mind["ze"],
            )
            == 1
        )
        assert (
            affected(
                conn,
                "update content_minds set role = 'author' where content_id = %s and mind_id = %s",
                world.content["a_outline"],
                world.mind["ana"],
            )
            == 1
        )
        assert (
            affected(
                conn, "delete from content_tags where content_id = %s", world.content["a_draft"]
            )
            == 1
        )
        # Not onto B's content: neither a new link nor by moving one (WITH CHECK).
        rls_refused(
            conn,
            "insert into content_minds (content_id, mind_id, role) values (%s, %s, 'guest')",
            world.content["b_published"],
            world.mind["ana"],
        )
        rls_refused(
            conn,
            "update content_minds set content_id = %s where content_id = %s",
            world.content["b_outline"],
            world.content["a_published"],
        )
        assert (
            affected(conn, "delete from content_tags where content_id = any(%s)", b_contents) == 0
        )
    with as_user(conn, world.user["bia"]):
        # A published parent does not open its links (upstream's rule: owner only).
        assert (
            count(
                conn,
                "select 1 from content_tags where content_id = %s",
                world.content["a_published"],
            )
            == 0
        )
        assert (
            affected(conn, "delete from content_minds where content_id = any(%s)", a_contents) == 0
        )
    assert count(conn, "select 1 from content_minds") == 8  # nothing leaked out of the rollbacks


def test_audience_profile_ownership(conn: Conn, world: World) -> None:
    aud = world.audience
    insert = "insert into audience_profiles (slug, name, owner_mind_id) values (%s, 'x', %s)"
    with as_user(conn, world.user["ana"]):
        # Owner of a and spare; free (no owner) is read through project a2, which targets it.
        assert ids(conn, "select id from audience_profiles") == {
            aud["a"],
            aud["spare"],
            aud["free"],
        }
        assert (
            affected(conn, "update audience_profiles set name = 'x' where id = %s", aud["a"]) == 1
        )
        assert affected(conn, "delete from audience_profiles where id = %s", aud["spare"]) == 1
        assert affected(conn, insert, "ana-new", world.mind["ana"]) == 1
        rls_refused(conn, insert, "for-bia", world.mind["bia"])
        rls_refused(conn, insert, "ownerless", None)
        rls_refused(
            conn,
            "update audience_profiles set owner_mind_id = %s where id = %s",
            world.mind["bia"],
            aud["a"],
        )
        assert (
            affected(conn, "update audience_profiles set name = 'x' where id = %s", aud["free"])
            == 0
        )
    with as_user(conn, world.user["ana"]):
        # A project may target what its creator owns.
        assert (
            affected(
                conn,
                "update content_projects set target_audience_id = %s where id = %s",
                aud["spare"],
                world.project["a2"],
            )
            == 1
        )
    with as_user(conn, world.user["olga"]):
        assert ids(conn, "select id from audience_profiles") == {aud["o"]}
        assert (
            affected(conn, "update audience_profiles set name = 'x' where id = %s", aud["o"]) == 1
        )
    with as_user(conn, world.user["bia"]):
        # Creator of project b, which targets olga's profile: reads it, writes nothing.
        assert ids(conn, "select id from audience_profiles") == {aud["o"]}
        assert (
            affected(conn, "update audience_profiles set name = 'x' where id = %s", aud["o"]) == 0
        )
        assert affected(conn, "delete from audience_profiles where id = %s", aud["o"]) == 0
        rls_refused(conn, insert, "for-olga", world.mind["olga"])
        # Targeting someone else's profile would open it: refused, for new and old projects.
        rls_refused(
            conn,
            "update content_projects set target_audience_id = %s where id = %s",
            aud["a"],
            world.project["b"],
        )
        rls_refused(
            conn,
            "insert into content_projects (slug, name, creator_mind_id, target_audience_id)"
            " values ('b2', 'x', %s, %s)",
            world.mind["bia"],
            aud["a"],
        )
        # Keeping a target it already has (and may read) is fine.
        assert (
            affected(
                conn, "update content_projects set name = 'B!' where id = %s", world.project["b"]
            )
            == 1
        )
    with as_user(conn, world.user["ze"]):
        assert count(conn, "select 1 from audience_profiles") == 0
        assert affected(conn, "update audience_profiles set name = 'x'") == 0


# -- the writer role -------------------------------------------------------------------------


def test_syncd_writer_holds_exactly_what_the_writer_needs(conn: Conn, world: World) -> None:
    totals = {t: count(conn, f"select 1 from public.{t}") for t in CREATOROS_TABLES}
    with acting(conn, "syncd_writer"):
        assert missing_privileges(conn) == []
        # Every creator's rows, RLS notwithstanding.
        assert {t: count(conn, f"select 1 from public.{t}") for t in CREATOROS_TABLES} == totals
        # What the writer does (syncd/sql/course.sql), one statement of each kind.
        conn.execute("select pg_advisory_xact_lock(hashtextextended('syncd:course:x', 0))")
        assert (
            affected(
                conn,
                "insert into minds (slug, display_name) values ('new', 'New') on conflict (slug) do nothing",
            )
            == 1
        )
        assert affected(conn, "update minds set display_name = 'N' where slug = 'new'") == 1
        assert (
            affected(
                conn,
                "insert into audience_profiles (slug, name) values ('aud-o', 'y')"
                " on conflict (slug) do update set name = excluded.name",
            )
            == 1
        )
        row = conn.execute(
            "insert into content_projects as p (slug, name, creator_mind_id) values ('course-a', 'A', %s)"
            " on conflict (slug) do update set name = 'A!' returning id, (xmax = 0) as inserted",
            (world.mind["bia"],),
        ).fetchone()
        assert row == (world.project["a"], False)
        assert (
            affected(
                conn,
                "insert into public.contents (id, project_id, content_type, slug, title,"
                " parent_content_id, ai_generated)"
                " select * from unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[],"
                " %s::text[], %s::uuid[], %s::boolean[])",
                [uuid.uuid4()],
                [world.project["b"]],
                ["course_lesson"],
                ["inserted"],
                ["C"],
                [world.content["b_outline"]],
                [True],
            )
            == 1
        )
        assert (
            affected(
                conn,
                "update contents set deleted_at = now() where id = any(%s) and deleted_at is null",
                world.contents_of("a_"),
            )
            == 3
        )
        conn.execute("select md5(content) from contents")
        assert (
            affected(
                conn,
                "insert into tags (name, tag_type) values ('new', 'theme') on conflict (name) do nothing",
            )
            == 1
        )
        assert (
            affected(
                conn, "delete from content_tags where content_id = %s", world.content["a_draft"]
            )
            == 1
        )
        assert (
            affected(
                conn,
                "insert into content_minds as m (content_id, mind_id, role) values (%s, %s, 'host')"
                " on conflict (content_id, mind_id) do update set role = excluded.role",
                world.content["a_outline"],
                world.mind["pia"],
            )
            == 1
        )
        assert (
            affected(
                conn, "delete from content_minds where content_id = %s", world.content["b_outline"]
            )
            == 1
        )
        conn.execute(
            "insert into syncd.courses (course, project_id) values ('a', %s)",
            (world.project["a"],),
        )
        conn.execute(
            "insert into syncd.rows (content_id, project_id, row_key, row_hash)"
            " values (%s, %s, 'outline', '\\x00')",
            (world.content["a_outline"], world.project["a"]),
        )
        assert affected(conn, "select 1 from syncd.courses where course = 'a' for update") == 1
        assert affected(conn, "update syncd.rows set row_hash = '\\x01'") == 1
        assert affected(conn, "delete from syncd.rows") == 1
        assert affected(conn, "delete from syncd.courses") == 1
        conn.execute("select version from syncd.schema_migrations")
        # And nothing more.
        denied(conn, "delete from contents where id = %s", world.content["a_draft"])
        denied(conn, "delete from content_projects where id = %s", world.project["b"])
        denied(conn, "delete from minds where id = %s", world.mind["ze"])
        denied(conn, "delete from audience_profiles where id = %s", world.audience["spare"])
        denied(conn, "delete from syncd.schema_migrations")
        denied(conn, "truncate content_tags")
        denied(conn, "select 1 from auth.users")
        denied(conn, "select 1 from user_profiles")
        denied(conn, "create table public.sneaky (id int)")


def test_missing_privileges_names_what_a_role_lacks(conn: Conn, db_target: Target) -> None:
    everything = [f"{p} on {obj}" for obj, privileges in REQUIRED.items() for p in privileges]
    row_access = [ROW_ACCESS.format(table=t) for t in WRITTEN_TABLES]

    with acting(conn, "authenticated"):
        missing = missing_privileges(conn)
    # authenticated has policies, but none that opens every row
    assert set(row_access) <= set(missing), missing
    # On Supabase authenticated keeps INSERT on minds and tags (default privileges; RLS
    # admits no row); on plain PostgreSQL it never had it.
    plain_only = ["INSERT on public.minds", "INSERT on public.tags"]
    for item in (plain_only if db_target.kind == "plain" else []) + [
        "USAGE on schema syncd",
        "USAGE on sequence public.tags_id_seq",
        "SELECT on syncd.courses",
        "DELETE on syncd.rows",
        "SELECT on syncd.schema_migrations",
    ]:
        assert item in missing, (item, missing)
    assert "SELECT on public.contents" not in missing  # authenticated may read (under RLS)
    assert set(missing) <= {*everything, *row_access}

    # A role with no grants at all lacks everything but what PUBLIC has (USAGE on public).
    with conn.transaction(force_rollback=True):
        conn.execute("create role syncd_test_nobody nologin")
        conn.execute("set local role syncd_test_nobody")
        assert (
            missing_privileges(conn)
            == [item for item in everything if item != "USAGE on schema public"] + row_access
        )

    # One privilege or one policy taken away: exactly that is reported.
    with conn.transaction(force_rollback=True):
        conn.execute("revoke insert on public.contents from syncd_writer")
        conn.execute("set local role syncd_writer")
        assert missing_privileges(conn) == ["INSERT on public.contents"]
    with conn.transaction(force_rollback=True):
        conn.execute("drop policy syncd_writer_all on public.contents")
        conn.execute("set local role syncd_writer")
        assert missing_privileges(conn) == [ROW_ACCESS.format(table="public.contents")]
    # A restrictive policy that applies to the writer hides rows from it: reported.
    with conn.transaction(force_rollback=True):
        conn.execute(
            "create policy prod_no_archived on public.contents as restrictive"
            " for all to public using (status <> 'archived')"
        )
        conn.execute("set local role syncd_writer")
        assert missing_privileges(conn) == [ROW_ACCESS.format(table="public.contents")]
    # A login role that is a member of syncd_writer has its policies too.
    with conn.transaction(force_rollback=True):
        conn.execute("create role syncd_test_login login in role syncd_writer")
        conn.execute("set local role syncd_test_login")
        assert missing_privileges(conn) == []


def login_writer(target: Target) -> str:
    """syncd_writer made a login role, as docs/supabase.md tells (by the migrations' owner: on
    Supabase the demoted postgres), and a DSN that logs in as it."""
    with psycopg.connect(target.owner_dsn, autocommit=True) as conn:
        conn.execute("alter role syncd_writer login password 'writer-test-secret'")
    return make_conninfo(target.dsn_as("syncd_writer"), password="writer-test-secret")


def test_syncd_runs_end_to_end_as_syncd_writer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_target: Target
) -> None:
    """The whole writer as a LOGIN syncd_writer, which has no BYPASSRLS: its own policies
    let it write every creator's rows."""
    root = tmp_path / "courses"
    shutil.copytree(EXAMPLES, root)
    writer_dsn = login_writer(db_target)
    db_dsn = db_target.owner_dsn

    def rescan() -> Run:
        return run_cli(capsys, ["--rescan", "--root", str(root)], writer_dsn)

    with psycopg.connect(writer_dsn) as probe:
        assert probe.execute(
            "select current_user, rolbypassrls from pg_roles where rolname = current_user"
        ).fetchone() == ("syncd_writer", False)

    first = rescan()
    assert first.code == 0, first.stderr
    lessons = sorted(root.glob("*/lessons/*.md"))
    lessons[0].write_text(lessons[0].read_text(encoding="utf-8") + "\nMore.\n", encoding="utf-8")
    lessons[1].unlink()
    second = rescan()
    assert second.code == 0, second.stderr
    parked = tmp_path / "parked"
    (root / "escrita-criativa").rename(parked)
    third = rescan()
    assert third.code == 0, third.stderr
    parked.rename(root / "escrita-criativa")
    fourth = rescan()
    assert fourth.code == 0, fourth.stderr

    with psycopg.connect(db_dsn) as check:
        projects = check.execute(
            "select slug, status <> 'archived' from content_projects order by 1"
        ).fetchall()
        deleted = check.execute(
            "select count(*) from contents where deleted_at is not null and file_path = %s",
            (lessons[1].relative_to(root).as_posix(),),
        ).fetchone()
    assert projects == [("escrita-criativa", True), ("python-em-30-dias", True)]
    assert deleted == (1,)


# -- plans -----------------------------------------------------------------------------------


LISTING = (
    "select id, title from contents where content_type = 'course_lesson'"
    " and deleted_at is null order by sequence_order"
)


def bulk(conn: Conn) -> uuid.UUID:
    """400 creators, 2000 projects, 20000 contents (1 in 50 published, some of those
    soft-deleted), analyzed; returns the auth user of one creator."""
    with conn.transaction():
        conn.execute(
            """
            insert into public.minds (slug, display_name)
            select 'bulk-' || g, 'Bulk ' || g from generate_series(1, 400) as g;
            insert into auth.users (id) select gen_random_uuid() from generate_series(1, 400);
            insert into public.user_profiles (id, mind_id)
            select u.id, m.id
            from (select id, row_number() over (order by id) as r from auth.users) as u
            join (select id, row_number() over (order by slug) as r from public.minds
                  where slug like 'bulk-%') as m using (r);
            insert into public.content_projects (slug, name, project_type, creator_mind_id,
                                                 persona_mind_id)
            select 'bulk-' || g, 'Bulk ' || g, 'course', c.id, p.id
            from generate_series(1, 2000) as g
            join public.minds c on c.slug = 'bulk-' || (g % 400 + 1)
            join public.minds p on p.slug = 'bulk-' || ((g + 7) % 400 + 1);
            insert into public.contents (content_type, slug, title, content, project_id,
                                         sequence_order, status, deleted_at)
            select case when g % 10 = 0 then 'course_outline' else 'course_lesson' end,
                   'bulk-' || g, 'Lesson ' || g, repeat('lorem ipsum ', 30), p.id, g % 10,
                   case when g % 50 = 0 then 'published' else 'draft' end,
                   case when g % 7 = 0 then now() end
            from generate_series(1, 20000) as g
            join public.content_projects p on p.slug = 'bulk-' || (g % 2000 + 1);
            """
        )
    conn.execute("analyze")
    row = conn.execute(
        "select u.id from public.user_profiles u join public.minds m on m.id = u.mind_id"
        " where m.slug = 'bulk-5'"
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def explain(conn: Conn, query: str) -> str:
    return "\n".join(row[0] for row in conn.execute(f"explain {query}").fetchall())


@pytest.mark.parametrize(
    ("shape", "project_index"),
    [("fresh", "idx_contents_project"), ("upstream-index", "idx_contents_project_rls")],
)
def test_a_creators_lesson_listing_uses_the_policy_indexes(
    plain_conn: Conn, shape: str, project_index: str
) -> None:
    conn = plain_conn
    if shape == "upstream-index":
        # Production's idx_contents_project can be upstream's partial index, useless to the
        # policy: then 000500 adds its own (and 000800 replaces the policies it wrote).
        with conn.transaction():
            conn.execute(
                "drop index public.idx_contents_project;"
                " create index idx_contents_project on public.contents (project_id)"
                " where ai_generated = true and deleted_at is null"
            )
            for migration in migrate.discover():
                if migration.name in ("rls_hardening", "supabase_hardening"):
                    conn.execute(migration.path.read_text(encoding="utf-8"))
    user = bulk(conn)
    expected = count(
        conn,
        "select 1 from contents c join content_projects p on p.id = c.project_id"
        " join user_profiles u on u.mind_id = p.creator_mind_id"
        " where u.id = %s and c.content_type = 'course_lesson' and c.deleted_at is null"
        " union all select 1 from contents c"
        " where c.status = 'published' and c.deleted_at is null"
        " and c.content_type = 'course_lesson' and c.project_id not in"
        " (select p.id from content_projects p join user_profiles u"
        "  on u.mind_id = p.creator_mind_id where u.id = %s)",
        user,
        user,
    )

    with as_user(conn, user):
        plan = explain(conn, LISTING)
        assert count(conn, LISTING) == expected
        projects_plan = explain(conn, "select id, name from content_projects")

    # The owner policy's project_id = any(<owned ids>) is an index condition ...
    assert re.search(rf"Index Scan on {project_index}\b", plan), plan
    # ... and so is the published policy (on its partial index or on status) ...
    assert re.search(r"Index Scan on (idx_contents_published|idx_contents_status)\b", plan), plan
    assert "Seq Scan on contents" not in plan, plan
    # ... with the owned projects looked up once per statement, not per row.
    assert "InitPlan" in plan, plan
    assert not re.search(r"Filter:.*owned_project_ids", plan), plan
    # The project listing: creator and persona policies, each on its index.
    assert re.search(r"Index Scan on idx_content_projects_creator_mind\b", projects_plan), (
        projects_plan
    )
    assert re.search(r"Index Scan on idx_content_projects_persona_mind\b", projects_plan), (
        projects_plan
    )


# -- the same scenarios as a psql script -----------------------------------------------------

SCRIPT_SCENARIOS = [
    "creators are isolated",
    "service_role sees and writes everything",
    "published rows are public to authenticated users",
    "anon reads nothing",
    "persona reads the project, not its drafts",
    "link tables follow their parent",
    "audience profile ownership",
    "syncd_writer can do what syncd needs",
    "syncd's slug namespace is its own",
    "lesson listing uses the policy indexes",
]


def _psql() -> Path:
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin).parent / "pginstall" / "bin" / "psql"


def test_the_psql_check_script_passes_every_scenario_and_leaves_nothing_behind(
    conn: Conn, db_target: Target
) -> None:
    db_dsn = db_target.owner_dsn  # run as the schema owner, as its header says

    def leftovers() -> dict[str, int]:
        tables = conn.execute(
            "select format('%I.%I', schemaname, tablename) from pg_tables"
            " where schemaname in ('public', 'auth', 'syncd') and tablename <> 'schema_migrations'"
        ).fetchall()
        return {t: count(conn, f"select 1 from {t}") for (t,) in tables}

    assert set(leftovers().values()) == {0}
    done = subprocess.run(
        [str(_psql()), "-X", "-v", "ON_ERROR_STOP=1", "-f", str(CHECK_SCRIPT), db_dsn],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line for line in lines if line.startswith("FAIL")] == [], done.stdout
    assert [line for line in lines if line.startswith("PASS")] == [
        f"PASS {scenario}" for scenario in SCRIPT_SCENARIOS
    ], done.stdout
    assert f"{len(SCRIPT_SCENARIOS)} of {len(SCRIPT_SCENARIOS)} scenarios passed" in lines
    assert "ERROR" not in done.stderr, done.stderr
    assert set(leftovers().values()) == {0}


# -- issue 8: the attacks found on a Supabase-shaped database, one test each -------------------

EVERY_TABLE = (
    *CREATOROS_TABLES,
    "minds",
    "tags",
    "user_profiles",
    "job_executions",
    "content_versions",
)


def test_no_api_role_can_truncate_or_hook_a_table(conn: Conn, world: World) -> None:
    """TRUNCATE ignores RLS: on Supabase authenticated could wipe every creator's links."""
    before = {t: count(conn, f"select 1 from public.{t}") for t in EVERY_TABLE}
    for role in ("authenticated", "anon"):
        with acting(conn, role, world.user["bia"]):
            for table in EVERY_TABLE:
                denied(conn, f"truncate public.{table}")
                denied(conn, f"truncate public.{table} cascade")
    held = conn.execute(
        "select r, t, p from unnest(array['anon', 'authenticated']) as r,"
        " unnest(%s::text[]) as t, unnest(array['TRUNCATE', 'TRIGGER', 'REFERENCES']) as p"
        " where has_table_privilege(r, 'public.' || t, p)",
        (list(EVERY_TABLE),),
    ).fetchall()
    assert held == []
    assert {t: count(conn, f"select 1 from public.{t}") for t in EVERY_TABLE} == before


def test_a_creator_renames_only_their_own_mind(conn: Conn, world: World) -> None:
    rename = "update public.minds set display_name = 'Hacked' where id = %s"
    with as_user(conn, world.user["ana"]):
        assert affected(conn, rename, world.mind["bia"]) == 0
        without_effect(conn, "update public.minds set slug = 'x' where id <> %s", world.mind["ana"])
        assert affected(conn, rename, world.mind["ana"]) == 1
        # ... nor its id (only how it is shown is the user's to edit)
        denied(
            conn, "update public.minds set id = %s where id = %s", uuid.uuid4(), world.mind["ana"]
        )
        # ... nor its own slug, by which syncd finds creators and personas
        without_effect(
            conn, "update public.minds set slug = 'bia2' where id = %s", world.mind["ana"]
        )
        # creators' names stay readable: the app shows them
        assert count(conn, "select 1 from public.minds") == len(world.mind)
    assert conn.execute(
        "select count(*) from public.minds where display_name = 'Hacked'"
    ).fetchone() == (0,)


def test_anon_writes_nothing_anywhere(conn: Conn, world: World) -> None:
    with acting(conn, "anon"):
        denied(conn, "insert into public.minds (slug, display_name) values ('anon', 'Anon')")
        denied(conn, "insert into public.tags (name, tag_type) values ('anon', 'theme')")
        denied(conn, "update public.minds set display_name = 'x'")
        denied(conn, "delete from public.tags")
        denied(conn, "insert into public.job_executions default values")
        denied(conn, "select nextval('public.tags_id_seq')")
        without_effect(conn, "select 1 from public.minds")  # no grant, or no policy for anon
    writable = conn.execute(
        "select n.nspname || '.' || c.relname, p from pg_class c"
        " join pg_namespace n on n.oid = c.relnamespace,"
        " unnest(array['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) as p"
        " where n.nspname in ('public', 'syncd', 'creatoros_private')"
        " and c.relkind in ('r', 'v', 'p') and has_table_privilege('anon', c.oid, p)"
    ).fetchall()
    assert writable == []


def test_policy_helpers_cannot_be_called_through_the_api(conn: Conn, world: World) -> None:
    """/rest/v1/rpc/<name> reaches every function in public: none of them may run with its
    owner's rights for anon or authenticated. The helpers live in creatoros_private."""
    exposed = conn.execute(
        "select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = 'public' and p.prosecdef"
        " and (has_function_privilege('anon', p.oid, 'EXECUTE')"
        "      or has_function_privilege('authenticated', p.oid, 'EXECUTE'))"
    ).fetchall()
    assert exposed == []
    with as_user(conn, world.user["bia"]):
        for call in ("public.owned_project_ids()", "public.targeted_audience_ids()"):
            with pytest.raises(errors.UndefinedFunction), conn.transaction():
                conn.execute(f"select {call}")
        # upstream's current_mind_id() still answers, with the caller's own rights
        assert conn.execute("select public.current_mind_id()").fetchone() == (world.mind["bia"],)
    with acting(conn, "anon"):
        denied(conn, "select creatoros_private.owned_project_ids()")
        denied(conn, "select public.current_mind_id()")


def test_shared_tables_have_row_level_security(conn: Conn, world: World) -> None:
    rls = conn.execute(
        "select relname, relrowsecurity from pg_class where oid = any(%s::regclass[])",
        ([f"public.{t}" for t in ("minds", "tags", "user_profiles", "job_executions")],),
    ).fetchall()
    assert all(on for _, on in rls) and len(rls) == 4, rls
    with as_user(conn, world.user["ana"]):
        assert ids(conn, "select id from public.user_profiles") == {world.user["ana"]}
        assert count(conn, "select 1 from public.tags") == 1
        without_effect(conn, "update public.user_profiles set mind_id = %s", world.mind["bia"])


def test_a_row_cannot_hang_under_another_tenants_tree(conn: Conn, world: World) -> None:
    """Foreign keys ignore RLS: without a check of its own the database would accept a row
    of project a whose parent is project b's outline, from anyone, syncd included."""
    hang = (
        "insert into public.contents (content_type, slug, title, project_id, parent_content_id)"
        " values ('course_lesson', %s, 'x', %s, %s)"
    )

    def refused_at_commit(query: str, *params: Any) -> None:
        with pytest.raises(errors.CheckViolation) as caught, conn.transaction():
            conn.execute(query, params)
            conn.execute("set constraints all immediate")  # what COMMIT does
        assert "same project" in str(caught.value) or "children" in str(caught.value)

    for role, user in (("authenticated", world.user["ana"]), ("syncd_writer", None)):
        with acting(conn, role, user):
            refused_at_commit(hang, f"hang-{role}", world.project["a"], world.content["b_outline"])
            refused_at_commit(
                "update public.contents set parent_content_id = %s where id = %s",
                world.content["b_outline"],
                world.content["a_draft"],
            )
            # ... nor by giving the row a new id before the check looks it up (found in review)
            with pytest.raises(errors.CheckViolation), conn.transaction():
                conn.execute(
                    hang, (f"renamed-{role}", world.project["a"], world.content["b_outline"])
                )
                conn.execute(
                    "update public.contents set id = %s where slug = %s",
                    (uuid.uuid4(), f"renamed-{role}"),
                )
                conn.execute("set constraints all immediate")
            # Within its own tree a row moves freely.
            with conn.transaction():
                conn.execute(
                    "update public.contents set parent_content_id = null where id = %s",
                    (world.content["a_draft"],),
                )
                conn.execute(hang, (f"own-{role}", world.project["a"], world.content["a_outline"]))
                conn.execute("set constraints all immediate")
    with acting(conn, "syncd_writer"):
        # An outline cannot leave its children behind in another project ...
        refused_at_commit(
            "update public.contents set project_id = %s where id = %s",
            world.project["b"],
            world.content["a_outline"],
        )
        # ... but a whole tree moved in one transaction, in any order, is fine.
        with conn.transaction():
            conn.execute(
                "update public.contents set project_id = %s"
                " where id = any(%s) and parent_content_id is not null",
                (world.project["a2"], world.contents_of("a_")),
            )
            conn.execute(
                "update public.contents set project_id = %s where id = %s",
                (world.project["a2"], world.content["a_outline"]),
            )
            conn.execute("set constraints all immediate")


def test_the_tree_check_holds_at_a_real_commit(db_target: Target, world: World) -> None:
    writer = login_writer(db_target)
    with psycopg.connect(writer, autocommit=True) as conn, pytest.raises(errors.CheckViolation):
        conn.execute(
            "insert into public.contents (content_type, slug, title, project_id,"
            " parent_content_id) values ('course_lesson', 'committed', 'x', %s, %s)",
            (world.project["a"], world.content["b_outline"]),
        )
    with psycopg.connect(db_target.admin_dsn) as check:
        assert check.execute(
            "select count(*) from public.contents where slug = 'committed'"
        ).fetchone() == (0,)
