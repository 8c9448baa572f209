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

from typing import Any

import psycopg
from psycopg.rows import tuple_row

__all__ = ["REQUIRED", "ROW_ACCESS", "missing_privileges"]

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

# A table with RLS on that the current user reaches only partly: not its owner (owners
# bypass RLS unless it is forced), and either no permissive "for all" policy with USING and
# WITH CHECK both true applies to the current user (directly, through a role it is a member
# of, or to PUBLIC), or a restrictive policy that is not simply true applies to it.
_APPLIES = """(0::oid = any ({p}.polroles) or exists (
        select 1 from unnest({p}.polroles) as r(oid)
        where pg_catalog.pg_has_role(current_user, r.oid, 'USAGE')))"""
_ROW_ACCESS_LACKING = f"""
select c.oid from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = %s and c.relname = %s and c.relrowsecurity
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
# things to report, not a reason to fail.
_SCHEMA_OID = "select oid from pg_catalog.pg_namespace where nspname = %s"
_RELATION_OID = """
select c.oid from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = %s and c.relname = %s and c.relkind = any(%s::"char"[])
"""
_TABLE_KINDS = ["r", "p", "v", "m", "f"]
_SEQUENCE_KINDS = ["S"]


def missing_privileges(conn: psycopg.Connection[Any]) -> list[str]:
    """What the current user (``current_user``, so ``SET ROLE`` counts) lacks of
    ``REQUIRED`` and of row access to ``WRITTEN_TABLES``, as readable items such as
    ``"INSERT on public.contents"``;
    empty when nothing is missing. Reads only, inside the caller's transaction (none is
    committed or rolled back here)."""
    cur = conn.cursor(row_factory=tuple_row)
    missing: list[str] = []
    for obj, privileges in REQUIRED.items():
        kind, _, name = obj.rpartition(" ")
        if kind == "schema":
            row = cur.execute(_SCHEMA_OID, (name,)).fetchone()
            check = "select pg_catalog.has_schema_privilege(%s::oid, %s)"
        else:
            schema, _, relation = name.partition(".")
            kinds = _SEQUENCE_KINDS if kind == "sequence" else _TABLE_KINDS
            row = cur.execute(_RELATION_OID, (schema, relation, kinds)).fetchone()
            check = (
                "select pg_catalog.has_sequence_privilege(%s::oid, %s)"
                if kind == "sequence"
                else "select pg_catalog.has_table_privilege(%s::oid, %s)"
            )
        if row is None:
            missing.append(f"{obj} (does not exist)")
            continue
        for privilege in privileges:
            held = cur.execute(check, (row[0], privilege)).fetchone()
            if not (held and held[0]):
                missing.append(f"{privilege} on {obj}")
    row = cur.execute(
        "select rolbypassrls or rolsuper from pg_catalog.pg_roles where rolname = current_user"
    ).fetchone()
    if row and row[0]:
        return missing
    for table in WRITTEN_TABLES:
        schema, _, relation = table.partition(".")
        if cur.execute(_ROW_ACCESS_LACKING, (schema, relation)).fetchone() is not None:
            missing.append(ROW_ACCESS.format(table=table))
    return missing
