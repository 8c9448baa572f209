"""What this process knows of each course in the database: what syncd last wrote of it
(``store.Known``: its fingerprints, whether it is archived, its source and slug), loaded by
each full reconcile (``CourseStore.pass_state``) and kept up to date by every course job; and
the courses whose files were touched but not changed, whose new stat is still to record.

Course jobs run on the scheduler's workers and the whole-tree pass on the writer's thread:
``KnownCourses`` guards all of its state with its one lock, never held while it calls out.
A caller that must read it together with state of its own (``Renames``) holds its own lock
around these calls: never the other way round."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from syncd.bookkeeping import Known


class KnownCourses:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, Known] = {}
        self._touched: list[tuple[str, bytes, bytes]] = []  # (course, content, stat hashes)

    def load(self, known: Mapping[str, Known]) -> None:
        """A full reconcile's fresh reading of the database."""
        with self._lock:
            self._known = dict(known)

    def get(self, course: str) -> Known | None:
        with self._lock:
            return self._known.get(course)

    def __setitem__(self, course: str, known: Known) -> None:
        with self._lock:
            self._known[course] = known

    def items(self) -> list[tuple[str, Known]]:
        with self._lock:
            return list(self._known.items())

    def names(self) -> set[str]:
        with self._lock:
            return set(self._known)

    def renamed(self, old: str, new: str, slug: str) -> None:
        """``old``'s rows moved to ``new`` (a folder renamed), with its project's new slug."""
        with self._lock:
            known_old = self._known.pop(old, None)
            if known_old is not None:
                self._known[new] = known_old._replace(slug=slug)

    def archived(self, course: str, known: Known) -> None:
        """``course`` (as ``known`` said) archived, unless it was renamed meanwhile."""
        with self._lock:
            if course in self._known:  # not renamed meanwhile
                self._known[course] = known._replace(archived=True, stat_fingerprint=None)

    def touched(self, course: str, known: Known, fingerprint: bytes, stat: bytes) -> None:
        """Its files were touched, not changed: the new stat, to record (``take_touched``)."""
        with self._lock:
            self._touched.append((course, fingerprint, stat))
            self._known[course] = known._replace(stat_fingerprint=stat)

    def take_touched(self) -> list[tuple[str, bytes, bytes]]:
        with self._lock:
            touched, self._touched = self._touched, []
            return touched
