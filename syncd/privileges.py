"""What the database role syncd writes as must be allowed to do, and a check for it.

``REQUIRED`` mirrors the grants of the ``syncd_writer`` role (migration
``20251201000600_syncd_writer_role.sql``): exactly what the writer's statements in
``syncd/sql/course.sql`` and the migration status check need. Besides these privileges the
role must reach every creator's rows of the tables it writes that have row-level security:
through a policy of its own (``syncd_writer_all``, "for all, using true", migration
``20251201000800_supabase_hardening.sql``; members of syncd_writer get it too), or by
bypassing RLS (BYPASSRLS, superuser, table owner). Supabase's ``postgres`` cannot grant
BYPASSRLS on PostgreSQL 15, so the policy is the shape syncd is deployed with.

Keys name the object: ``schema <name>``, ``sequence <schema>.<name>`` or, for tables,
just ``<schema>.<name>``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import psycopg
from psycopg.rows import tuple_row

__all__ = ["REQUIRED", "ROW_ACCESS", "missing_privileges", "read_missing", "send_checks"]

REQUIRED: dict[str, tuple[str, ...]] = {
    "schema public": ("USAGE",),
    "schema syncd": ("USAGE",),
    "public.content_projects": ("SELECT", "INSERT", "UPDATE"),
    "public.contents": ("SELECT", "INSERT", "UPDATE"),
    "public.audience_profiles": ("SELECT", "INSERT", "UPDATE"),
    "public.minds": ("SELECT", "INSERT", "UPDATE"),
    "public.content_minds": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "public.content_tags": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "public.tags": ("SELECT", "INSERT"),
    "sequence public.tags_id_seq": ("USAGE",),
    "syncd.courses": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "syncd.rows": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "syncd.refused": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "syncd.reclaimed_slugs": ("SELECT", "INSERT"),
    "syncd.skipped_folders": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "syncd.sources": ("SELECT", "INSERT", "UPDATE"),
    "syncd.conflicts": ("SELECT", "INSERT", "UPDATE", "DELETE"),
    "syncd.schema_migrations": ("SELECT",),
}

# The tables whose every row the writer must see and write, RLS notwithstanding.
WRITTEN_TABLES = (
    "public.content_projects",
    "public.contents",
    "public.audience_profiles",
    "public.content_minds",
    "public.content_tags",
    "public.minds",
    "public.tags",
)
ROW_ACCESS = "row access to {table} (every row, through a policy for syncd_writer, or BYPASSRLS)"

# A table (t.schema, t.relation) with RLS on that the current user reaches only partly: not
# its owner (owners bypass RLS unless it is forced), and either no permissive "for all"
# policy with USING and WITH CHECK both true applies to the current user (directly, through
# a role it is a member of, or to PUBLIC), or a restrictive policy that is not simply true
# applies to it.
_APPLIES = """(0::oid = any ({p}.polroles) or exists (
        select 1 from unnest({p}.polroles) as r(oid)
        where pg_catalog.pg_has_role(current_user, r.oid, 'USAGE')))"""
_ROW_ACCESS_LACKING = f"""
select c.oid from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = t.schema and c.relname = t.relation and c.relrowsecurity
  and (c.relforcerowsecurity or not pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE'))
  and (
    not exists (
      select 1 from pg_catalog.pg_policy p
      where p.polrelid = c.oid and p.polpermissive and p.polcmd = '*'
        and {_APPLIES.format(p="p")}
        and pg_catalog.pg_get_expr(p.polqual, p.polrelid) = 'true'
        and coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), 'true') = 'true'
    )
    or exists (
      select 1 from pg_catalog.pg_policy x
      where x.polrelid = c.oid and not x.polpermissive
        and {_APPLIES.format(p="x")}
        and (coalesce(pg_catalog.pg_get_expr(x.polqual, x.polrelid), 'true') <> 'true'
             or coalesce(pg_catalog.pg_get_expr(x.polwithcheck, x.polrelid), 'true') <> 'true')
    )
  )
"""

# Objects are looked up in the catalogs by name, not with to_regclass() or a ::regclass
# cast: those refuse a schema the current user has no USAGE on, and that is one of the
# things to report, not a reason to fail. One row per (object, privilege), in the order of
# REQUIRED; ``held`` is NULL when the object does not exist.
_HELD = """
select w.obj, w.privilege, case w.kind
  when 'schema' then (
    select pg_catalog.has_schema_privilege(n.oid, w.privilege)
    from pg_catalog.pg_namespace n where n.nspname = w.name)
  when 'sequence' then (
    select pg_catalog.has_sequence_privilege(c.oid, w.privilege)
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = w.schema and c.relname = w.name and c.relkind = 'S')
  else (
    select pg_catalog.has_table_privilege(c.oid, w.privilege)
    from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where n.nspname = w.schema and c.relname = w.name
      and c.relkind = any('{r,p,v,m,f}'::"char"[]))
  end as held
from unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[])
  with ordinality as w(obj, kind, schema, name, privilege, ord)
order by w.ord
"""
# The written tables the current user reaches only partly, in the order of WRITTEN_TABLES
# (none for a role that bypasses RLS).
_ROW_ACCESS_MISSING = f"""
select t.schema || '.' || t.relation as "table"
from unnest(%s::text[], %s::text[]) with ordinality as t(schema, relation, ord)
where not coalesce((select rolbypassrls or rolsuper from pg_catalog.pg_roles
                    where rolname = current_user), false)
  and exists ({_ROW_ACCESS_LACKING})
order by t.ord
"""


class Checks(NamedTuple):
    """The two queries of the check, sent (in a pipeline: queued) and not read yet."""

    held: psycopg.Cursor[tuple[Any, ...]]
    row_access: psycopg.Cursor[tuple[Any, ...]]


def send_checks(conn: psycopg.Connection[Any]) -> Checks:
    """Send the check's two queries (in a pipeline they go with whatever else is queued:
    with ``read_missing`` after it, one round trip in all)."""
    wanted = [
        (obj, kind or "table", *_split(kind, name), privilege)
        for obj, privileges in REQUIRED.items()
        for kind, _, name in [obj.rpartition(" ")]
        for privilege in privileges
    ]
    held = conn.cursor(row_factory=tuple_row).execute(
        _HELD, [list(column) for column in zip(*wanted, strict=True)]
    )
    tables = [table.partition(".") for table in WRITTEN_TABLES]
    row_access = conn.cursor(row_factory=tuple_row).execute(
        _ROW_ACCESS_MISSING, ([t[0] for t in tables], [t[2] for t in tables])
    )
    return Checks(held, row_access)


def read_missing(checks: Checks) -> list[str]:
    """What the checks found missing, as readable items (see ``missing_privileges``)."""
    missing: list[str] = []
    absent: set[str] = set()
    for obj, privilege, held in checks.held.fetchall():
        if held is None:
            if obj not in absent:
                absent.add(obj)
                missing.append(f"{obj} (does not exist)")
        elif not held:
            missing.append(f"{privilege} on {obj}")
    missing += [ROW_ACCESS.format(table=row[0]) for row in checks.row_access.fetchall()]
    return missing


def missing_privileges(conn: psycopg.Connection[Any]) -> list[str]:
    """What the current user (``current_user``, so ``SET ROLE`` counts) lacks of
    ``REQUIRED`` and of row access to ``WRITTEN_TABLES``, as readable items such as
    ``"INSERT on public.contents"``;
    empty when nothing is missing. Reads only, inside the caller's transaction (none is
    committed or rolled back here): two queries, whatever the number of objects."""
    return read_missing(send_checks(conn))


def _split(kind: str, name: str) -> tuple[str, str]:
    """(schema, name) of an object of REQUIRED: a schema's own name is its name."""
    if kind == "schema":
        return "", name
    schema, _, relation = name.partition(".")
    return schema, relation
