"""Per-course coalescing: a course becomes due after a quiet period without new events,
or after a maximum delay since its first pending event, whichever comes first.

With close events (inotify), the quiet period gives way to what the kernel says: a file
being written (``OpenFiles``: written to or created, and still open) holds its course
until it is closed, and a course whose files are all closed is due ``settle_s`` after its
last event, so a single save lands at once and a burst of saves still makes one
transaction.

Pending work is a set of courses, so memory does not grow with the number of events.
A course taken for syncing stays pending, with the time of its first change, until every
job taken for it has ended, each with ``done`` (or ``defer``, back to waiting): so
``pending`` and ``oldest_age`` count every change that has not reached the database, a sync
stuck in retries, or a job queued behind another of its course, included.
The clock is passed in; ``wait`` is the only method that blocks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from syncd.openfiles import OpenFiles

SETTLE_S = 0.05  # with close events: after a course's last event, for a burst to gather
OPEN_HOLD_S = 60.0  # a file written and never closed is taken as finished after this


class Debouncer:
    def __init__(
        self,
        quiet_s: float,
        max_delay_s: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        settle_s: float | None = None,
    ) -> None:
        self.quiet_s = quiet_s
        self.max_delay_s = max_delay_s
        self.settle_s = settle_s  # None: no close events (polling), the quiet period rules
        self._clock = clock
        self._files = OpenFiles(OPEN_HOLD_S)  # fed only with close events (inotify)
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._not_before: dict[str, float] = {}
        self._taken: dict[str, float] = {}  # being synced: course -> its first change
        self._jobs: dict[str, int] = {}  # course -> jobs taken for it and not ended
        self._cond = threading.Condition()

    def mark(self, course: str) -> None:
        """An event touched ``course`` (safe to call from any thread)."""
        now = self._clock()
        with self._cond:
            self._first.setdefault(course, now)
            self._last[course] = now
            self._cond.notify_all()

    # -- file events (inotify only: under polling every event is a plain ``mark``) ----------

    def opened(self, course: str, path: str) -> None:
        """``path`` was opened (for reading or writing: inotify does not say)."""
        with self._cond:
            if self.settle_s is not None:
                self._files.opened(course, path)

    def writing(self, course: str, path: str) -> None:
        """``path`` was written to."""
        with self._cond:
            if self.settle_s is not None:
                self._files.written(course, path, self._clock())
        self.mark(course)

    def created(self, course: str, path: str) -> None:
        with self._cond:
            if self.settle_s is not None:
                self._files.created(course, path, self._clock())
        self.mark(course)

    def closed(self, course: str, path: str, *, wrote: bool) -> None:
        """A close of ``path``; one that did not write (a reader, syncd itself) marks the
        course only when it released a file that had been written."""
        with self._cond:
            released = self._files.closed(course, path)
        if wrote or released:
            self.mark(course)

    def gone(self, course: str, path: str) -> None:
        """Deleted or moved away."""
        with self._cond:
            self._files.gone(course, path)
        self.mark(course)

    def files_unknown(self) -> None:
        """Events were lost (queue overflow): no file is taken as being written."""
        with self._cond:
            self._files.clear()
            self._cond.notify_all()

    def held(self) -> int:
        """Courses waiting for a file being written to be closed."""
        with self._cond:
            return self._files.held_courses(self._clock())

    def is_writing(self, course: str) -> bool:
        """Is a file of ``course`` open for writing (its content not final)?"""
        now = self._clock()
        with self._cond:
            return self._files.held_until(course, now) > now

    def defer(self, course: str, until: float) -> None:
        """Keep ``course`` pending, not due before ``until`` (the store is unavailable)."""
        now = self._clock()
        with self._cond:
            first = self._taken.get(course, now)
            self._job_ended(course)
            self._first.setdefault(course, first)
            self._last.setdefault(course, now)
            self._not_before[course] = max(until, self._not_before.get(course, until))

    def _due_at(self, course: str) -> float:
        quiet = self.quiet_s if self.settle_s is None else self.settle_s
        due = min(self._last[course] + quiet, self._first[course] + self.max_delay_s)
        due = max(due, self._files.held_until(course, self._clock()))
        return max(due, self._not_before.get(course, due))

    def take_due(self) -> list[str]:
        """Remove and return every course that is due now, oldest first."""
        now = self._clock()
        with self._cond:
            due = sorted(
                (c for c in self._first if self._due_at(c) <= now), key=lambda c: self._first[c]
            )
            for course in due:
                self._taken.setdefault(course, self._first[course])
                self._jobs[course] = self._jobs.get(course, 0) + 1
                self._forget(course)
            return due

    def done(self, course: str) -> None:
        """A job taken for ``course`` ended with its changes in the database (or covered by
        another job of it still to run)."""
        with self._cond:
            self._job_ended(course)

    def _job_ended(self, course: str) -> None:
        left = self._jobs.get(course, 0) - 1
        if left > 0:
            self._jobs[course] = left
        else:
            self._jobs.pop(course, None)
            self._taken.pop(course, None)

    def take_all(self) -> list[str]:
        """Everything pending, due or not (shutdown flush)."""
        with self._cond:
            courses = sorted(self._first, key=lambda c: self._first[c])
            for course in courses:
                self._forget(course)
            return courses

    def pending(self) -> int:
        """Courses with a change not in the database yet: waiting, or being synced."""
        return len(self.pending_courses())

    def pending_courses(self) -> set[str]:
        with self._cond:
            return self._first.keys() | self._taken.keys()

    def oldest_age(self) -> float:
        """Seconds since the oldest pending event (the sync lag), 0 when idle."""
        now = self._clock()
        with self._cond:
            firsts = [*self._first.values(), *self._taken.values()]
            return max((now - t for t in firsts), default=0.0)

    def wait(self, timeout: float) -> None:
        """Block until a course may be due, a new mark arrives, or ``timeout`` passes."""
        with self._cond:
            upcoming = min((self._due_at(c) for c in self._first), default=None)
            delay = timeout if upcoming is None else min(timeout, upcoming - self._clock())
            if delay > 0:
                self._cond.wait(delay)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _forget(self, course: str) -> None:
        self._first.pop(course, None)
        self._last.pop(course, None)
        self._not_before.pop(course, None)
