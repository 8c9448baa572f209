"""The archive guard: a course is archived only on a positive observation that its folder is
gone from this root, and only when it is this source's (or has no source) and no new folder
is taking it over as its new name; a root that holds no course while the database has some
(an unmounted tree) archives nothing.

``ArchiveGuard`` keeps no state of its own (what it reads and updates is ``KnownCourses``',
through ``Renames`` where the two must agree), so it holds no lock; it is called from course
jobs and from the whole-tree pass alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncd.bookkeeping import Known
from syncd.errors import RootUnavailable
from syncd.known import KnownCourses
from syncd.renames import Renames
from syncd.storage import CourseStorage


class ArchiveGuard:
    def __init__(
        self,
        root: Path,
        store: CourseStorage,
        known: KnownCourses,
        renames: Renames,
        *,
        mine: Callable[[Known], bool],
        write: bool,
        log: Any,
    ) -> None:
        self.root = root
        self.store = store
        self.write = write  # False: dry run / kill switch, nothing archived
        self.log = log
        self._known = known
        self._renames = renames
        self._mine = mine  # is a known course this source's (Ownership.mine)

    def refuse_empty_root(self, courses: list[str], live_known: list[str]) -> None:
        """A full reconcile found no course while this source has some live: the tree is
        not there (unmounted), not emptied: nothing is archived."""
        if not courses and live_known:
            raise RootUnavailable(
                f"course root {self.root} holds no course while the database has "
                f"{len(live_known)}: refusing to archive them (is the tree mounted?)"
            )

    def refuse_lone_vanish(self, course: str, courses: Callable[[], list[str]]) -> None:
        """``course``'s folder is gone: when the root now holds no course at all (unmounted),
        refuse to archive it."""
        if self._known.get(course) is not None and not courses():
            raise RootUnavailable(
                f"course root {self.root} holds no course: refusing to archive {course} "
                "(is the tree mounted?)"
            )

    def archive(self, course: str) -> int:
        """Archive a course whose folder is gone from this root (a positive observation):
        only one this source owns, or one without a source."""
        known, renaming = self._renames.known_unless_renaming(course)
        if known is None or known.archived or not (self._mine(known) or known.source is None):
            return 0
        if renaming:  # a new folder is taking it over as its new name: not gone
            return 0
        if not self.write:
            self.log.info("course would be archived (nothing written)", course=course)
            return 0
        archived, deleted = self.store.archive_course(course)
        self._known.archived(course, known)
        if not archived:  # renamed (its rows moved) or archived already: nothing happened
            return 0
        self.log.info("course archived", course=course, deleted=deleted)
        return 1
