"""``MemoryStore``: ``CourseStorage`` on a ``MemoryDatabase``, with the pure core of the SQL
store (``plan_course``, ``project_differences``), so that it makes the same decisions.

Not modelled: refusals by the database (a row it would refuse is written; ``refused`` can be
set by a test), locks and timeouts, triggers and row-level security."""

from __future__ import annotations

import uuid
from typing import Any

from syncd.bookkeeping import Known
from syncd.course import CourseSnapshot
from syncd.course_reads import held_project_issue
from syncd.errors import RejectedError
from syncd.memory.course_plan import (
    existing_rows,
    held_audience,
    mind_id,
    plan_rows,
    project_held,
    project_state,
)
from syncd.memory.course_write import upsert_course, write_course
from syncd.memory.tables import CourseRow, MemoryDatabase, SourceRow, Tables
from syncd.plan import Plan, project_differences
from syncd.sources import SourceSeen
from syncd.store import CourseResult, SlugTaken, settled

UNIQUE_VIOLATION = "23505"


class MemoryStore:
    """``CourseStorage`` on a ``MemoryDatabase``, as source ``source`` (None: no
    ownership): the same decisions as ``CourseStore``, and the same counts."""

    def __init__(self, db: MemoryDatabase | None = None, source: str | None = None) -> None:
        self.db = db or MemoryDatabase()
        self.source = source

    # -- reads --------------------------------------------------------------------------

    def fingerprints(self) -> dict[str, Known]:
        with self.db.reading() as t:
            return _known(t)

    def pass_state(self) -> tuple[dict[str, Known], set[str]]:
        with self.db.reading() as t:
            return _known(t), {c for c, row in t.courses.items() if self._changed(t, row)}

    def source_settings(self) -> dict[str, Any] | None:
        if not self.source:
            return None
        with self.db.reading() as t:
            found = t.sources.get(self.source)
            return dict(found.settings) if found is not None else None

    def refused_files(self) -> dict[str, str]:
        with self.db.reading() as t:
            return {path: reason for path, (_, reason) in t.refused.items()}

    def file_paths(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, str | None]:
        with self.db.reading() as t:
            return {i: t.contents[i].file_path for i in ids if i in t.contents}

    def plan_from_reads(
        self, snapshot: CourseSnapshot, *, with_fields: bool = False
    ) -> tuple[Plan, tuple[str, ...]]:
        p = snapshot.project
        with self.db.reading() as t:
            project = t.project_of(p.slug)
            if project is not None and project_held(t, snapshot, project):
                holder = t.mind_slug(project.creator)
                return Plan(rejected=[held_project_issue(snapshot.course, p.slug, holder)]), ()
            state = None
            if with_fields and "project" not in snapshot.protected:
                state = project_state(t, snapshot, project)
            if project is not None and "project" in snapshot.protected:
                minds = (project.creator, project.persona)
            else:
                minds = (mind_id(t, p.creator_mind), mind_id(t, p.persona_mind))
            rows = existing_rows(t, snapshot, with_fields=with_fields)
            plan = plan_rows(
                t, snapshot, rows, project.id if project else None, minds, check_slugs=True
            )
            wanted, issue = held_audience(t, snapshot)
        if issue is not None:
            plan.rejected.append(issue)
        return plan, project_differences(wanted, state) if state is not None else ()

    def dry_run(self, snapshot: CourseSnapshot) -> CourseResult:
        result = CourseResult(snapshot.course, rejected=list(snapshot.rejected))
        plan, _ = self.plan_from_reads(snapshot)
        result.count(plan)
        return result

    # -- bookkeeping --------------------------------------------------------------------

    def touch_source(self, root: str, host: str, settings: dict[str, Any]) -> SourceSeen:
        assert self.source is not None  # noqa: S101 - the reconciler asks only with a source
        with self.db.transaction() as t:
            found = t.sources.get(self.source)
            if found is None:
                t.sources[self.source] = SourceRow(root, host, dict(settings))
                return SourceSeen(retired=False, settings_before=None)
            before = found.settings
            found.root, found.host = root, host
            if not found.retired:
                found.settings = dict(settings)
            return SourceSeen(found.retired, before)

    def save_stat_fingerprints(self, items: list[tuple[str, bytes, bytes]]) -> None:
        with self.db.transaction() as t:
            _save_stats(t, items)

    def save_findings(
        self,
        *,
        touched: list[tuple[str, bytes, bytes]],
        adopted: list[str] | None,
        conflicts: dict[str, str] | None,
        skipped_folders: dict[str, int],
    ) -> None:
        with self.db.transaction() as t:
            _save_stats(t, touched)
            for course in adopted or ():
                row = t.courses.get(course)
                if row is not None and (row.source is None or t.retired(row.source)):
                    row.source = self.source
            if conflicts is not None and self.source is not None:
                for key in [k for k in t.conflicts if k[1] == self.source]:
                    del t.conflicts[key]
                for course, owner in conflicts.items():
                    t.conflicts[(course, self.source)] = owner
            t.skipped_folders = dict(skipped_folders)

    def rename_course(self, old: str, new: str, slug: str) -> int:
        with self.db.transaction() as t:
            course = t.courses.pop(old, None)
            if course is None:
                return 0
            t.courses[new] = course
            project = t.projects[course.project_id]
            if course.project_version == project.version:
                course.project_version = None  # the rename's own write: not someone else's
            project.slug, project.version = slug, t.next_version()
            moved = 0
            for row in t.contents.values():
                if row.project_id != project.id or not (row.file_path or "").startswith(f"{old}/"):
                    continue
                row.file_path = new + (row.file_path or "")[len(old) :]
                before, row.version = row.version, t.next_version()
                mark = t.marks.get(row.id)
                if mark is not None:
                    # as sql/course.sql's rename: the mark moves with the rename's own write,
                    # unless someone else had changed the row (that stays to be repaired)
                    if mark.written == before:
                        mark.written = row.version
                    if mark.row_key.startswith("file:"):
                        mark.row_key = f"file:{row.file_path}"
                    moved += 1
            t.refused = {k: v for k, v in t.refused.items() if v[0] != project.id}
            return moved

    def archive_course(self, course: str) -> tuple[bool, int]:
        with self.db.transaction() as t:
            row = t.courses.get(course)
            project = t.projects.get(row.project_id) if row is not None else None
            if row is None or project is None or project.status == "archived":
                return False, 0
            row.status_before_archive, project.status = project.status, "archived"
            project.version = t.next_version()
            row.stat_fingerprint, row.archived = None, True  # the fingerprint finds a rename
            deleted = 0
            for content_id, mark in t.marks_of(project.id).items():
                content = t.contents[content_id]
                if content.deleted_at is None:
                    content.deleted_at, content.version = self.db.clock(), t.next_version()
                    mark.written = content.version
                    deleted += 1
            return True, deleted

    # -- writing courses ----------------------------------------------------------------

    def sync_course(
        self, snapshot: CourseSnapshot, stat_fingerprint: bytes | None = None
    ) -> CourseResult:
        return settled(
            snapshot, lambda check: self._sync(snapshot, stat_fingerprint, check_slugs=check)
        )

    def sync_courses(
        self, courses: list[tuple[CourseSnapshot, bytes | None]]
    ) -> list[CourseResult]:
        results = [CourseResult(s.course, rejected=list(s.rejected)) for s, _ in courses]
        try:
            with self.db.transaction() as t:
                for (snapshot, stat), result in zip(courses, results, strict=True):
                    write_course(
                        t,
                        snapshot,
                        result,
                        source=self.source,
                        clock=self.db.clock,
                        check_slugs=False,
                    )
                    upsert_course(t, snapshot, result, stat, self.source)
        except SlugTaken as taken:  # the unique index, at the commit: the batch is refused
            raise RejectedError(taken.course, "a slug is taken", UNIQUE_VIOLATION) from None
        for result in results:
            result.transactions = 1
        return results

    def _sync(
        self, snapshot: CourseSnapshot, stat_fingerprint: bytes | None, *, check_slugs: bool
    ) -> CourseResult:
        result = CourseResult(snapshot.course, rejected=list(snapshot.rejected))
        with self.db.transaction() as t:
            write_course(
                t,
                snapshot,
                result,
                source=self.source,
                clock=self.db.clock,
                check_slugs=check_slugs,
            )
            upsert_course(t, snapshot, result, stat_fingerprint, self.source)
        result.transactions = 1
        return result

    def _changed(self, t: Tables, course: CourseRow) -> bool:
        """changed_courses: a live course of this source with a row, the project, its
        audience or a link written by someone else since syncd wrote it."""
        if course.archived or course.source not in (None, self.source):
            return False
        marks = t.marks_of(course.project_id)
        project = t.projects.get(course.project_id)
        audience = t.audience_by_id(project.audience) if project else None
        return (
            any(t.contents[c].version != m.written for c, m in marks.items())
            or course.row_count != len(marks)
            or (
                project is not None
                and course.project_version is not None
                and project.version != course.project_version
            )
            or (
                course.project_version is not None
                and (audience.version if audience else None) != course.audience_version
            )
            or course.links_mark != t.links_mark(course.project_id)
        )


def _known(t: Tables) -> dict[str, Known]:
    return {
        course: Known(
            fingerprint=row.fingerprint,
            archived=row.archived,
            stat_fingerprint=row.stat_fingerprint,
            source=row.source,
            owner_retired=t.retired(row.source),
            slug=t.course_slug(row),
        )
        for course, row in t.courses.items()
    }


def _save_stats(t: Tables, items: list[tuple[str, bytes, bytes]]) -> None:
    for course, fingerprint, stat in items:
        row = t.courses.get(course)
        if row is not None and row.fingerprint == fingerprint:
            row.stat_fingerprint = stat
