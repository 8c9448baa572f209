"""Folders the kernel would not let syncd watch: the inotify watch limit
(fs.inotify.max_user_watches) reached at runtime, when many folders are moved in or created
at once. Until a watch can be added, such a folder's course is polled (a stat fingerprint
of its files), so that its edits still land; the watch is tried again every ``retry_s``.

``BlindSpots`` is the pure bookkeeping (clock injected, one lock, safe from any thread:
watchdog's thread reports, the supervisor polls and retries). ``BlindSpotKeeper`` is the
thin shell the supervisor calls once a tick: it logs, polls, adds the watches and marks the
polled courses in the debouncer."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from watchdog.observers.api import ObservedWatch

from syncd.layout import is_relevant
from syncd.tree import folder_identity, list_courses, scan_course
from syncd.watcher import course_of

RETRY_S = 30.0  # how often a watch is tried again while the limit is reached
POLL_S = 1.0  # how often a folder that is not watched is stat'ed
LIMIT_HINT = "raise fs.inotify.max_user_watches (sysctl -w fs.inotify.max_user_watches=524288)"


@dataclass
class Spot:
    """One folder without a watch, relative to the root ("" is the root itself)."""

    path: str
    reason: str
    since: float
    retry_at: float
    said: bool = False  # its `folder not watched` line was logged

    @property
    def course(self) -> str | None:
        """The course folder it is in; None for the root (every course)."""
        return PurePosixPath(self.path).parts[0] if self.path else None


def _under(path: str, ancestor: str) -> bool:
    return ancestor in ("", path) or path.startswith(ancestor + "/")


class BlindSpots:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        retry_s: float = RETRY_S,
    ) -> None:
        self.retry_s = retry_s
        self._clock = clock
        self._lock = threading.Lock()
        self._spots: dict[str, Spot] = {}
        self._polls: dict[str, tuple[bytes | None, bytes | None]] = {}  # course -> (seen, marked)

    def unwatched(self, path: str, reason: str) -> None:
        """A watch on ``path`` could not be added (from watchdog's thread: records only)."""
        now = self._clock()
        with self._lock:
            if path not in self._spots:
                self._spots[path] = Spot(path, reason, now, now + self.retry_s)

    def news(self) -> list[Spot]:
        """The folders not said yet (each is said once, until it is watched again)."""
        with self._lock:
            fresh = [s for s in self._spots.values() if not s.said]
            for spot in fresh:
                spot.said = True
            return sorted(fresh, key=lambda s: s.path)

    def paths(self) -> list[str]:
        with self._lock:
            return sorted(self._spots)

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._spots)

    def retry_due(self) -> list[str]:
        """The folders to try watching now: those whose turn has come and that no folder
        not watched holds (a recursive watch of the outermost covers those under it)."""
        now = self._clock()
        with self._lock:
            tops = [p for p in self._spots if not any(q != p and _under(p, q) for q in self._spots)]
            return sorted(p for p in tops if self._spots[p].retry_at <= now)

    def retry_later(self, path: str) -> None:
        with self._lock:
            spot = self._spots.get(path)
            if spot is not None:
                spot.retry_at = self._clock() + self.retry_s

    def watched(self, path: str) -> list[Spot]:
        """``path`` and everything under it is watched now (or gone): forget those."""
        with self._lock:
            gone = [s for p, s in self._spots.items() if _under(p, path)]
            for spot in gone:
                del self._spots[spot.path]
            self._forget_polls()
            return sorted(gone, key=lambda s: s.path)

    def all_watched(self) -> list[Spot]:
        """A new watch of the whole tree was added (it covers every folder or fails)."""
        return self.watched("")

    def polled_courses(self, all_courses: Callable[[], Iterable[str]]) -> list[str]:
        """The courses to poll: every course holding a folder not watched (every course of
        the root when the root itself is not watched)."""
        with self._lock:
            courses = {s.course for s in self._spots.values()}
        if None in courses:
            courses.discard(None)
            courses.update(all_courses())
        return sorted(c for c in courses if c is not None)

    def changed(self, course: str, fingerprint: bytes) -> bool:
        """One poll of ``course``: True when its files differ from what was last marked
        and have stayed the same since the poll before (a file being written is not taken
        half-done: the course is marked once it is still for one poll). The first two
        polls mark it: what happened before the poll began is not known."""
        with self._lock:
            seen, marked = self._polls.get(course, (None, None))
            due = fingerprint == seen and fingerprint != marked
            self._polls[course] = (fingerprint, fingerprint if due else marked)
            return due

    def _forget_polls(self) -> None:
        courses = {s.course for s in self._spots.values()}
        if None in courses:
            return
        for course in [c for c in self._polls if c not in courses]:
            del self._polls[course]


@dataclass
class BlindSpotKeeper:
    """The supervisor's side: say each folder not watched, poll their courses, and try
    their watches again. ``observer`` returns the current observer (it is replaced when the
    watcher restarts)."""

    spots: BlindSpots
    root: Path
    observer: Callable[[], Any]
    handler: Any  # the CourseEventHandler every watch reports to
    mark: Callable[[str], None]
    log: Any
    clock: Callable[[], float] = time.monotonic
    follow_symlinks: bool = False
    poll_s: float = POLL_S
    _next_poll: float = 0.0
    _watches: dict[str, tuple[Any, tuple[int, int]]] = field(default_factory=dict)  # added here

    def on_unwatched(self, path: str | bytes) -> None:
        """From the detector (watchdog's thread): only records. A folder that can hold no
        file syncd reads (outside the root, hidden, ``sources/``…) is left alone."""
        root = str(self.root.absolute())
        if os.path.normpath(os.fsdecode(path)) == os.path.normpath(root):
            self.spots.unwatched("", LIMIT_HINT)
            return
        found = course_of(root, path)
        if found is None:
            return
        course, inner = found
        if inner and not is_relevant(f"{inner}/x.md"):
            return
        self.spots.unwatched(f"{course}/{inner}" if inner else course, LIMIT_HINT)

    def tick(self) -> None:
        """One supervisor turn: never raises (a failed poll is tried at the next)."""
        try:
            self._tick()
        except Exception as exc:
            self.log.error("unwatched folders not polled", error=repr(exc))

    def unwatched(self) -> list[str]:
        """The folders not watched now, relative to the root ("." for the root)."""
        return [path or "." for path in self.spots.paths()]

    def rewatched(self) -> None:
        """The whole tree has a new watch (the watcher restarted): every folder is watched."""
        self._watches = {}  # the old observer's, gone with it
        self._said_watched(self.spots.all_watched())

    def _tick(self) -> None:
        for spot in self.spots.news():
            self.log.warning(
                "folder not watched",
                course=spot.course,
                path=spot.path or ".",
                reason=f"inotify watch limit reached: {spot.reason}",
                polled_every_s=self.poll_s,
                retry_every_s=self.spots.retry_s,
            )
        self._drop_stale_watches()
        if not self.spots:
            return
        now = self.clock()
        due = self.spots.retry_due()
        for n, path in enumerate(due):
            if not self._retry(path):  # still at the limit: the others wait their next turn
                for later in due[n + 1 :]:
                    self.spots.retry_later(later)
                break
        if now >= self._next_poll and self.spots:
            started = self.clock()
            for course in self.spots.polled_courses(self._all_courses):
                scan = scan_course(self.root, course, self.follow_symlinks)
                if self.spots.changed(course, scan.stat_fingerprint("")):
                    self.mark(course)
            took = self.clock() - started
            self._next_poll = now + max(self.poll_s, 4 * took)  # polling takes ≤ 1/4 of a core

    def _retry(self, path: str) -> bool:
        """Try to watch ``path`` (recursively: all or nothing); False if it could not be."""
        if path == "":
            return self._retry_root()
        folder = self.root / path
        identity = folder_identity(folder)
        if identity is None:
            for spot in self.spots.watched(path):
                self.log.info("unwatched folder gone", course=spot.course, path=spot.path)
            return True
        try:
            watch = self.observer().schedule(self.handler, str(folder), recursive=True)
        except OSError:
            self.spots.retry_later(path)
            return False
        self._watches[path] = (watch, identity)
        self._said_watched(self.spots.watched(path))
        return True

    def _retry_root(self) -> bool:
        """The root's own watch lost every watch (watchdog could not rebuild them after a
        queue overflow): replace it. It watched nothing, so nothing is lost meanwhile."""
        observer, root = self.observer(), str(self.root)
        with contextlib.suppress(KeyError):
            observer.unschedule(ObservedWatch(root, recursive=True))
        try:
            observer.schedule(self.handler, root, recursive=True)
        except OSError:
            self.spots.retry_later("")
            return False
        self._said_watched(self.spots.all_watched())
        return True

    def _said_watched(self, spots: list[Spot]) -> None:
        courses: set[str] = set()
        for spot in spots:
            self.log.info("folder watched again", course=spot.course, path=spot.path or ".")
            courses.update(self._all_courses() if spot.course is None else [spot.course])
        for course in sorted(courses):
            self.mark(course)  # what changed between the last poll and the watch

    def _drop_stale_watches(self) -> None:
        """A watch added here follows its folder's inode: when the folder is gone or moved
        away, its events would carry the old path, so the watch goes."""
        for path, (watch, identity) in list(self._watches.items()):
            if folder_identity(self.root / path) != identity:
                del self._watches[path]
                with contextlib.suppress(Exception):
                    self.observer().unschedule(watch)

    def _all_courses(self) -> list[str]:
        return list_courses(self.root, self.follow_symlinks).courses
