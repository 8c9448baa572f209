"""Reconcile: make the database hold what the tree holds, one course at a time.

Shared by ``syncd --rescan`` (every course once) and the daemon (one course per debounced
batch of events). Transient and fatal database errors propagate to the caller; a course
the database rejects is logged and skipped."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from syncd import parser as course_parser
from syncd.course import FileIssue
from syncd.errors import ParseError, RejectedError, TransientError
from syncd.parser import ParseOptions
from syncd.store import CourseResult, CourseStore
from syncd.tree import list_courses, read_course


class Progress(Protocol):
    def __call__(self, done: int, total: int, course: str) -> None: ...


@dataclass
class Summary:
    courses: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped: int = 0
    archived: int = 0
    rejected: list[FileIssue] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    ms: float = 0.0

    def add(self, result: CourseResult) -> None:
        self.courses += 1
        self.inserted += result.inserted
        self.updated += result.updated
        self.deleted += result.deleted
        self.unchanged += result.unchanged
        self.skipped += int(result.skipped)
        self.rejected.extend(result.rejected)


class RootUnavailable(TransientError):
    """The course root is missing, unreadable or suspiciously empty: nothing is archived."""


@dataclass
class Reconciler:
    root: Path
    store: CourseStore
    options: ParseOptions
    log: Any
    max_file_bytes: int = 2 * 1024 * 1024
    write: bool = True  # False: dry run / kill switch; plan from reads, write nothing
    clock: Callable[[], float] = time.monotonic
    last_results: list[CourseResult] = field(default_factory=list)
    _known: dict[str, tuple[bytes | None, bool]] = field(default_factory=dict)
    _skipped_logged: set[str] = field(default_factory=set)

    # -- whole tree -------------------------------------------------------------------

    def reconcile_all(self, progress: Progress | None = None) -> Summary:
        started = self.clock()
        self.log.info("reconcile started", root=str(self.root), write=self.write)
        courses = self.list_courses()
        self._known = self.store.fingerprints()
        live_known = [c for c, (_, archived) in self._known.items() if not archived]
        if not courses and live_known:
            raise RootUnavailable(
                f"course root {self.root} holds no course while the database has "
                f"{len(live_known)}: refusing to archive them (is the tree mounted?)"
            )
        summary = Summary()
        self.last_results = []
        for done, course in enumerate(courses, start=1):
            try:
                result = self.sync_course(course)
                self.last_results.append(result)
                summary.add(result)
            except RejectedError as error:
                summary.failed.append(course)
                self.log.error("course rejected", course=course, reason=error.reason)
            if progress is not None:
                progress(done, len(courses), course)
        for course in sorted(set(live_known) - set(courses)):
            summary.archived += int(self.archive(course))
        summary.ms = (self.clock() - started) * 1000
        self.log.info(
            "reconcile finished",
            courses=summary.courses,
            inserted=summary.inserted,
            updated=summary.updated,
            deleted=summary.deleted,
            unchanged=summary.unchanged,
            skipped=summary.skipped,
            archived=summary.archived,
            rejected=len(summary.rejected),
            failed=len(summary.failed),
            ms=round(summary.ms, 1),
        )
        return summary

    def list_courses(self) -> list[str]:
        try:
            listing = list_courses(self.root)
        except OSError as exc:
            raise RootUnavailable(
                f"course root {self.root} is unreadable: {exc.strerror}"
            ) from None
        for name in listing.skipped:
            if name not in self._skipped_logged:
                self._skipped_logged.add(name)
                self.log.info("folder skipped", folder=name, reason="not a course folder")
        return listing.courses

    # -- one course ---------------------------------------------------------------------

    def sync_course(self, course: str) -> CourseResult:
        """Sync one course folder; archive its project when the folder is gone."""
        started = self.clock()
        files = read_course(self.root, course, self.max_file_bytes)
        if not files.exists or not course_parser.is_course_folder(files.top_names):
            if course in self._known and not self.list_courses():
                raise RootUnavailable(
                    f"course root {self.root} holds no course: refusing to archive {course} "
                    "(is the tree mounted?)"
                )
            self.archive(course)
            return CourseResult(course)
        fingerprint = course_parser.fingerprint(files.files, self.options)
        known = self._known.get(course)
        if known is not None and known[0] == fingerprint and not known[1]:
            result = CourseResult(course, skipped=True)
            self._log_result(result, started)
            return result
        try:
            snapshot = course_parser.parse_course(
                course, files.files, self.options, files.unreadable
            )
        except ParseError as error:
            self.log.warning("file rejected", path=error.path, reason=error.reason)
            return CourseResult(course, rejected=[FileIssue(error.path, error.reason)])
        for issue in snapshot.repaired:
            self.log.warning("file repaired", path=issue.path, reason=issue.reason)
        for issue in snapshot.ignored:
            self.log.warning("field ignored", path=issue.path, reason=issue.reason)
        write = self.store.sync_course if self.write else self.store.dry_run
        result = write(snapshot)
        for issue in result.rejected:
            self.log.warning("file rejected", path=issue.path, reason=issue.reason)
        self._log_result(result, started)
        self._known[course] = (fingerprint if not result.rejected else None, False)
        return result

    def _log_result(self, result: CourseResult, started: float) -> None:
        event = "course synced" if self.write else "course planned (nothing written)"
        self.log.info(
            event,
            course=result.course,
            inserted=result.inserted,
            updated=result.updated,
            deleted=result.deleted,
            unchanged=result.unchanged,
            rejected=len(result.rejected),
            skipped=result.skipped,
            transactions=result.transactions,
            ms=round((self.clock() - started) * 1000, 1),
        )

    def archive(self, course: str) -> int:
        known = self._known.get(course)
        if known is None or known[1]:
            return 0
        if not self.write:
            self.log.info("course would be archived (nothing written)", course=course)
            return 0
        deleted = self.store.archive_course(course)
        self._known[course] = (None, True)
        self.log.info("course archived", course=course, deleted=deleted)
        return 1

    def invalidate(self, course: str) -> None:
        self._known.pop(course, None)
