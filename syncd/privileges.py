"""What the database role syncd writes as must be allowed to do, and a check for it.

``REQUIRED`` mirrors the grants of the ``syncd_writer`` role (migration
``20251201000600_syncd_writer_role.sql``): exactly what the writer's statements in
``syncd/sql/course.sql`` (and ``sources.sql``) and the migration status check need.
Besides these privileges the role must reach every creator's rows of the tables it writes
that have row-level security:
through a policy of its own (``syncd_writer_all``, "for all, using true", migration
``20251201000800_supabase_hardening.sql``; members of syncd_writer get it too), or by
bypassing RLS (BYPASSRLS, superuser, table owner). Supabase's ``postgres`` cannot grant
BYPASSRLS on PostgreSQL 15, so the policy is the shape syncd is deployed with.

Keys name the object: ``schema <name>``, ``sequence <schema>.<name>`` or, for tables,
just ``<schema>.<name>``. The check's two queries are in ``syncd/sql/privileges.sql``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import psycopg
from psycopg.rows import tuple_row

from syncd.sqlfiles import query

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
    "public.content_versions": ("SELECT", "INSERT", "DELETE"),
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
    "public.content_versions",
)
ROW_ACCESS = "row access to {table} (every row, through a policy for syncd_writer, or BYPASSRLS)"


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
    objects, kinds, schemas, names, privileges = (list(c) for c in zip(*wanted, strict=True))
    held = conn.cursor(row_factory=tuple_row).execute(
        query("privileges.sql", "held"),
        {
            "objects": objects,
            "kinds": kinds,
            "schemas": schemas,
            "names": names,
            "privileges": privileges,
        },
    )
    tables = [table.partition(".") for table in WRITTEN_TABLES]
    row_access = conn.cursor(row_factory=tuple_row).execute(
        query("privileges.sql", "row_access_missing"),
        {"schemas": [t[0] for t in tables], "relations": [t[2] for t in tables]},
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
