"""The schema migrations, run against a real PostgreSQL (one fresh database per test)."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd import migrate
from syncd.errors import MigrationError

LEDGER = "syncd.schema_migrations"
SCHEMAS = ("public", "auth", "syncd", "creatoros_private")


def _connect(dsn: str, *, autocommit: bool = False) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=autocommit)


def _rows(conn: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    return sorted(conn.execute(query, {"schemas": list(SCHEMAS)}).fetchall(), key=repr)


def snapshot(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    """What the migrations built, as comparable data (the ledger itself left out)."""
    with conn.transaction():
        return {
            "relations": _rows(
                conn,
                """
                select n.nspname, c.relname, c.relkind, c.relrowsecurity,
                       c.relforcerowsecurity, c.reloptions::text, c.relacl::text
                from pg_class c join pg_namespace n on n.oid = c.relnamespace
                where n.nspname = any(%(schemas)s)
                  and c.relname not like 'schema_migrations%%'
                """,
            ),
            "columns": _rows(
                conn,
                """
                select n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                       pg_get_expr(d.adbin, d.adrelid), a.attnotnull
                from pg_attribute a
                join pg_class c on c.oid = a.attrelid
                join pg_namespace n on n.oid = c.relnamespace
                left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
                where n.nspname = any(%(schemas)s) and a.attnum > 0 and not a.attisdropped
                  and c.relkind in ('r', 'v', 'p', 'm') and c.relname <> 'schema_migrations'
                """,
            ),
            "constraints": _rows(
                conn,
                """
                select n.nspname, c.conrelid::regclass::text, c.conname,
                       pg_get_constraintdef(c.oid)
                from pg_constraint c join pg_namespace n on n.oid = c.connamespace
                where n.nspname = any(%(schemas)s)
                  and c.conrelid <> coalesce(to_regclass('syncd.schema_migrations'), 0)
                """,
            ),
            "indexes": _rows(
                conn,
                """
                select schemaname, tablename, indexname, indexdef from pg_indexes
                where schemaname = any(%(schemas)s) and tablename <> 'schema_migrations'
                """,
            ),
            "policies": _rows(
                conn,
                """
                select schemaname, tablename, policyname, permissive, roles::text, cmd,
                       qual, with_check
                from pg_policies where schemaname = any(%(schemas)s)
                """,
            ),
            "views": _rows(
                conn,
                """
                select schemaname, viewname, definition from pg_views
                where schemaname = any(%(schemas)s)
                """,
            ),
            "functions": _rows(
                conn,
                """
                select n.nspname, p.proname, pg_get_functiondef(p.oid), p.proacl::text
                from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                where n.nspname = any(%(schemas)s)
                """,
            ),
            "triggers": _rows(
                conn,
                """
                select c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
                from pg_trigger t
                join pg_class c on c.oid = t.tgrelid
                join pg_namespace n on n.oid = c.relnamespace
                where n.nspname = any(%(schemas)s) and not t.tgisinternal
                """,
            ),
            "schemas": _rows(
                conn,
                "select nspname, nspacl::text from pg_namespace where nspname = any(%(schemas)s)",
            ),
        }


def ledger_versions(conn: psycopg.Connection[Any]) -> list[str]:
    with conn.transaction():
        rows = conn.execute(f"select version from {LEDGER} order by version").fetchall()
    return [r[0] for r in rows]


def seed_course(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """One mind owning one project with one outline row; returns the rows as JSON."""
    with conn.transaction():
        mind = conn.execute(
            "insert into public.minds (slug, display_name) values ('ana', 'Ana') returning id"
        ).fetchone()
        assert mind is not None
        project = conn.execute(
            "insert into public.content_projects (slug, name, project_type, creator_mind_id)"
            " values ('curso-x', 'Curso X', 'course', %s) returning id",
            (mind[0],),
        ).fetchone()
        assert project is not None
        conn.execute(
            "insert into public.contents (content_type, slug, title, content, project_id)"
            " values ('course_outline', 'curso-x-outline', 'Curso X', '# Curso X', %s)",
            (project[0],),
        )
    return course_rows(conn)


def course_rows(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    with conn.transaction():
        row = conn.execute(
            "select (select jsonb_agg(to_jsonb(p)) from public.content_projects p),"
            " (select jsonb_agg(to_jsonb(c)) from public.contents c),"
            " (select jsonb_agg(to_jsonb(m)) from public.minds m)"
        ).fetchone()
    assert row is not None
    return {"projects": row[0], "contents": row[1], "minds": row[2]}


@pytest.mark.parametrize("autocommit", [False, True])
def test_applies_everything_once_on_an_empty_database(empty_dsn: str, autocommit: bool) -> None:
    on_disk = migrate.discover()
    assert [m.path.name for m in on_disk] == sorted(m.path.name for m in on_disk)
    assert all(m.rollback_path is not None for m in on_disk)

    with _connect(empty_dsn, autocommit=autocommit) as conn:
        assert all(s.applied_at is None for s in migrate.status(conn))

        applied = migrate.apply_pending(conn)

        assert applied == on_disk
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert all(s.applied_at is not None for s in migrate.status(conn))
        assert migrate.apply_pending(conn) == []

    # Committed, not just visible inside the runner's connection.
    with _connect(empty_dsn) as other:
        assert ledger_versions(other) == [m.version for m in on_disk]


def test_up_down_up_rebuilds_the_same_schema(empty_dsn: str) -> None:
    with _connect(empty_dsn) as conn:
        migrate.apply_pending(conn)
        first = snapshot(conn)

        reverted = migrate.rollback_all(conn)

        assert [m.version for m in reverted] == sorted(
            (m.version for m in migrate.discover()), reverse=True
        )
        assert ledger_versions(conn) == []
        left = snapshot(conn)
        assert [name for name, _ in left.pop("schemas")] == ["public", "syncd"]
        assert all(found == [] for found in left.values()), left
        assert migrate.rollback_last(conn) is None

        migrate.apply_pending(conn)
        assert snapshot(conn) == first


def test_reapplying_every_file_over_an_existing_schema_changes_nothing(empty_dsn: str) -> None:
    with _connect(empty_dsn) as conn:
        migrate.apply_pending(conn)
        rows = seed_course(conn)
        before = snapshot(conn)

        for migration in migrate.discover():
            with conn.transaction():
                conn.execute(migration.path.read_text(encoding="utf-8"))

        assert snapshot(conn) == before
        assert course_rows(conn) == rows


def test_applies_over_an_upstream_shaped_database_without_touching_its_data(
    empty_dsn: str,
) -> None:
    """Production already has upstream's CreatorOS objects and no syncd ledger."""
    with _connect(empty_dsn) as conn:
        migrate.apply_pending(conn)
        rows = seed_course(conn)
        with conn.transaction():
            # Back to upstream's shape: its own index definitions, a view without
            # security_invoker, policies without (select ...), and no syncd at all.
            conn.execute(
                """
                drop schema syncd cascade;
                drop index public.idx_contents_fts, public.idx_contents_project;
                create index idx_contents_fts on public.contents using gin
                  (to_tsvector('english', coalesce(title, '') || ' ' || coalesce(content, '')));
                create index idx_contents_project on public.contents (project_id)
                  where ai_generated = true and deleted_at is null;
                alter view public.v_contents_with_creators reset (security_invoker);
                drop policy if exists content_projects_rw_mine on public.content_projects;
                create policy content_projects_rw_mine on public.content_projects
                  for all to authenticated
                  using (creator_mind_id = public.current_mind_id())
                  with check (creator_mind_id = public.current_mind_id());
                """
            )

        applied = migrate.apply_pending(conn)

        assert [m.version for m in applied] == [m.version for m in migrate.discover()]
        assert course_rows(conn) == rows
        with conn.transaction():
            fts = conn.execute(
                "select indexdef from pg_indexes where indexname = 'idx_contents_fts'"
            ).fetchone()
            options = conn.execute(
                "select reloptions from pg_class"
                " where oid = 'public.v_contents_with_creators'::regclass"
            ).fetchone()
            qual = conn.execute(
                "select qual from pg_policies where policyname = 'content_projects_select'"
            ).fetchone()
            upstream_left = conn.execute(
                "select count(*) from pg_policies where policyname = 'content_projects_rw_mine'"
            ).fetchone()
            triggers = conn.execute(
                "select count(*) from pg_trigger"
                " where tgrelid = 'public.contents'::regclass and not tgisinternal"
                " and tgname like '%updated_at%'"
            ).fetchone()
        assert fts is not None and "'english'" in fts[0]  # existing index kept as it is
        assert options == (["security_invoker=true"],)
        # upstream's policy, written without (select ...), is replaced by one that calls the
        # private helper once per statement
        assert qual is not None and "SELECT creatoros_private.current_mind_id()" in qual[0]
        assert upstream_left == (0,)
        assert triggers == (1,)  # no second updated_at trigger


def test_a_failing_migration_names_its_file_and_leaves_no_trace(
    empty_dsn: str, tmp_path: Path
) -> None:
    schema = tmp_path / "schema"
    shutil.copytree(migrate.schema_dir(), schema)
    (schema / "migrations" / "20990101000000_broken.sql").write_text(
        "create table public.half_done (id int);\nselect * from public.no_such_table;\n",
        encoding="utf-8",
    )

    with _connect(empty_dsn) as conn:
        with pytest.raises(MigrationError) as failure:
            migrate.apply_pending(conn, schema)

        message = str(failure.value)
        assert "20990101000000_broken.sql" in message
        assert 'relation "public.no_such_table" does not exist' in message
        assert ledger_versions(conn) == [m.version for m in migrate.discover()]
        with conn.transaction():
            half_done = conn.execute("select to_regclass('public.half_done')").fetchone()
        assert half_done == (None,)
        statuses = {s.migration.version: s.applied_at for s in migrate.status(conn, schema)}
        assert statuses["20990101000000"] is None


def test_concurrent_runners_apply_each_migration_once(empty_dsn: str) -> None:
    results: list[list[migrate.Migration]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def run() -> None:
        try:
            with _connect(empty_dsn) as conn:
                start.wait(timeout=10)
                results.append(migrate.apply_pending(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    applied = sorted(m.version for result in results for m in result)
    assert applied == [m.version for m in migrate.discover()]


def test_plain_postgres_gets_supabase_auth_stand_ins(empty_dsn: str) -> None:
    sub = uuid.uuid4()
    with _connect(empty_dsn) as conn:
        migrate.apply_pending(conn)
        with conn.transaction():
            conn.execute(
                "select set_config('request.jwt.claims', %s, true)",
                (json.dumps({"sub": str(sub), "role": "authenticated"}),),
            )
            uid = conn.execute("select auth.uid()").fetchone()
        assert uid == (sub,)
        # After the transaction the setting is '' in this session: no claims, no user.
        with conn.transaction():
            assert conn.execute("select auth.uid()").fetchone() == (None,)
            roles = dict(
                conn.execute(
                    "select rolname, rolbypassrls from pg_roles"
                    " where rolname in ('anon', 'authenticated', 'service_role')"
                ).fetchall()
            )
        assert roles == {"anon": False, "authenticated": False, "service_role": True}


def test_an_authenticated_user_sees_only_their_minds_projects(empty_dsn: str) -> None:
    with _connect(empty_dsn) as conn:
        migrate.apply_pending(conn)
        seed_course(conn)
        ana_user, bia_user = uuid.uuid4(), uuid.uuid4()
        with conn.transaction():
            conn.execute("insert into public.minds (slug, display_name) values ('bia', 'Bia')")
            conn.execute("insert into auth.users (id) values (%s), (%s)", (ana_user, bia_user))
            conn.execute(
                "insert into public.user_profiles (id, mind_id)"
                " select %s, id from public.minds where slug = 'ana'"
                " union all select %s, id from public.minds where slug = 'bia'",
                (ana_user, bia_user),
            )

        def visible(user: uuid.UUID) -> tuple[Any, ...] | None:
            with conn.transaction():
                conn.execute(
                    "select set_config('request.jwt.claims', %s, true)",
                    (json.dumps({"sub": str(user)}),),
                )
                conn.execute("set local role authenticated")
                return conn.execute(
                    "select (select count(*) from public.content_projects),"
                    " (select count(*) from public.contents),"
                    " (select string_agg(creator_name, ',') from public.v_contents_with_creators)"
                ).fetchone()

        assert visible(ana_user) == (1, 1, "Ana")
        assert visible(bia_user) == (0, 0, None)
