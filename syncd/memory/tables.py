"""The tables of the in-memory store, and the app's own writes to them.

``MemoryDatabase`` holds the tables: projects, minds, audiences, contents rows (soft
deleted or live), syncd's bookkeeping of each row and course, sources, conflicts, refused
files and skipped folders. Its ``edit_*``/``delete_row`` methods are the app's own writes
(they move a row's write mark, as a write in SQL moves its xmin), so that a test sees what
syncd repairs. Each transaction runs under one lock on a copy of the tables that replaces
them only when it succeeds."""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


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

    def course_slug(self, course: CourseRow) -> str | None:
        project = self.projects.get(course.project_id)
        return project.slug if project is not None else None

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
