"""Whose course is it: this source's (``mine``), another source's (a conflict: the owner
keeps it, nothing is written from here), or a folder whose slug another folder keeps; and
which courses had rows changed by someone else since syncd wrote them (synced even when no
file changed, those rows rewritten from their files).

Read by course jobs on the scheduler's workers and set by the whole-tree pass on the
writer's thread: ``Ownership`` guards its state (the courses owned elsewhere, the pass's slug
conflicts, the courses changed by others) with its one lock, never held while it calls out."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from syncd import layout
from syncd.bookkeeping import Known
from syncd.course import FileIssue
from syncd.known import KnownCourses
from syncd.storage import CourseStorage
from syncd.store import conflict_issue
from syncd.tree import CourseScan


class Ownership:
    def __init__(self, root: Path, store: CourseStorage, known: KnownCourses) -> None:
        self.root = root
        self.store = store
        self._known = known
        self._lock = threading.Lock()
        self._owned_elsewhere: dict[str, str] = {}  # course -> owning source
        self._conflicts: dict[str, str] | None = None  # during a full reconcile: folder -> owner
        self._changed: set[str] = set()  # courses with rows edited by others

    def mine(self, known: Known, *, adopt: bool = False) -> bool:
        """Is this course this source's? With ``adopt``, one without a source (synced
        before sources) or owned by a retired source is taken over when it is synced."""
        if self.store.source is None or known.source == self.store.source:
            return True
        return adopt and (known.source is None or known.owner_retired)

    def begin_pass(self, courses: Iterable[str], known: Iterable[str], changed: set[str]) -> None:
        """A full reconcile begins: the courses changed by others as the database says now,
        the slug conflicts among this listing's ``courses``, nothing owned elsewhere yet."""
        conflicts = layout.slug_conflicts(courses, known)
        with self._lock:
            self._changed, self._owned_elsewhere = changed, {}
            self._conflicts = conflicts

    def end_pass(self) -> dict[str, str]:
        """A full reconcile ends: the courses other sources own, as it found them."""
        with self._lock:
            self._conflicts = None
            return dict(self._owned_elsewhere)

    def owned_by(self, course: str, source: str) -> None:
        """The database said ``course`` is ``source``'s (a sync found it so)."""
        with self._lock:
            self._owned_elsewhere[course] = source

    def not_ours(self, course: str, scan: CourseScan) -> FileIssue | None:
        """Why a folder that is there is not synced from here, if it is not: it cannot be
        read (every row is kept, nothing archived, retried on the next event or safety
        reconcile), another source owns it, or another folder holds its slug."""
        if scan.held is not None:
            return scan.held
        known = self._known.get(course)
        if known is not None and known.source is not None and not self.mine(known, adopt=True):
            self.owned_by(course, known.source)
            return conflict_issue(course, known.source)
        owner = self._conflict(course)
        if owner is not None:
            return FileIssue(
                course,
                f"course slug {layout.course_slug(course)!r} is also derived from"
                f" folder {owner!r}, which keeps the course: rename one of them",
            )
        return None

    def changed_by_others(self, course: str, *, forget: bool = False) -> bool:
        """Had rows of ``course`` been changed in SQL (``forget``: they are being repaired)."""
        with self._lock:
            changed = course in self._changed
            if forget:
                self._changed.discard(course)
            return changed

    def _conflict(self, course: str) -> str | None:
        """The folder that keeps ``course``'s slug, when another one does."""
        with self._lock:
            conflicts = self._conflicts
        if conflicts is None:  # a single course (daemon): look at the root's names now
            try:
                names = [n for n in os.listdir(self.root) if not n.startswith(".")]
            except OSError:
                return None
            slug = layout.course_slug(course)
            rivals = [n for n in names if layout.course_slug(n) == slug]
            conflicts = layout.slug_conflicts(rivals, self._known.names())
        return conflicts.get(course)
