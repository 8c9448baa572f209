"""Issue 16, item 4: a folder the inotify watch limit leaves unwatched at runtime is said
(an event, a health reason, a verify line), polled so that its edits still land, and
watched again once the limit allows."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

from syncd import health
from syncd.blindspots import BlindSpots
from syncd.watcher import OverflowDetector, UnwatchedDetector

# -- the bookkeeping, in-process (clock passed in) -----------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_unwatched_folder_is_said_once_and_retried_from_the_outermost() -> None:
    clock = Clock()
    spots = BlindSpots(clock, retry_s=30)
    spots.unwatched("c1", "limit")
    spots.unwatched("c1/lessons", "limit")
    spots.unwatched("c2/lessons", "limit")
    spots.unwatched("c1", "limit")  # reported again by watchdog: still one folder
    assert [s.path for s in spots.news()] == ["c1", "c1/lessons", "c2/lessons"]
    assert spots.news() == []  # said once
    assert spots.paths() == ["c1", "c1/lessons", "c2/lessons"]
    assert spots.retry_due() == []  # not before retry_s
    clock.now += 30
    assert spots.retry_due() == ["c1", "c2/lessons"]  # c1's watch will cover c1/lessons
    spots.retry_later("c2/lessons")  # still at the limit
    assert [s.path for s in spots.watched("c1")] == ["c1", "c1/lessons"]
    assert spots.retry_due() == []
    clock.now += 30
    assert spots.retry_due() == ["c2/lessons"]
    spots.unwatched("c1", "limit")  # blind again later: said again
    assert [s.path for s in spots.news()] == ["c1"]
    assert [s.path for s in spots.all_watched()] == ["c1", "c2/lessons"]
    assert not spots


def test_a_polled_course_is_marked_once_its_files_changed_and_stayed_still_for_a_poll() -> None:
    spots = BlindSpots(Clock())
    spots.unwatched("c1/lessons", "limit")
    spots.unwatched("", "limit")  # the root itself: every course is polled
    assert spots.polled_courses(lambda: ["a", "c1"]) == ["a", "c1"]
    spots.watched("")
    spots.unwatched("c1/lessons", "limit")
    assert spots.polled_courses(lambda: ["a", "c1"]) == ["c1"]
    # what happened before the polls began is not known: the second poll marks it
    assert [spots.changed("c1", b"v1") for _ in range(3)] == [False, True, False]
    assert spots.changed("c1", b"v2") is False  # being written: not taken half-done
    assert spots.changed("c1", b"v3") is False
    assert spots.changed("c1", b"v3") is True  # still for one poll
    assert spots.changed("c1", b"v3") is False


def record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    return logging.LogRecord(
        "watchdog.observers.inotify",
        logging.WARNING,
        __file__,
        1,
        msg,
        args,
        (type(exc), exc, None) if exc is not None else None,
    )


def test_the_detector_reads_watchdogs_record_not_its_wording() -> None:
    found: list[str | bytes] = []
    detector = UnwatchedDetector(found.append)
    limit = OSError(errno.ENOSPC, "inotify watch limit reached")
    detector.emit(record("Unable to watch %r: %s", b"/r/c1/lessons", limit))
    detector.emit(record("Could not add a watch on %s (%s)", "/r/c2", limit))  # reworded
    detector.emit(record("Unable to rebuild watches below %r", b"/r", exc=limit))
    detector.emit(record("Unable to watch %r: %s", b"/r/c3", OSError(errno.EACCES, "denied")))
    detector.emit(record("Inotify queue overflowed; filesystem events were lost"))
    assert found == [b"/r/c1/lessons", "/r/c2", b"/r"]
    overflows: list[int] = []
    OverflowDetector(lambda: overflows.append(1)).emit(
        record("Unable to watch %r: %s", b"/r/c1", limit)
    )
    assert overflows == []  # a folder not watched is not an overflow


NOW = 1_800_000_000.0


def test_health_names_the_folders_not_watched_as_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    state = health.HealthState(
        written_at=NOW,
        pid=os.getpid(),
        ready=True,
        writer_responsive=True,
        observer_alive=True,
        breaker="closed",
        unreachable_since=None,
        pending=0,
        lag_s=0.0,
        last_sync="2026-12-06T21:00:00Z",
        unwatched=[f"c{n}" for n in range(7)],
    )
    health.write(path, state)
    healthy, why = health.verdict(path, stalled_after_s=30, unreachable_after_s=60, now=NOW)
    assert healthy, why
    assert why.startswith("healthy, but 7 folder(s) not watched")
    assert "fs.inotify.max_user_watches" in why and "c0, c1, c2, c3, c4 and 2 more" in why
    assert health.unwatched(path, stalled_after_s=30, now=NOW) == [f"c{n}" for n in range(7)]
    assert health.unwatched(path, stalled_after_s=30, now=NOW + 31) == []  # stale: no daemon
