"""The baselines syncd is compared with, writing the same rows into the same tables:

- ``naive_load``: what the upstream backfill script did, one autocommit ``INSERT`` per row
  (project, outline, modules, lessons, in that order). Parent ids are kept in Python from
  each ``INSERT ... RETURNING id`` (no lookup ``SELECT`` per row): the naive script's best
  case, one round trip and one commit per row.
- ``copy_load``: the ceiling, every row in one transaction with two ``COPY`` statements
  (``content_projects``, then ``contents``) into the real tables of a fresh database, so
  with the same columns, indexes (btree, GIN on metadata, GIN full-text), foreign keys,
  checks and triggers as syncd's writes. Ids are made in Python beforehand.

Both take rows built beforehand by syncd's own reader and parser (``read_and_parse``), so the
three writers store exactly the same values, and neither is charged for reading or parsing
(syncd is: its time includes them). syncd also writes its bookkeeping (``syncd.rows``,
``syncd.courses``), which the baselines do not.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from syncd.course import Content, ParseOptions
from syncd.fingerprint import fingerprint
from syncd.parser import parse_course
from syncd.tree import read_course

PROJECT_COLUMNS = "id, slug, name, description, project_type, project_metadata"
CONTENT_COLUMNS = (
    "project_id, content_type, parent_content_id, sequence_order, slug, title, content, "
    "metadata, fidelity_score, status, file_path, ai_generated"
)


@dataclass(frozen=True)
class CourseRows:
    slug: str
    name: str
    description: str | None
    metadata: dict[str, Any]
    contents: tuple[Content, ...]  # outline, modules, lessons, others: parents come first


def read_and_parse(root: Path, courses: tuple[str, ...]) -> list[CourseRows]:
    """What syncd does before touching the database: read, hash (fingerprint), parse."""
    options = ParseOptions()
    out = []
    for course in courses:
        files = read_course(root, course)
        fingerprint(files.files, options)
        snapshot = parse_course(course, files.files, options, files.unreadable)
        if snapshot.rejected:
            raise RuntimeError(f"generated course {course} has rejected files: {snapshot.rejected}")
        p = snapshot.project
        out.append(CourseRows(p.slug, p.name, p.description, p.metadata, snapshot.contents))
    return out


def _content_values(c: Content, project_id: Any, parent_id: Any) -> tuple[Any, ...]:
    return (
        project_id,
        c.content_type,
        parent_id,
        c.sequence_order,
        c.slug,
        c.title,
        c.content,
        Jsonb(c.metadata),
        c.fidelity_score,
        c.status or "draft",
        c.file_path,
        True,
    )


def naive_load(dsn: str, rows: list[CourseRows]) -> int:
    """One autocommit INSERT per row; returns the number of contents rows written."""
    written = 0
    insert_content = (
        f"INSERT INTO public.contents ({CONTENT_COLUMNS}) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id"
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        for course in rows:
            project = conn.execute(
                "INSERT INTO public.content_projects "
                "(slug, name, description, project_type, project_metadata) "
                "VALUES (%s, %s, %s, 'course', %s) RETURNING id",
                (course.slug, course.name, course.description, Jsonb(course.metadata)),
            ).fetchone()
            assert project is not None
            ids: dict[str, Any] = {}
            for c in course.contents:
                parent = ids.get(c.parent_key) if c.parent_key else None
                row = conn.execute(insert_content, _content_values(c, project[0], parent))
                fetched = row.fetchone()
                assert fetched is not None
                ids[c.key] = fetched[0]
                written += 1
    return written


@dataclass(frozen=True)
class CopyPlan:
    """Rows with their ids assigned, ready to stream."""

    projects: list[tuple[Any, ...]]
    contents: list[tuple[uuid.UUID, tuple[Any, ...]]]


def plan_copy(rows: list[CourseRows]) -> CopyPlan:
    projects: list[tuple[Any, ...]] = []
    contents: list[tuple[uuid.UUID, tuple[Any, ...]]] = []
    for course in rows:
        project_id = uuid.uuid4()
        projects.append(
            (project_id, course.slug, course.name, course.description, "course", course.metadata)
        )
        ids: dict[str, uuid.UUID] = {}
        for c in course.contents:
            ids[c.key] = uuid.uuid4()
            parent = ids.get(c.parent_key) if c.parent_key else None
            contents.append((ids[c.key], _content_values(c, project_id, parent)))
    return CopyPlan(projects, contents)


def copy_load(dsn: str, plan: CopyPlan) -> int:
    """Every row in one transaction: COPY the projects, then COPY the contents."""
    with psycopg.connect(dsn) as conn, conn.transaction(), conn.cursor() as cur:
        with cur.copy(f"COPY public.content_projects ({PROJECT_COLUMNS}) FROM STDIN") as copy:
            for project in plan.projects:
                copy.write_row((*project[:5], Jsonb(project[5])))
        with cur.copy(f"COPY public.contents (id, {CONTENT_COLUMNS}) FROM STDIN") as copy:
            for content_id, values in plan.contents:
                copy.write_row((content_id, *values))
    return len(plan.contents)
