"""One course's write on the in-memory tables, in sql/course.sql's order: ownership,
minds, the audience and the project, the held checks, slug reclaims, then the rows, soft
deletes, links and syncd's bookkeeping of rows and the course."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from syncd.course import CourseSnapshot
from syncd.course_reads import held_project_issue
from syncd.memory.course_plan import (
    existing_rows,
    held_audience,
    mind_id,
    plan_rows,
    project_held,
    project_state,
)
from syncd.memory.tables import AudienceRow, ContentRow, CourseRow, ProjectRow, RowMark, Tables
from syncd.plan import Plan, RowWrite, json_value, project_differences
from syncd.store import CourseResult, OwnedElsewhere, ProjectHeld, SlugTaken


def write_course(
    t: Tables,
    snapshot: CourseSnapshot,
    result: CourseResult,
    *,
    source: str | None,
    clock: Callable[[], float],
    check_slugs: bool,
) -> None:
    """CourseStore._queue_reads, _planned and _queue_writes, in their order, as source
    ``source`` (None: no ownership); ``clock`` stamps the soft deletes."""
    p, course = snapshot.project, snapshot.course
    if source:
        for row in [r for c, r in t.courses.items() if c == course or t.course_slug(r) == p.slug]:
            if row.source not in (None, source) and not t.retired(row.source):
                raise OwnedElsewhere(row.source or "")
    insert_minds(t, snapshot)
    before = written = None
    if "project" not in snapshot.protected:
        before = project_state(t, snapshot, t.project_of(p.slug))
        written = upsert_project(t, snapshot)
    project = t.project_of(p.slug)
    if project is None:  # a protected (rejected) brief of a course never synced before
        written = upsert_project(t, snapshot)
        project = t.project_of(p.slug)
        assert project is not None  # noqa: S101 - just inserted
    if project_held(t, snapshot, project):
        holder = t.mind_slug(project.creator)
        raise ProjectHeld(held_project_issue(course, p.slug, holder))
    wanted, issue = held_audience(t, snapshot)
    if issue is not None:
        result.rejected.append(issue)
    result.project_written = written is not None
    if before is not None:
        result.project_fields = project_differences(wanted, before)
        result.project_repaired = before.changed and bool(result.project_fields)
    rows = existing_rows(t, snapshot, with_fields=False)
    minds = (project.creator, project.persona)
    plan = plan_rows(t, snapshot, rows, project.id, minds, check_slugs=check_slugs)
    for reclaim in plan.reclaims:  # before any insert takes the slugs back
        holder_row = t.contents.get(reclaim.holder)
        if holder_row is None or holder_row.slug != reclaim.slug:
            continue
        if holder_row.id not in t.marks:  # a syncd's row keeps its slug
            holder_row.slug = f"reclaimed--{holder_row.id}-{uuid.uuid4().hex[:8]}"
            holder_row.version = t.next_version()
            t.reclaimed.append((holder_row.id, reclaim.slug, holder_row.slug))
    apply_plan(t, project.id, plan, course, clock())
    t.refused = {k: v for k, v in t.refused.items() if v[0] != project.id}
    result.count(plan)
    result.project_id = project.id


def upsert_project(t: Tables, snapshot: CourseSnapshot) -> uuid.UUID | None:
    """upsert_audience and upsert_project: the project's id when it was written."""
    p, a = snapshot.project, snapshot.project.audience
    creator = mind_id(t, p.creator_mind)
    if a is not None:
        found = t.audiences.get(a.slug)
        if found is None:
            t.audiences[a.slug] = AudienceRow(
                uuid.uuid4(), a.slug, a.name, a.description, a.technical_level, None
            )
            t.audiences[a.slug].version = t.next_version()
        elif (found.owner is None or found.owner == creator) and (
            found.name,
            found.description,
            found.technical_level,
        ) != (a.name, a.description, a.technical_level):
            found.name, found.description = a.name, a.description
            found.technical_level, found.version = a.technical_level, t.next_version()
    linked = t.audiences.get(a.slug) if a is not None else None
    audience = linked.id if linked is not None and linked.owner in (None, creator) else None
    values: dict[str, Any] = {
        "name": p.name,
        "description": p.description,
        "project_type": p.project_type,
        "metadata": json_value(p.metadata),
        "creator": creator,
        "persona": mind_id(t, p.persona_mind),
        "audience": audience,
    }
    project = t.project_of(p.slug)
    if project is None:
        project = ProjectRow(uuid.uuid4(), p.slug, **values)
        project.version = t.next_version()
        t.projects[project.id] = project
        return project.id
    course = t.courses.get(snapshot.course)
    ours = course is not None and course.project_id == project.id
    if not (ours or project.creator is None or project.creator == creator):
        return None
    unarchive = project.status == "archived" and course is not None and course.archived
    now = {name: getattr(project, name) for name in values}
    if now == values and not unarchive:
        return None
    for name, value in values.items():
        setattr(project, name, value)
    if unarchive:
        assert course is not None  # noqa: S101 - unarchive says so
        project.status = course.status_before_archive or "in_progress"
    project.version = t.next_version()
    return project.id


def upsert_course(
    t: Tables,
    snapshot: CourseSnapshot,
    result: CourseResult,
    stat_fingerprint: bytes | None,
    source: str | None,
) -> None:
    assert result.project_id is not None  # noqa: S101 - written by write_course
    complete = not result.rejected
    project = t.projects[result.project_id]
    audience = t.audience_by_id(project.audience)
    before = t.courses.get(snapshot.course)
    t.courses[snapshot.course] = CourseRow(
        project_id=project.id,
        fingerprint=snapshot.fingerprint if complete else None,
        stat_fingerprint=stat_fingerprint if complete else None,
        source=source or (before.source if before else None),
        row_count=len(t.marks_of(project.id)),
        project_version=project.version,
        audience_version=audience.version if audience else None,
        links_mark=t.links_mark(project.id),
    )


def insert_minds(t: Tables, snapshot: CourseSnapshot) -> None:
    for mind in (snapshot.project.creator_mind, snapshot.project.persona_mind):
        if mind is not None and mind.slug not in t.minds:
            t.minds[mind.slug] = uuid.uuid4()
            t.mind_names[mind.slug] = mind.display_name


def _score(value: float | None) -> Decimal | None:
    """numeric(3, 2), as the column stores it."""
    if value is None:
        return None
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def apply_plan(t: Tables, project_id: uuid.UUID, plan: Plan, course: str, now: float) -> None:
    """CourseStore._apply: rows, soft deletes, links, then syncd.rows."""
    taken = {r.slug for r in t.contents.values()}
    for w in plan.inserts:
        if w.slug in taken:
            raise SlugTaken(course)
        taken.add(w.slug)
        t.contents[w.id] = ContentRow(
            id=w.id,
            project_id=project_id,
            content_type=w.record.content_type,
            parent_id=w.parent_id,
            sequence_order=w.record.sequence_order,
            slug=w.slug,
            title=w.record.title,
            content=w.record.content,
            metadata=json_value(w.record.metadata),
            fidelity_score=_score(w.record.fidelity_score),
            status=w.status or "draft",
            file_path=w.record.file_path,
            version=t.next_version(),
        )
    for w in plan.updates:
        row = t.contents[w.id]
        row.project_id, row.content_type = project_id, w.record.content_type
        row.parent_id, row.sequence_order = w.parent_id, w.record.sequence_order
        row.title, row.content = w.record.title, w.record.content
        row.metadata = json_value(w.record.metadata)
        row.fidelity_score = _score(w.record.fidelity_score) or row.fidelity_score
        row.status = w.status or row.status
        row.file_path, row.deleted_at, row.version = w.record.file_path, None, t.next_version()
    for content_id in plan.deletes:
        row = t.contents[content_id]
        if row.deleted_at is None:
            row.deleted_at, row.version = now, t.next_version()
            if content_id in t.marks:
                t.marks[content_id].written = row.version
    for w in plan.inserts + plan.updates + plan.relinks:  # links: no write mark moves
        row = t.contents[w.id]
        row.tags = set(w.tags)
        row.minds = dict(w.minds)
    written: list[RowWrite] = plan.inserts + plan.updates + plan.relinks + plan.remarks
    keys = {w.record.key for w in written}
    ids = {w.id for w in written}
    for content_id, mark in list(t.marks.items()):  # release_row_keys
        if mark.project_id == project_id and mark.row_key in keys and content_id not in ids:
            del t.marks[content_id]
    for w in written:  # upsert_rows
        t.marks[w.id] = RowMark(
            project_id,
            w.record.key,
            w.row_hash,
            w.record.source_hash,
            w.record.status or "",
            t.contents[w.id].version,
        )
