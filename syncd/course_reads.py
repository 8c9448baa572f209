"""A course's reads: what a sync reads of a course before it plans (the project, its minds,
who holds its audience profile, its rows), shared by the course transaction (store.py) and
the plans made from reads only (``plan_from_reads``: dry run, verify)."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from typing import Any

from syncd.course import CourseSnapshot, FileIssue, Project
from syncd.database import Queries, reading
from syncd.plan import (
    ExistingRow,
    Plan,
    ProjectState,
    RowFields,
    SlugHolder,
    plan_checking_slugs,
    project_differences,
)


def held_project_issue(course: str, slug: str, holder: str | None) -> FileIssue:
    return FileIssue(
        course,
        f"the project with slug {slug!r} belongs to another creator (mind {holder!r}) and"
        " syncd did not make it for this folder: nothing of the course is written (rename the"
        " course folder to give the course another slug; if that project is this course's,"
        " give the course that creator: brief `creator_mind:` or SYNCD_CREATOR_MIND)",
        "conflict",
    )


def held_audience_issue(course: str, slug: str, holder: str) -> FileIssue:
    return FileIssue(
        course,
        f"the audience profile {slug!r} belongs to another creator (mind {holder!r}): the"
        " course is synced without its audience (rename the course folder to give the course"
        " another slug, or have that profile renamed)",
        "conflict",
    )


def queue_project_minds(sql: Queries, snapshot: CourseSnapshot) -> Any:
    creator = snapshot.project.creator_mind
    return sql.queue(
        "project_minds",
        slug=snapshot.project.slug,
        course=snapshot.course,
        creator=creator.slug if creator else None,
    )


def queue_audience_held(sql: Queries, snapshot: CourseSnapshot) -> Any:
    """Who holds the brief's audience profile slug, if another creator does."""
    p = snapshot.project
    if p.audience is None or "project" in snapshot.protected:
        return None
    return sql.queue(
        "audience_held",
        audience=p.audience.slug,
        creator=p.creator_mind.slug if p.creator_mind else None,
    )


def held_audience(snapshot: CourseSnapshot, held: Any) -> tuple[Project, FileIssue | None]:
    """The project as a sync writes it (without the audience when another creator holds
    its profile), and the issue that names it."""
    p = snapshot.project
    row = held.fetchone() if held is not None else None
    if row is None or p.audience is None:
        return p, None
    issue = held_audience_issue(snapshot.course, p.audience.slug, row["owner"])
    return dataclasses.replace(p, audience=None), issue


def queue_project_state(sql: Queries, snapshot: CourseSnapshot) -> Any:
    audience = snapshot.project.audience
    return sql.queue(
        "project_state",
        slug=snapshot.project.slug,
        course=snapshot.course,
        audience=audience.slug if audience else None,
    )


def queue_existing(sql: Queries, snapshot: CourseSnapshot, *, with_fields: bool) -> Any:
    return sql.queue(
        "existing_rows",
        with_fields=with_fields,
        slug=snapshot.project.slug,
        legacy_slugs=[c.legacy_slug for c in snapshot.contents if c.legacy_slug],
    )


def plan_rows(
    sql: Queries,
    snapshot: CourseSnapshot,
    rows: list[Any],
    project_id: uuid.UUID | None,
    minds: tuple[uuid.UUID | None, uuid.UUID | None],
    *,
    check_slugs: bool,
) -> Plan:
    """The plan for this course; ``minds`` = (creator, persona) ids of the project."""
    existing = [
        ExistingRow(
            id=r["id"],
            slug=r["slug"],
            file_path=r["file_path"],
            content_type=r["content_type"],
            sequence_order=r["sequence_order"],
            parent_id=r["parent_id"],
            deleted=r["deleted"],
            row_key=r["row_key"],
            row_hash=stored_bytes(r["row_hash"]),
            fm_status=r["fm_status"],
            changed=bool(r["changed"]),
            source_hash=stored_bytes(r["source_hash"]),
            fields=row_fields(r) if r["has_fields"] else None,
            tags=frozenset(r["tags"]),
            minds=frozenset(mind_link(text) for text in r["minds"]),
        )
        for r in rows
    ]
    creator, persona = minds

    def slug_holders(wanted: set[str]) -> dict[str, SlugHolder]:
        return {
            r["slug"]: SlugHolder(r["id"], r["syncd"])
            for r in sql.all("slug_holders", slugs=sorted(wanted))
        }

    return plan_checking_slugs(
        snapshot,
        existing,
        creator_mind_id=creator,
        persona_mind_id=persona,
        project_id=project_id,
        slug_holders_of=slug_holders if check_slugs else None,
    )


def stored_bytes(value: Any) -> bytes | None:
    return bytes(value) if value else None


def row_fields(row: Any) -> RowFields:
    return RowFields(
        title=row["title"],
        content_md5=row["content_md5"],
        metadata=row["metadata"],
        fidelity_score=row["fidelity_score"],
        status=row["status"],
        in_project=row["in_project"],
    )


def mind_link(text: str) -> tuple[uuid.UUID, str]:
    """A ``content_minds`` link as existing_rows reads it: "<mind id> <role>"."""
    mind, _, role = text.partition(" ")
    return uuid.UUID(mind), role


def project_state(row: Any) -> ProjectState | None:
    if row is None:
        return None
    return ProjectState(
        name=row["name"],
        description=row["description"],
        project_type=row["project_type"],
        metadata=row["metadata"],
        creator=row["creator"],
        persona=row["persona"],
        audience=row["audience"],
        audience_name=row["audience_name"],
        audience_description=row["audience_description"],
        audience_technical_level=row["audience_technical_level"],
        changed=bool(row["changed"]),
    )


def planned_minds(
    sql: Queries, snapshot: CourseSnapshot, project: Any
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(creator, persona) ids a sync would give the course's rows, from reads only."""
    if project is not None and "project" in snapshot.protected:
        return project["creator_mind_id"], project["persona_mind_id"]
    p = snapshot.project
    slugs = [m.slug for m in (p.creator_mind, p.persona_mind) if m]
    ids = {r["slug"]: r["id"] for r in sql.all("mind_ids", slugs=slugs)} if slugs else {}
    creator = ids.get(p.creator_mind.slug) if p.creator_mind else None
    persona = ids.get(p.persona_mind.slug) if p.persona_mind else None
    return creator, persona


def plan_from_reads(
    connection: Callable[[], Any], snapshot: CourseSnapshot, *, with_fields: bool = False
) -> tuple[Plan, tuple[str, ...]]:
    """The plan a sync would make now, from reads only (dry run, verify); with
    ``with_fields``, every row's syncd-owned fields are read and compared (so that only
    real differences are updates), and so are the project's: the project fields a sync
    would write (empty for a course never synced, or whose brief is rejected)."""
    p = snapshot.project
    with reading(connection, f"course {snapshot.course}", "course.sql") as sql:
        project = queue_project_minds(sql, snapshot).fetchone()
        if project is not None and project["held"]:
            holder = project["holder"]
            return Plan(rejected=[held_project_issue(snapshot.course, p.slug, holder)]), ()
        held = queue_audience_held(sql, snapshot)
        state = None
        if with_fields and "project" not in snapshot.protected:
            state = project_state(queue_project_state(sql, snapshot).fetchone())
        minds = planned_minds(sql, snapshot, project)
        rows = queue_existing(sql, snapshot, with_fields=with_fields).fetchall()
        project_id = project["id"] if project else None
        plan = plan_rows(sql, snapshot, rows, project_id, minds, check_slugs=True)
        wanted, issue = held_audience(snapshot, held)
    if issue is not None:
        plan.rejected.append(issue)
    return plan, project_differences(wanted, state) if state is not None else ()
