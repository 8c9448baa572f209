"""syncd on a Supabase project's database (issue 8), built by the suite from Supabase's facts
(tests/sql/supabase_*.sql): `syncd migrate` as the demoted ``postgres``, Supabase's database
linter, production-shaped tables with policies of their own, and the corpus written by a
login ``syncd_writer`` without BYPASSRLS. PostgreSQL 15 (Debian's) and 16 (pgserver's)."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors

from syncd import migrate
from tests.conftest import SUPABASE_BARE, SupabaseServer, Target
from tests.helpers import run_cli
from tests.test_rls import login_writer

Conn = psycopg.Connection[Any]
ADVISOR = migrate.schema_dir() / "checks" / "supabase_advisor.sql"


def advisor(dsn: str) -> list[tuple[str, str, str]]:
    """(level, lint, detail) for every finding of Supabase's linter. Run with an empty
    search_path, as the linter is: its initplan lint matches schema-qualified text."""
    with psycopg.connect(dsn) as conn, conn.transaction(force_rollback=True):
        conn.execute("set local search_path = ''")
        rows = conn.execute(ADVISOR.read_text(encoding="utf-8")).fetchall()
    return [(level, name, detail) for name, level, detail, _ in rows]


@pytest.fixture
def bare(supabase_target: Target) -> Iterator[tuple[SupabaseServer, str]]:
    """A Supabase project's database as Supabase makes it: no syncd migration applied."""
    server = supabase_target.supabase
    assert server is not None
    name = server.create_database(template=SUPABASE_BARE)
    try:
        yield server, name
    finally:
        server.drop_database(name)


def schema_upto(tmp_path: Path, last: str) -> Path:
    """A copy of the schema directory holding the migrations up to version ``last``."""
    copy = tmp_path / "schema"
    shutil.copytree(migrate.schema_dir(), copy)
    for path in (copy / "migrations").glob("*.sql"):
        if path.name[:14] > last:
            path.unlink()
            (copy / "rollbacks" / path.name).unlink(missing_ok=True)
    return copy


# -- migrate as postgres ---------------------------------------------------------------------


def test_syncd_migrate_runs_as_supabases_postgres(
    capsys: pytest.CaptureFixture[str], bare: tuple[SupabaseServer, str]
) -> None:
    server, name = bare
    dsn = server.dsn(name)  # postgres: NOSUPERUSER CREATEROLE CREATEDB BYPASSRLS
    with psycopg.connect(dsn) as conn:
        assert conn.execute(
            "select rolsuper, rolcreaterole from pg_roles where rolname = current_user"
        ).fetchone() == (False, True)

    run = run_cli(capsys, ["migrate"], dsn)
    assert run.code == 0, run.stderr
    status = run_cli(capsys, ["migrate", "--status"], dsn)
    assert status.code == 0, status.stderr
    states = [line.split()[2] for line in status.stdout.splitlines()[2:]]
    assert states == ["applied"] * len(migrate.discover()), status.stdout

    with psycopg.connect(server.admin_dsn(name)) as conn:
        applied = conn.execute("select count(*) from syncd.schema_migrations").fetchone()
        writer = conn.execute(
            "select rolsuper, rolbypassrls,"
            " shobj_description(oid, 'pg_authid') like '%created by migration%'"
            " from pg_roles where rolname = 'syncd_writer'"
        ).fetchone()
    assert applied == (len(migrate.discover()),)
    # Made by the migration, as postgres, when the server's template was migrated: no
    # superuser attribute, no BYPASSRLS.
    assert writer == (False, False, True)
    assert advisor(dsn) == []


# -- Supabase's linter -----------------------------------------------------------------------


def test_supabases_linter_finds_nothing_in_what_the_migrations_built(db_target: Target) -> None:
    assert advisor(db_target.owner_dsn) == []


def test_the_linter_check_finds_what_the_issue_reported_before_the_hardening(
    bare: tuple[SupabaseServer, str], tmp_path: Path
) -> None:
    """The check can fail: on the chain as it was (up to 000700, with the writer role made
    without BYPASSRLS so that it applies), it reports the issue's findings."""
    server, name = bare
    with psycopg.connect(server.dsn(name)) as conn:
        migrate.apply_pending(conn, schema_upto(tmp_path, "20251201000700"))
    found = advisor(server.dsn(name))
    by_lint: dict[str, set[str]] = {}
    for level, lint, detail in found:
        assert level in ("ERROR", "WARN", "INFO")
        by_lint.setdefault(lint, set()).add(detail)

    def named(lint: str) -> str:
        return " ".join(sorted(by_lint.get(lint, set()))).replace("\\", "")

    errors_found = [f for f in found if f[0] == "ERROR"]
    assert {lint for _, lint, _ in errors_found} == {"rls_disabled_in_public"}
    for table in ("minds", "tags", "user_profiles", "job_executions"):
        assert f"public.{table}`" in named("rls_disabled_in_public"), table
    for function in ("current_mind_id", "owned_project_ids", "owns_content"):
        assert f"public.{function}(" in named(
            "authenticated_security_definer_function_executable"
        ), function
    for table in ("contents", "content_projects", "audience_profiles"):
        assert f"public.{table}`" in named("multiple_permissive_policies"), table


# -- brownfield ------------------------------------------------------------------------------

PRODUCTION_POLICIES = """
alter table public.minds enable row level security;
create policy minds_public_read on public.minds
  for select to anon, authenticated using (privacy_level = 'public');
alter table public.tags enable row level security;
create policy tags_read_signed_in on public.tags
  for select to authenticated using (true);
alter table public.user_profiles enable row level security;
create policy profiles_self on public.user_profiles
  for select to authenticated using (id = (select auth.uid()));
create policy contents_never_archived on public.contents
  as restrictive for all to authenticated using (status <> 'archived');
alter table public.job_executions enable row level security;
create policy job_executions_select on public.job_executions
  for select to authenticated using (false);
"""

PROBES: list[tuple[str, str]] = [
    ("authenticated", "update public.minds set display_name = 'x' where slug = 'bia'"),
    ("authenticated", "update public.minds set display_name = 'x' where slug = 'ana'"),
    ("authenticated", "insert into public.minds (slug, display_name) values ('new', 'N')"),
    ("authenticated", "delete from public.tags"),
    ("authenticated", "update public.contents set title = 'x' where slug = 'b-outline'"),
    ("authenticated", "update public.contents set title = 'x' where slug = 'a-archived'"),
    ("authenticated", "update public.content_projects set name = 'x' where slug = 'b'"),
    ("authenticated", "insert into public.audience_profiles (slug, name) values ('n', 'n')"),
    ("authenticated", "delete from public.content_minds"),
    ("authenticated", "update public.user_profiles set mind_id = mind_id"),
    ("anon", "insert into public.minds (slug, display_name) values ('anon', 'A')"),
    ("anon", "update public.minds set display_name = 'x'"),
]
READS = (
    "minds",
    "tags",
    "user_profiles",
    "job_executions",
    "contents",
    "content_projects",
    "audience_profiles",
)


def seed_production(conn: Conn) -> dict[str, uuid.UUID]:
    users = {"ana": uuid.uuid4(), "bia": uuid.uuid4()}
    with conn.transaction():
        for name, uid in users.items():
            conn.execute("insert into auth.users (id) values (%s)", (uid,))
            conn.execute(
                "insert into public.minds (slug, display_name) values (%s, %s)", (name, name)
            )
            conn.execute(
                "insert into public.user_profiles (id, mind_id)"
                " select %s, id from public.minds where slug = %s",
                (uid, name),
            )
            conn.execute(
                "insert into public.content_projects (slug, name, creator_mind_id)"
                " select %s, %s, id from public.minds where slug = %s",
                (name[0], name, name),
            )
        conn.execute(
            "insert into public.minds (slug, display_name, privacy_level)"
            " values ('secret', 'S', 'private')"
        )
        conn.execute("insert into public.tags (name, tag_type) values ('t', 'theme')")
        conn.execute("insert into public.job_executions default values")
        conn.execute("insert into public.audience_profiles (slug, name) values ('aud', 'Aud')")
        for slug, project, status in (
            ("a-outline", "a", "published"),
            ("a-archived", "a", "archived"),
            ("b-outline", "b", "draft"),
        ):
            conn.execute(
                "insert into public.contents (content_type, slug, title, project_id, status)"
                " select 'course_outline', %s, %s, id, %s from public.content_projects"
                " where slug = %s",
                (slug, slug, status, project),
            )
        conn.execute(
            "insert into public.content_minds (content_id, mind_id, role)"
            " select c.id, p.creator_mind_id, 'creator' from public.contents c"
            " join public.content_projects p on p.id = c.project_id"
        )
    return users


def access(conn: Conn, users: dict[str, uuid.UUID]) -> dict[str, Any]:
    """What each API identity reads (row ids per table) and which probes change rows."""
    import json

    seen: dict[str, Any] = {}
    for who, role, user in (
        ("ana", "authenticated", users["ana"]),
        ("bia", "authenticated", users["bia"]),
        ("anon", "anon", None),
    ):
        claims = json.dumps({"sub": str(user), "role": role} if user else {"role": role})
        for table in READS:
            with conn.transaction(force_rollback=True):
                conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
                conn.execute(f"set local role {role}")
                try:
                    rows = conn.execute(f"select id::text from public.{table}").fetchall()
                    seen[f"{who} reads {table}"] = {r[0] for r in rows}
                except errors.InsufficientPrivilege:
                    seen[f"{who} reads {table}"] = set()
        for probe_role, probe in PROBES:
            if probe_role != role:
                continue
            with conn.transaction(force_rollback=True):
                conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
                conn.execute(f"set local role {role}")
                try:
                    with conn.transaction():
                        changed = conn.execute(probe).rowcount
                except (errors.InsufficientPrivilege, errors.CheckViolation):
                    changed = 0
                seen[f"{who}: {probe}"] = changed
    return seen


def policies(conn: Conn, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select tablename, policyname, permissive, roles::text, cmd, qual, with_check"
        " from pg_policies where policyname = any(%s) order by 1, 2",
        (list(names),),
    ).fetchall()


def test_production_tables_with_their_own_policies_are_weakened_nowhere(
    bare: tuple[SupabaseServer, str], tmp_path: Path
) -> None:
    """Production already has the tables (upstream's migrations), RLS and policies of its
    own on the shared tables, and a restrictive policy. After syncd's migrations nobody
    reads a row or changes a row they could not before (but the project of a published row,
    by decision), and those policies are untouched."""
    server, name = bare
    # job_executions_select has the name of a policy syncd gives a shared table without any:
    # production's own, it stays as production wrote it.
    own = (
        "minds_public_read",
        "tags_read_signed_in",
        "profiles_self",
        "contents_never_archived",
        "job_executions_select",
    )
    with psycopg.connect(server.dsn(name), autocommit=True) as conn:
        migrate.apply_pending(conn, schema_upto(tmp_path, "20251201000300"))
        conn.execute(PRODUCTION_POLICIES)
        users = seed_production(conn)
        before, own_before = access(conn, users), policies(conn, own)

        migrate.apply_pending(conn)

        after = access(conn, users)
        published = conn.execute("select id::text from public.content_projects where slug = 'a'")
        project_a = published.fetchone()
        assert project_a is not None
        assert policies(conn, own) == own_before
        # The app's policies syncd adds to shared tables without any were not added here.
        added = conn.execute(
            "select tablename, policyname from pg_policies where tablename in"
            " ('minds', 'tags', 'user_profiles', 'job_executions')"
            " and policyname <> 'syncd_writer_all'"
            " and policyname <> all(%s)",
            (list(own),),
        ).fetchall()
        assert added == []
    widened = {
        key: (before[key], after[key])
        for key in before
        if (after[key] - before[key] if isinstance(before[key], set) else after[key] > before[key])
    }
    # One widening, deliberate (issue 18 item 5): a project with a published row is read by
    # every signed-in user with that row. ana's outline is published: bia reads project a.
    assert widened == {
        "bia reads content_projects": (
            before["bia reads content_projects"],
            before["bia reads content_projects"] | {project_a[0]},
        )
    }
    # The check sees something: ana reads her rows and the public minds.
    assert before["ana reads minds"] and before["ana reads contents"]


# -- the corpus, written by a login syncd_writer ---------------------------------------------


def test_the_corpus_as_a_login_syncd_writer(
    capsys: pytest.CaptureFixture[str], corpus_root: Path, db_target: Target
) -> None:
    writer = login_writer(db_target)
    first = run_cli(capsys, ["--rescan", "--root", str(corpus_root)], writer)
    assert first.code == 0, first.stderr
    with psycopg.connect(db_target.admin_dsn) as conn:
        counts = conn.execute(
            "select (select count(*) from public.content_projects),"
            " (select count(*) from public.contents"
            "  where content_type = 'course_lesson' and deleted_at is null)"
        ).fetchone()
    assert counts == (8, 161)
    verify = run_cli(capsys, ["verify", "--root", str(corpus_root)], writer)
    assert verify.code == 0, verify.stdout + verify.stderr
