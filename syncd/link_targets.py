"""The folders that followed links reach (``--follow-symlinks``): the kernel does not follow
links for inotify, so the daemon watches each of them itself.

Written by course jobs on the scheduler's workers (each scan of a course says what its links
reach now) and read by the supervisor on the main thread: ``LinkTargets`` guards its state
with its one lock, never held while it calls out."""

from __future__ import annotations

import threading
from collections.abc import Iterable


class LinkTargets:
    """Course -> the real paths of the folders its followed links reach, as the last scan of
    the course found them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._links: dict[str, frozenset[str]] = {}

    def scanned(self, course: str, targets: Iterable[str]) -> None:
        with self._lock:
            self._links[course] = frozenset(targets)

    def by_target(self) -> dict[str, str]:
        """Real path -> course of every folder reached through a followed link."""
        with self._lock:
            return {target: course for course, targets in self._links.items() for target in targets}
