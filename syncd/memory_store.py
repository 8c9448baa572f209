"""The course store in memory: what sql/course.sql does to PostgreSQL, done to plain dicts,
so that the real Reconciler and verify run in unit tests (procrastinate ships its
InMemoryConnector for the same reason).

``MemoryDatabase`` holds the tables: projects, minds, audiences, contents rows (soft
deleted or live), syncd's bookkeeping of each row and course, sources, conflicts, refused
files and skipped folders. Its ``edit_*``/``delete_row`` methods are the app's own writes
(they move a row's write mark, as a write in SQL moves its xmin), so that a test sees what
syncd repairs. ``MemoryStore`` is one source's view of it and implements ``CourseStorage``
with the pure core of the SQL store (``plan_course``, ``project_differences``), so that it
makes the same decisions. Each transaction runs under one lock on a copy of the tables
that replaces them only when it succeeds.

Not modelled: refusals by the database (a row it would refuse is written; ``refused`` can be
set by a test), locks and timeouts, triggers and row-level security."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from syncd.course import CourseSnapshot, FileIssue, Project
from syncd.errors import RejectedError
from syncd.plan import (
    ExistingRow,
    Plan,
    ProjectState,
    RowFields,
    RowWrite,
    SlugHolder,
    json_value,
    plan_course,
    project_differences,
    slug_candidates,
)
from syncd.store import (
    CourseResult,
    Known,
    OwnedElsewhere,
    ProjectHeld,
    SourceSeen,
    conflict_issue,
    held_audience_issue,
    held_project_issue,
)

UNIQUE_VIOLATION = "23505"


@dataclass
class ProjectRow:
    id: uuid.UUID
    slug: str
    name: str
    description: str | None
    project_type: str
    metadata: Any
    creator: uuid.UUID | None  # mind ids
    persona: uuid.UUID | None
    audience: uuid.UUID | None  # audience profile id
    status: str = "planning"
    version: int = 0  # the stand-in for xmin: moved by every write of the row


@dataclass
class AudienceRow:
    id: uuid.UUID
    slug: str
    name: str
    description: str
    technical_level: str | None
    owner: uuid.UUID | None = None  # a mind that owns the profile (set in the app)
    version: int = 0


@dataclass
class ContentRow:
    id: uuid.UUID
    project_id: uuid.UUID | None
    content_type: str
    parent_id: uuid.UUID | None
    sequence_order: int | None
    slug: str
    title: str
    content: str | None
    metadata: Any
    fidelity_score: Decimal | None
    status: str
    file_path: str | None
    deleted_at: float | None = None
    tags: set[str] = field(default_factory=set)  # links: no write mark of their own
    minds: dict[uuid.UUID, str] = field(default_factory=dict)  # mind id -> role
    version: int = 0


@dataclass
class RowMark:
    """syncd.rows: what syncd wrote of one contents row."""

    project_id: uuid.UUID
    row_key: str
    row_hash: bytes
    source_hash: bytes | None
    fm_status: str
    written: int  # the row's version when syncd wrote it


@dataclass
class CourseRow:
    """syncd.courses."""

    project_id: uuid.UUID
    fingerprint: bytes | None
    stat_fingerprint: bytes | None
    source: str | None
    archived: bool = False
    status_before_archive: str | None = None
    row_count: int = 0
    project_version: int | None = None
    audience_version: int | None = None
    links_mark: frozenset[tuple[Any, ...]] = frozenset()


@dataclass
class SourceRow:
    root: str
    host: str
    settings: dict[str, Any]
    retired: bool = False


@dataclass
class Tables:
    projects: dict[uuid.UUID, ProjectRow] = field(default_factory=dict)
    minds: dict[str, uuid.UUID] = field(default_factory=dict)  # slug -> id
    mind_names: dict[str, str] = field(default_factory=dict)
    audiences: dict[str, AudienceRow] = field(default_factory=dict)  # by slug
    contents: dict[uuid.UUID, ContentRow] = field(default_factory=dict)
    marks: dict[uuid.UUID, RowMark] = field(default_factory=dict)
    courses: dict[str, CourseRow] = field(default_factory=dict)
    sources: dict[str, SourceRow] = field(default_factory=dict)
    conflicts: dict[tuple[str, str], str] = field(default_factory=dict)  # (course, source)
    refused: dict[str, tuple[uuid.UUID, str]] = field(default_factory=dict)  # path -> reason
    skipped_folders: dict[str, int] = field(default_factory=dict)
    reclaimed: list[tuple[uuid.UUID, str, str]] = field(default_factory=list)
    tick: int = 0

    def next_version(self) -> int:
        self.tick += 1
        return self.tick

    def project_of(self, slug: str) -> ProjectRow | None:
        return next((p for p in self.projects.values() if p.slug == slug), None)

    def audience_by_id(self, audience_id: uuid.UUID | None) -> AudienceRow | None:
        return next((a for a in self.audiences.values() if a.id == audience_id), None)

    def mind_slug(self, mind_id: uuid.UUID | None) -> str | None:
        return next((s for s, i in self.minds.items() if i == mind_id), None)

    def marks_of(self, project_id: uuid.UUID) -> dict[uuid.UUID, RowMark]:
        return {c: m for c, m in self.marks.items() if m.project_id == project_id}

    def links_mark(self, project_id: uuid.UUID) -> frozenset[tuple[Any, ...]]:
        """The tag and mind links of the project's syncd rows (upsert_course's links_mark)."""
        links: set[tuple[Any, ...]] = set()
        for content_id in self.marks_of(project_id):
            row = self.contents[content_id]
            links.update((content_id, "tag", t) for t in row.tags)
            links.update((content_id, m, role) for m, role in row.minds.items())
        return frozenset(links)

    def retired(self, source: str | None) -> bool:
        found = self.sources.get(source) if source is not None else None
        return found is not None and found.retired


class MemoryDatabase:
    """The tables syncd writes, shared by every ``MemoryStore`` (one per source), and the
    app's own edits. ``clock`` stamps deletions."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.tables = Tables()
        self.clock = clock
        self._lock = threading.RLock()

    @contextmanager
    def transaction(self) -> Iterator[Tables]:
        """The tables to change: kept when the block ends, dropped when it raises."""
        with self._lock:
            work = copy.deepcopy(self.tables)
            yield work
            self.tables = work

    @contextmanager
    def reading(self) -> Iterator[Tables]:
        with self._lock:
            yield self.tables

    # -- what a test reads and what the app writes -------------------------------------

    def project(self, slug: str) -> ProjectRow | None:
        with self.reading() as t:
            return t.project_of(slug)

    def rows(self, slug: str, *, live: bool = True) -> list[ContentRow]:
        """The contents rows of the project ``slug`` (``live``: not soft-deleted)."""
        with self.reading() as t:
            project = t.project_of(slug)
            return [
                r
                for r in t.contents.values()
                if project is not None
                and r.project_id == project.id
                and not (live and r.deleted_at is not None)
            ]

    def row(self, file_path: str) -> ContentRow:
        with self.reading() as t:
            (found,) = [r for r in t.contents.values() if r.file_path == file_path]
            return found

    def edit_row(self, file_path: str, **values: Any) -> None:
        """An UPDATE of a contents row in the app (title=..., status=..., ...)."""
        with self.transaction() as t:
            (row,) = [r for r in t.contents.values() if r.file_path == file_path]
            for name, value in values.items():
                setattr(row, name, value)
            row.version = t.next_version()

    def delete_row(self, file_path: str) -> None:
        """A DELETE of a contents row in the app: its children, links and marks go too."""
        with self.transaction() as t:
            (row,) = [r for r in t.contents.values() if r.file_path == file_path]
            doomed = {row.id}
            while more := {
                r.id for r in t.contents.values() if r.parent_id in doomed and r.id not in doomed
            }:
                doomed |= more
            for content_id in doomed:
                del t.contents[content_id]
                t.marks.pop(content_id, None)

    def edit_project(self, slug: str, **values: Any) -> None:
        """An UPDATE of a project in the app (name=..., status=..., ...)."""
        with self.transaction() as t:
            project = t.project_of(slug)
            assert project is not None, slug  # noqa: S101 - a test's own mistake
            for name, value in values.items():
                setattr(project, name, value)
            project.version = t.next_version()

    def retire_source(self, name: str) -> None:
        with self.transaction() as t:
            t.sources[name].retired = True


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
            if project is not None and self._held(t, snapshot, project):
                holder = t.mind_slug(project.creator)
                return Plan(rejected=[held_project_issue(snapshot.course, p.slug, holder)]), ()
            state = None
            if with_fields and "project" not in snapshot.protected:
                state = _project_state(t, snapshot, project)
            if project is not None and "project" in snapshot.protected:
                minds = (project.creator, project.persona)
            else:
                minds = (_mind_id(t, p.creator_mind), _mind_id(t, p.persona_mind))
            rows = _existing(t, snapshot, with_fields=with_fields)
            plan = _plan(
                t, snapshot, rows, project.id if project else None, minds, check_slugs=True
            )
            wanted, issue = _held_audience(t, snapshot)
        if issue is not None:
            plan.rejected.append(issue)
        return plan, project_differences(wanted, state) if state is not None else ()

    def dry_run(self, snapshot: CourseSnapshot) -> CourseResult:
        result = CourseResult(snapshot.course, rejected=list(snapshot.rejected))
        plan, _ = self.plan_from_reads(snapshot)
        _count(result, plan)
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
                row.version = t.next_version()
                mark = t.marks.get(row.id)
                if mark is not None:
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
        try:
            try:
                return self._sync(snapshot, stat_fingerprint, check_slugs=False)
            except _SlugTaken:
                return self._sync(snapshot, stat_fingerprint, check_slugs=True)
        except OwnedElsewhere as owned:
            return CourseResult(
                snapshot.course,
                rejected=[conflict_issue(snapshot.course, owned.owner)],
                owned_by=owned.owner,
            )
        except ProjectHeld as held:
            return CourseResult(snapshot.course, rejected=[*snapshot.rejected, held.issue])

    def sync_courses(
        self, courses: list[tuple[CourseSnapshot, bytes | None]]
    ) -> list[CourseResult]:
        results = [CourseResult(s.course, rejected=list(s.rejected)) for s, _ in courses]
        try:
            with self.db.transaction() as t:
                for (snapshot, stat), result in zip(courses, results, strict=True):
                    self._write(t, snapshot, result, check_slugs=False)
                    self._upsert_course(t, snapshot, result, stat)
        except _SlugTaken as taken:  # the unique index, at the commit: the batch is refused
            raise RejectedError(taken.course, "a slug is taken", UNIQUE_VIOLATION) from None
        for result in results:
            result.transactions = 1
        return results

    def _sync(
        self, snapshot: CourseSnapshot, stat_fingerprint: bytes | None, *, check_slugs: bool
    ) -> CourseResult:
        result = CourseResult(snapshot.course, rejected=list(snapshot.rejected))
        with self.db.transaction() as t:
            self._write(t, snapshot, result, check_slugs=check_slugs)
            self._upsert_course(t, snapshot, result, stat_fingerprint)
        result.transactions = 1
        return result

    def _write(
        self, t: Tables, snapshot: CourseSnapshot, result: CourseResult, *, check_slugs: bool
    ) -> None:
        """CourseStore._queue_reads, _planned and _queue_writes, in their order."""
        p, course = snapshot.project, snapshot.course
        if self.source:
            for row in [r for c, r in t.courses.items() if c == course or _slug(t, r) == p.slug]:
                if row.source not in (None, self.source) and not t.retired(row.source):
                    raise OwnedElsewhere(row.source or "")
        _insert_minds(t, snapshot)
        before = written = None
        if "project" not in snapshot.protected:
            before = _project_state(t, snapshot, t.project_of(p.slug))
            written = self._upsert_project(t, snapshot)
        project = t.project_of(p.slug)
        if project is None:  # a protected (rejected) brief of a course never synced before
            written = self._upsert_project(t, snapshot)
            project = t.project_of(p.slug)
            assert project is not None  # noqa: S101 - just inserted
        if self._held(t, snapshot, project):
            holder = t.mind_slug(project.creator)
            raise ProjectHeld(held_project_issue(course, p.slug, holder))
        wanted, issue = _held_audience(t, snapshot)
        if issue is not None:
            result.rejected.append(issue)
        result.project_written = written is not None
        if before is not None:
            result.project_fields = project_differences(wanted, before)
            result.project_repaired = before.changed and bool(result.project_fields)
        rows = _existing(t, snapshot, with_fields=False)
        minds = (project.creator, project.persona)
        plan = _plan(t, snapshot, rows, project.id, minds, check_slugs=check_slugs)
        for reclaim in plan.reclaims:  # before any insert takes the slugs back
            holder_row = t.contents.get(reclaim.holder)
            if holder_row is None or holder_row.slug != reclaim.slug:
                continue
            if holder_row.id not in t.marks:  # a syncd's row keeps its slug
                holder_row.slug = f"reclaimed--{holder_row.id}-{uuid.uuid4().hex[:8]}"
                holder_row.version = t.next_version()
                t.reclaimed.append((holder_row.id, reclaim.slug, holder_row.slug))
        _apply(t, project.id, plan, course, self.db.clock())
        t.refused = {k: v for k, v in t.refused.items() if v[0] != project.id}
        _count(result, plan)
        result.project_id = project.id

    def _held(self, t: Tables, snapshot: CourseSnapshot, project: ProjectRow) -> bool:
        """Another creator's project, which syncd never takes (project_minds' held)."""
        course = t.courses.get(snapshot.course)
        creator = snapshot.project.creator_mind
        return not (
            (course is not None and course.project_id == project.id)
            or project.creator is None
            or (creator is not None and t.mind_slug(project.creator) == creator.slug)
        )

    def _upsert_project(self, t: Tables, snapshot: CourseSnapshot) -> uuid.UUID | None:
        """upsert_audience and upsert_project: the project's id when it was written."""
        p, a = snapshot.project, snapshot.project.audience
        creator = _mind_id(t, p.creator_mind)
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
            "persona": _mind_id(t, p.persona_mind),
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

    def _upsert_course(
        self,
        t: Tables,
        snapshot: CourseSnapshot,
        result: CourseResult,
        stat_fingerprint: bytes | None,
    ) -> None:
        assert result.project_id is not None  # noqa: S101 - written by _write
        complete = not result.rejected
        project = t.projects[result.project_id]
        audience = t.audience_by_id(project.audience)
        before = t.courses.get(snapshot.course)
        t.courses[snapshot.course] = CourseRow(
            project_id=project.id,
            fingerprint=snapshot.fingerprint if complete else None,
            stat_fingerprint=stat_fingerprint if complete else None,
            source=self.source or (before.source if before else None),
            row_count=len(t.marks_of(project.id)),
            project_version=project.version,
            audience_version=audience.version if audience else None,
            links_mark=t.links_mark(project.id),
        )

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


class _SlugTaken(Exception):
    """A new row's slug is held by another row: the unique index refuses the insert."""

    def __init__(self, course: str) -> None:
        super().__init__(course)
        self.course = course


def _known(t: Tables) -> dict[str, Known]:
    return {
        course: Known(
            fingerprint=row.fingerprint,
            archived=row.archived,
            stat_fingerprint=row.stat_fingerprint,
            source=row.source,
            owner_retired=t.retired(row.source),
            slug=_slug(t, row),
        )
        for course, row in t.courses.items()
    }


def _slug(t: Tables, course: CourseRow) -> str | None:
    project = t.projects.get(course.project_id)
    return project.slug if project is not None else None


def _save_stats(t: Tables, items: list[tuple[str, bytes, bytes]]) -> None:
    for course, fingerprint, stat in items:
        row = t.courses.get(course)
        if row is not None and row.fingerprint == fingerprint:
            row.stat_fingerprint = stat


def _mind_id(t: Tables, mind: Any) -> uuid.UUID | None:
    return t.minds.get(mind.slug) if mind is not None else None


def _insert_minds(t: Tables, snapshot: CourseSnapshot) -> None:
    for mind in (snapshot.project.creator_mind, snapshot.project.persona_mind):
        if mind is not None and mind.slug not in t.minds:
            t.minds[mind.slug] = uuid.uuid4()
            t.mind_names[mind.slug] = mind.display_name


def _held_audience(t: Tables, snapshot: CourseSnapshot) -> tuple[Project, FileIssue | None]:
    """audience_held: the project as a sync writes it, and the issue naming the holder."""
    p = snapshot.project
    if p.audience is None or "project" in snapshot.protected:
        return p, None
    found = t.audiences.get(p.audience.slug)
    creator = _mind_id(t, p.creator_mind)
    if found is None or found.owner is None or found.owner == creator:
        return p, None
    issue = held_audience_issue(snapshot.course, p.audience.slug, t.mind_slug(found.owner) or "?")
    return dataclasses.replace(p, audience=None), issue


def _project_state(
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


def _existing(t: Tables, snapshot: CourseSnapshot, *, with_fields: bool) -> list[ExistingRow]:
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


def _plan(
    t: Tables,
    snapshot: CourseSnapshot,
    rows: list[ExistingRow],
    project_id: uuid.UUID | None,
    minds: tuple[uuid.UUID | None, uuid.UUID | None],
    *,
    check_slugs: bool,
) -> Plan:
    creator, persona = minds
    plan = plan_course(snapshot, rows, creator_mind_id=creator, persona_mind_id=persona)
    if check_slugs and plan.inserts:
        wanted = {
            slug
            for w in plan.inserts
            for slug in slug_candidates(w.record, snapshot.project.slug, project_id)
        }
        holders = {
            r.slug: SlugHolder(r.id, r.id in t.marks)
            for r in t.contents.values()
            if r.slug in wanted
        }
        if holders:
            plan = plan_course(
                snapshot,
                rows,
                creator_mind_id=creator,
                persona_mind_id=persona,
                slug_holders=holders,
                project_id=project_id,
            )
    return plan


def _md5(text: str | None) -> str | None:
    """md5(content), as existing_rows reads it."""
    if text is None:
        return None
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - PostgreSQL's md5(), not security


def _score(value: float | None) -> Decimal | None:
    """numeric(3, 2), as the column stores it."""
    if value is None:
        return None
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _apply(t: Tables, project_id: uuid.UUID, plan: Plan, course: str, now: float) -> None:
    """CourseStore._apply: rows, soft deletes, links, then syncd.rows."""
    taken = {r.slug for r in t.contents.values()}
    for w in plan.inserts:
        if w.slug in taken:
            raise _SlugTaken(course)
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


def _count(result: CourseResult, plan: Plan) -> None:
    result.plan = plan
    result.inserted, result.updated = len(plan.inserts), len(plan.updates) + len(plan.relinks)
    result.deleted, result.unchanged = len(plan.deletes), plan.unchanged
    result.rejected.extend(plan.rejected)
