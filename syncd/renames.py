"""Renames: a course folder that vanished waits a moment for a new folder to claim it, and a
new folder that is one of this source's vanished courses takes over its project, rows and
ids instead of making new ones.

Course jobs run on the scheduler's workers (``mv O X`` tells O's and X's events together and
their jobs run at once): ``Renames`` guards its state (the courses a rename has claimed, when
each vanished course was seen gone, each folder's identity) with its one lock, and holds it
around its readings and writings of ``KnownCourses`` where the two must agree (a claim, a
rename done, an archive's look): the lock order is ``Renames`` then ``KnownCourses``."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncd import layout
from syncd.bookkeeping import Known
from syncd.known import KnownCourses
from syncd.storage import CourseStorage
from syncd.store import CourseResult
from syncd.tree import folder_identity

RENAME_GRACE_S = 2.0  # a vanished course waits this long for a new folder to claim it


def _top_names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:  # not a folder, or unreadable: not a rename's new name we can tell
        return []


class Renames:
    def __init__(
        self,
        root: Path,
        store: CourseStorage,
        known: KnownCourses,
        *,
        mine: Callable[[Known], bool],
        archive: Callable[[str], object],
        log: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.root = root
        self.store = store
        self.log = log
        self.clock = clock
        self._known = known
        self._mine = mine  # is a known course this source's (Ownership.mine)
        self._archive = archive  # the archive guard's
        self._lock = threading.Lock()
        self._renaming: set[str] = set()  # vanished courses a rename has claimed
        self._vanished_at: dict[str, float] = {}  # seen gone by an event
        # course -> its folder's (device, inode) when last seen: `mv` keeps it, `cp -r` does not
        self._folder_ids: dict[str, tuple[int, int]] = {}

    def begin_pass(self) -> None:
        """A full reconcile looks at every course afresh."""
        with self._lock:
            self._vanished_at.clear()

    def seen(self, course: str) -> None:
        """``course``'s folder is there: its identity noted; back (git, an editor): a new
        grace next time it goes."""
        found = folder_identity(self.root / course)
        with self._lock:
            self._vanished_at.pop(course, None)
            if found is not None:
                self._folder_ids[course] = found

    def known_unless_renaming(self, course: str) -> tuple[Known | None, bool]:
        """What is known of ``course``, and whether a new folder is taking it over as its
        new name, read together."""
        with self._lock:
            return self._known.get(course), course in self._renaming

    def vanished(self, course: str) -> CourseResult:
        """A course folder seen gone by its own event. ``mv O X`` tells O's and X's events
        together and their jobs run at once: O is archived only when no folder that could
        be its new name is still to be looked at, or ``RENAME_GRACE_S`` after it vanished,
        so that X's job finds O as its rename instead of reviving an archived course."""
        now = self.clock()
        with self._lock:
            known = self._known.get(course)
            if known is None or known.archived:  # nothing of it to archive: nothing to wait for
                self._vanished_at.pop(course, None)
                return CourseResult(course)
            first_seen = self._vanished_at.setdefault(course, now)
            known_names = self._known.names()
        if now - first_seen < RENAME_GRACE_S and self._unknown_folders(course, known_names):
            return CourseResult(course, skipped=True, retry_at=first_seen + RENAME_GRACE_S)
        with self._lock:
            self._vanished_at.pop(course, None)
        self._archive(course)
        return CourseResult(course)

    def _unknown_folders(self, course: str, known: set[str]) -> bool:
        """Is a course folder at the root that syncd has not synced yet (``course``'s new
        name, maybe)?"""
        try:
            names = os.listdir(self.root)
        except OSError:
            return False
        return any(
            n != course
            and n not in known
            and not n.startswith(".")
            and layout.is_course_folder(_top_names(self.root / n))
            for n in names
        )

    def follow(self, course: str, fingerprint: bytes) -> None:
        """A new course folder that is one of this source's courses whose folder is gone is
        that course, renamed (now, or across a restart): its project, rows and ids move to
        the new name, and its rows are then synced as usual. It is that course when it
        derives the same project slug (renamed, and maybe edited, to a name of the same
        slug), else when it holds exactly its files. Two candidates: none is taken."""
        slug = layout.course_slug(course)
        if not slug:
            return  # rejected by the parser: nothing moves
        new_id = folder_identity(self.root / course)
        with self._lock:  # claimed under the lock: two new folders never take one old course
            gone = [
                (old, known)
                for old, known in self._known.items()
                if old != course
                and old not in self._renaming
                # a folder seen in this process is followed only to its own inode: `cp -r O
                # Y; mv O X` gives O's identity to X, never to the copy
                and self._folder_ids.get(old, new_id) == new_id
                and self._mine(known)  # never another root's course, even one without a source
                and not os.path.lexists(self.root / old)
            ]
            candidates = [old for old, known in gone if known.slug == slug] or [
                old for old, known in gone if known.fingerprint == fingerprint
            ]
            if len(candidates) == 1:
                self._renaming.add(candidates[0])
        if len(candidates) > 1:
            self.log.warning(
                "course rename ambiguous",
                new=course,
                candidates=candidates,
                reason="several vanished courses match: synced as a new course",
            )
            return
        if not candidates:
            return
        (old,) = candidates
        try:
            moved = self.store.rename_course(old, course, slug)
            with self._lock:
                self._known.renamed(old, course, slug)
        finally:
            with self._lock:
                self._renaming.discard(old)
        self.log.info("course renamed", old=old, new=course, rows=moved)
