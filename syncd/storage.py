"""What the reconciler and verify ask of the database, and nothing more: ``CourseStore``
(store.py, PostgreSQL) answers it, and so does ``MemoryStore`` (memory/store.py, plain
dicts), on which the real Reconciler and verify run in unit tests."""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from syncd.bookkeeping import Known
from syncd.course import CourseSnapshot
from syncd.plan import Plan
from syncd.sources import SourceSeen
from syncd.store import CourseResult


class CourseStorage(Protocol):
    """The courses of one source (``source``; None: no ownership, for tools)."""

    source: str | None

    def fingerprints(self) -> dict[str, Known]:
        """course -> what syncd last wrote of it, for every course syncd has written."""
        ...

    def pass_state(self) -> tuple[dict[str, Known], set[str]]:
        """``fingerprints``, and this source's live courses with a row someone else
        changed or deleted since syncd wrote it."""
        ...

    def touch_source(self, root: str, host: str, settings: dict[str, Any]) -> SourceSeen:
        """Record this source as seen now (root, host) with the settings it writes with."""
        ...

    def source_settings(self) -> dict[str, Any] | None:
        """The settings this source's writer recorded (None: none yet)."""
        ...

    def save_findings(
        self,
        *,
        touched: list[tuple[str, bytes, bytes]],
        adopted: list[str] | None,
        conflicts: dict[str, str] | None,
        skipped_folders: dict[str, int],
    ) -> None:
        """What a full reconcile found, in one transaction."""
        ...

    def save_stat_fingerprints(self, items: list[tuple[str, bytes, bytes]]) -> None:
        """(course, content fingerprint, stat fingerprint) of courses found unchanged."""
        ...

    def sync_course(
        self, snapshot: CourseSnapshot, stat_fingerprint: bytes | None = None
    ) -> CourseResult:
        """Write one course, in one transaction."""
        ...

    def sync_courses(
        self, courses: list[tuple[CourseSnapshot, bytes | None]]
    ) -> list[CourseResult]:
        """Write several courses in one transaction; one course's trouble raises (the
        caller then syncs each alone)."""
        ...

    def dry_run(self, snapshot: CourseSnapshot) -> CourseResult:
        """The plan of a sync, computed from reads only."""
        ...

    def rename_course(self, old: str, new: str, slug: str) -> int:
        """Course folder ``old`` is now ``new``: move its project and rows, keeping ids."""
        ...

    def archive_course(self, course: str) -> tuple[bool, int]:
        """Archive the project of a vanished course folder; (archived, rows deleted)."""
        ...

    def plan_from_reads(
        self, snapshot: CourseSnapshot, *, with_fields: bool = False
    ) -> tuple[Plan, tuple[str, ...]]:
        """The plan a sync would make now, and (``with_fields``) the project's fields
        that differ."""
        ...

    def refused_files(self) -> dict[str, str]:
        """file_path -> the database's reason, for every file whose row it refused."""
        ...

    def file_paths(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, str | None]:
        """The file path of each of these rows."""
        ...
