"""Source administration: each syncd is a source (``syncd.sources``: its root, host, the
settings that shape its rows, when last seen, whether retired); its record, the list of
sources, retiring one and handing its courses over to another (``syncd sources``).
``connection`` yields a connection (pool or single). The settings themselves (which, and
what a command makes of the recorded ones) are source_settings.py's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from syncd.database import Queries, reading, writing
from syncd.errors import FatalError


@dataclass(frozen=True)
class SourceSeen:
    retired: bool  # the source was retired: it writes nothing
    settings_before: dict[str, Any] | None  # what was recorded before this registration


def touch_source(
    connection: Callable[[], Any],
    source: str | None,
    root: str,
    host: str,
    settings: dict[str, Any],
) -> SourceSeen:
    """Record this source as seen now (root, host) with the settings it writes with."""
    with writing(connection, "record source", "sources.sql") as sql:
        seen = sql.queue(
            "touch_source", name=source, root=root, host=host, settings=Jsonb(settings)
        )
    row = seen.fetchone()  # read after the COMMIT: one round trip
    if row is None:
        return SourceSeen(retired=False, settings_before=None)
    return SourceSeen(row["retired_at"] is not None, row["settings_before"])


def source_settings(connection: Callable[[], Any], source: str | None) -> dict[str, Any] | None:
    """The settings this source's writer recorded (None: none yet)."""
    if not source:
        return None
    with reading(connection, "read source settings", "sources.sql") as sql:
        cursor = sql.queue("source_settings", name=source)
    row = cursor.fetchone()  # read after the ROLLBACK: one round trip
    found = row["settings"] if row is not None else None
    return found if isinstance(found, dict) else None


def list_sources(connection: Callable[[], Any]) -> list[dict[str, Any]]:
    """name, root, host, last_seen, retired_at, courses (live) of every source."""
    with reading(connection, "read sources", "sources.sql") as sql:
        cur = sql.queue("list_sources")
    rows: list[dict[str, Any]] = cur.fetchall()
    return rows


def retire_source(connection: Callable[[], Any], name: str) -> list[str]:
    """Archive every live course of source ``name`` and retire it (it writes nothing any
    more); the courses archived."""
    with writing(connection, f"retire source {name}", "sources.sql") as sql:
        if sql.one("source_exists", name=name) is None:
            raise FatalError(f"no source named {name!r} (see `syncd sources`)")
        courses = [row["course"] for row in sql.all("source_courses", name=name)]
        course_sql = Queries(sql.conn, "course.sql")  # archived as a vanished course is
        for course in courses:
            course_sql.queue("lock_course", course=course)
            course_sql.all("archive_course", course=course)
        sql.queue("retire_source", name=name)
    return courses


def hand_over(connection: Callable[[], Any], name: str, to: str) -> list[str]:
    """Give every course of source ``name`` to source ``to`` and retire ``name``."""
    with writing(connection, f"hand over {name}", "sources.sql") as sql:
        for source in (name, to):
            if sql.one("source_exists", name=source) is None:
                raise FatalError(f"no source named {source!r} (see `syncd sources`)")
        courses = [row["course"] for row in sql.all("hand_over", name=name, to=to)]
        sql.queue("retire_source", name=name)
    return courses
