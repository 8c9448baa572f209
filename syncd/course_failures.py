"""Courses whose last sync failed for a reason of their own (a lock held in the app, a
statement timeout, a refusal by a trigger, a surprise in the code), each retried on its own
back-off while every other course goes on.

Pure bookkeeping with an injected clock; thread-safe (the scheduler's workers record, the
supervisor reads)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from syncd.errors import (
    ConfigError,
    CourseBusy,
    FatalError,
    RejectedError,
    RootUnavailable,
    TransientError,
)

FIRST_RETRY_S = 2.0
MAX_RETRY_S = 300.0


def is_course_level(error: BaseException) -> bool:
    """Is ``error`` one course's own trouble (retry that course alone), rather than the
    database's (the breaker), a refusal of syncd itself (exit) or the tree's?"""
    return isinstance(error, Exception) and not isinstance(
        error, TransientError | FatalError | RootUnavailable | ConfigError
    )


class Failure(NamedTuple):
    """What went wrong in one course: ``kind`` is "refused" (the database refused its
    data), "busy" (a lock wait, a statement timeout, a deadlock) or "error" (a surprise)."""

    kind: str
    reason: str
    sqlstate: str | None

    @property
    def event(self) -> str:
        return "course rejected" if self.kind == "refused" else "course failed"


def describe_failure(error: BaseException) -> Failure:
    if isinstance(error, RejectedError):
        return Failure("refused", error.reason, error.sqlstate)
    if isinstance(error, CourseBusy):
        return Failure("busy", str(error), error.sqlstate)
    return Failure("error", f"{type(error).__name__}: {error}", None)


@dataclass(frozen=True)
class CourseFailure:
    course: str
    kind: str  # "refused" (the database refused its data), "busy" (lock wait, timeout), "error"
    reason: str
    sqlstate: str | None
    since: float  # clock time of the first failure in this unbroken run
    attempts: int
    retry_at: float  # clock time of the next try


class CourseFailures:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        first_retry_s: float = FIRST_RETRY_S,
        max_retry_s: float = MAX_RETRY_S,
    ) -> None:
        self._clock = clock
        self.first_retry_s = first_retry_s
        self.max_retry_s = max_retry_s
        self._lock = threading.Lock()
        self._failing: dict[str, CourseFailure] = {}

    def failed(self, course: str, failure: Failure) -> CourseFailure:
        """Record a failed sync of ``course``; its next try waits twice as long as the last
        one did (``first_retry_s`` at first, at most ``max_retry_s``)."""
        now = self._clock()
        with self._lock:
            before = self._failing.get(course)
            attempts = 1 if before is None else before.attempts + 1
            wait = min(self.first_retry_s * 2 ** (attempts - 1), self.max_retry_s)
            record = CourseFailure(
                course,
                *failure,
                since=now if before is None else before.since,
                attempts=attempts,
                retry_at=now + wait,
            )
            self._failing[course] = record
            return record

    def recovered(self, course: str) -> CourseFailure | None:
        """``course`` synced: forget its failures; returns them if it had any."""
        with self._lock:
            return self._failing.pop(course, None)

    def failing(self) -> list[CourseFailure]:
        """Every failing course, the longest failing first."""
        with self._lock:
            return sorted(self._failing.values(), key=lambda f: (f.since, f.course))
