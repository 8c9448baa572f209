"""What one course's write reads from the in-memory tables, and its plan: the rows
(existing_rows), the project as the database holds it, holders of the project and the
audience, and ``plan_course`` on them, as the SQL store reads and plans. ``dry_run`` and
``plan_from_reads`` stop here; ``course_write`` goes on to apply the plan."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from typing import Any

from syncd.course import CourseSnapshot, FileIssue, Project
from syncd.course_reads import held_audience_issue
from syncd.memory.tables import ProjectRow, Tables
from syncd.plan import (
    ExistingRow,
    Plan,
    ProjectState,
    RowFields,
    SlugHolder,
    plan_checking_slugs,
)


def project_held(t: Tables, snapshot: CourseSnapshot, project: ProjectRow) -> bool:
    """Another creator's project, which syncd never takes (project_minds' held)."""
    course = t.courses.get(snapshot.course)
    creator = snapshot.project.creator_mind
    return not (
        (course is not None and course.project_id == project.id)
        or project.creator is None
        or (creator is not None and t.mind_slug(project.creator) == creator.slug)
    )


def mind_id(t: Tables, mind: Any) -> uuid.UUID | None:
    return t.minds.get(mind.slug) if mind is not None else None


def held_audience(t: Tables, snapshot: CourseSnapshot) -> tuple[Project, FileIssue | None]:
    """audience_held: the project as a sync writes it, and the issue naming the holder."""
    p = snapshot.project
    if p.audience is None or "project" in snapshot.protected:
        return p, None
    found = t.audiences.get(p.audience.slug)
    creator = mind_id(t, p.creator_mind)
    if found is None or found.owner is None or found.owner == creator:
        return p, None
    issue = held_audience_issue(snapshot.course, p.audience.slug, t.mind_slug(found.owner) or "?")
    return dataclasses.replace(p, audience=None), issue


def project_state(
    t: Tables, snapshot: CourseSnapshot, project: ProjectRow | None
) -> ProjectState | None:
    if project is None:
        return None
    brief = snapshot.project.audience
    a = t.audiences.get(brief.slug) if brief is not None else None
    linked = t.audience_by_id(project.audience)
    course = t.courses.get(snapshot.course)
    marks = course if course is not None and course.project_id == project.id else None
    mark = marks.project_version if marks is not None else None
    changed = mark is not None and (
        project.version != mark
        or (linked.version if linked else None) != (marks.audience_version if marks else None)
    )
    return ProjectState(
        name=project.name,
        description=project.description,
        project_type=project.project_type,
        metadata=project.metadata,
        creator=t.mind_slug(project.creator),
        persona=t.mind_slug(project.persona),
        audience=linked.slug if linked else None,
        audience_name=a.name if a else None,
        audience_description=a.description if a else None,
        audience_technical_level=a.technical_level if a else None,
        changed=changed,
    )


def existing_rows(t: Tables, snapshot: CourseSnapshot, *, with_fields: bool) -> list[ExistingRow]:
    project = t.project_of(snapshot.project.slug)
    legacy = {c.legacy_slug for c in snapshot.contents if c.legacy_slug}
    found = []
    for row in t.contents.values():
        ours = project is not None and row.project_id == project.id
        adoptable = row.file_path is None and row.project_id is None and row.slug in legacy
        if not (ours or adoptable):
            continue
        mark = t.marks.get(row.id)
        changed = mark is not None and row.version != mark.written
        read = with_fields or changed
        found.append(
            ExistingRow(
                id=row.id,
                slug=row.slug,
                file_path=row.file_path,
                content_type=row.content_type,
                sequence_order=row.sequence_order,
                parent_id=row.parent_id,
                deleted=row.deleted_at is not None,
                row_key=mark.row_key if mark else None,
                row_hash=mark.row_hash if mark else None,
                fm_status=mark.fm_status if mark else None,
                changed=changed,
                source_hash=mark.source_hash if mark else None,
                fields=RowFields(
                    title=row.title,
                    content_md5=_md5(row.content),
                    metadata=row.metadata,
                    fidelity_score=row.fidelity_score,
                    status=row.status,
                    in_project=row.project_id is not None,
                )
                if read
                else None,
                tags=frozenset(row.tags),
                minds=frozenset(row.minds.items()),
            )
        )
    return found


def plan_rows(
    t: Tables,
    snapshot: CourseSnapshot,
    rows: list[ExistingRow],
    project_id: uuid.UUID | None,
    minds: tuple[uuid.UUID | None, uuid.UUID | None],
    *,
    check_slugs: bool,
) -> Plan:
    creator, persona = minds

    def slug_holders(wanted: set[str]) -> dict[str, SlugHolder]:
        return {
            r.slug: SlugHolder(r.id, r.id in t.marks)
            for r in t.contents.values()
            if r.slug in wanted
        }

    return plan_checking_slugs(
        snapshot,
        rows,
        creator_mind_id=creator,
        persona_mind_id=persona,
        project_id=project_id,
        slug_holders_of=slug_holders if check_slugs else None,
    )


def _md5(text: str | None) -> str | None:
    """md5(content), as existing_rows reads it."""
    if text is None:
        return None
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - PostgreSQL's md5(), not security
