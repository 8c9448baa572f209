"""Pure units of the daemon, driven by a fake clock: debouncer, breaker, sd_notify, event routing."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path

import pytest

from syncd.breaker import CircuitBreaker, State
from syncd.debounce import Debouncer
from syncd.systemd import Notifier
from syncd.watcher import CourseEventHandler, OverflowDetector, course_of


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_course_is_due_after_a_quiet_period_without_events() -> None:
    clock = Clock()
    debouncer = Debouncer(quiet_s=0.5, max_delay_s=5.0, clock=clock)
    debouncer.mark("a")
    clock.now += 0.4
    debouncer.mark("a")
    clock.now += 0.4
    assert debouncer.take_due() == []
    clock.now += 0.1
    assert debouncer.take_due() == ["a"]
    assert debouncer.pending() == 1  # being synced: still pending until done
    debouncer.done("a")
    assert debouncer.pending() == 0


def test_a_course_that_never_stops_changing_is_due_after_the_maximum_delay() -> None:
    clock = Clock()
    debouncer = Debouncer(quiet_s=0.5, max_delay_s=5.0, clock=clock)
    for _ in range(19):  # an event every 0.25 s: the quiet period never comes
        debouncer.mark("busy")
        clock.now += 0.25
    assert debouncer.take_due() == []
    debouncer.mark("busy")
    clock.now += 0.25  # 5 s after the first event
    assert debouncer.take_due() == ["busy"]


def test_pending_work_is_a_set_of_courses_whatever_the_number_of_events() -> None:
    debouncer = Debouncer(quiet_s=0.5, max_delay_s=5.0, clock=Clock())
    for i in range(10_000):
        debouncer.mark(f"course-{i % 3}")
    assert debouncer.pending() == 3


def test_a_deferred_course_waits_for_its_retry_time() -> None:
    clock = Clock()
    debouncer = Debouncer(quiet_s=0.5, max_delay_s=5.0, clock=clock)
    debouncer.defer("a", until=clock.now + 10)
    clock.now += 6
    assert debouncer.take_due() == []
    clock.now += 4
    assert debouncer.take_due() == ["a"]


def test_the_breaker_opens_after_consecutive_failures_and_closes_after_a_good_trial() -> None:
    clock = Clock()
    changes: list[tuple[State, State]] = []
    breaker = CircuitBreaker(
        3, reset_timeout_s=5.0, clock=clock, on_change=lambda a, b: changes.append((a, b))
    )
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is State.CLOSED
    breaker.record_failure()
    assert breaker.state is State.OPEN and not breaker.allow()
    clock.now += 5
    assert breaker.allow() and breaker.state is State.HALF_OPEN
    assert not breaker.allow(), "only one trial call while half-open"
    breaker.record_success()
    assert changes == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.HALF_OPEN),
        (State.HALF_OPEN, State.CLOSED),
    ]


def test_a_failed_trial_reopens_the_breaker_for_another_reset_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, reset_timeout_s=5.0, clock=clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is State.OPEN and breaker.retry_at() == clock.now + 5


def test_the_breaker_lock_is_not_held_while_the_caller_works() -> None:
    breaker = CircuitBreaker(3, 5.0)
    inside = threading.Event()
    release = threading.Event()

    def slow_call() -> None:
        assert breaker.allow()
        inside.set()
        release.wait(5)
        breaker.record_success()

    worker = threading.Thread(target=slow_call)
    worker.start()
    inside.wait(5)
    assert breaker.allow(), "a second caller is not blocked by the first one's call"
    release.set()
    worker.join()


def test_sd_notify_sends_datagrams_and_is_silent_outside_systemd(tmp_path: Path) -> None:
    assert Notifier({}).ready() is False
    address = str(tmp_path / "n.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        notifier = Notifier({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "30000000"})
        assert notifier.watchdog_interval_s == 15.0
        notifier.ready("pending=0")
        notifier.watchdog()
        notifier.stopping()
        assert [sock.recv(100) for _ in range(3)] == [
            b"READY=1\nSTATUS=pending=0",
            b"WATCHDOG=1",
            b"STOPPING=1",
        ]
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).watchdog() is False


def test_events_are_routed_to_their_course_and_noise_is_dropped(tmp_path: Path) -> None:
    marked: list[str] = []
    handler = CourseEventHandler(tmp_path, marked.append, logging.getLogger("test"))
    from watchdog.events import (
        DirCreatedEvent,
        FileClosedNoWriteEvent,
        FileCreatedEvent,
        FileModifiedEvent,
        FileMovedEvent,
    )

    root = str(tmp_path)
    handler.dispatch(FileModifiedEvent(f"{root}/a/lessons/1.1-x.md"))
    handler.dispatch(FileCreatedEvent(f"{root}/a/lessons/.1.1-x.md.swp"))
    handler.dispatch(FileCreatedEvent(f"{root}/a/sources/raw.md"))
    handler.dispatch(FileClosedNoWriteEvent(f"{root}/b/lessons/1.1-x.md"))
    handler.dispatch(FileMovedEvent(f"{root}/c/lessons/.tmp1", f"{root}/c/lessons/1.2-y.md"))
    handler.dispatch(DirCreatedEvent(f"{root}/d"))
    handler.dispatch(FileCreatedEvent(f"{root}/loose-file.md"))
    handler.dispatch(FileMovedEvent(f"{root}/e/lessons/1.1-z.md", "/elsewhere/1.1-z.md"))
    assert marked == ["a", "c", "d", "e"]
    assert course_of(root, "/elsewhere/x.md") is None


def test_the_handler_never_raises_into_the_observer_thread(tmp_path: Path) -> None:
    def broken(_course: str) -> None:
        raise RuntimeError("queue is gone")

    class Log:
        def __init__(self) -> None:
            self.errors: list[str] = []

        def error(self, event: str, **_: object) -> None:
            self.errors.append(event)

    log = Log()
    from watchdog.events import FileModifiedEvent

    CourseEventHandler(tmp_path, broken, log).dispatch(
        FileModifiedEvent(f"{tmp_path}/a/lessons/1.1-x.md")
    )
    assert log.errors == ["watch event dropped"]


@pytest.mark.parametrize("message", ["Inotify queue overflowed; filesystem events were lost"])
def test_a_watch_queue_overflow_asks_for_a_full_reconcile(message: str) -> None:
    calls: list[int] = []
    logger = logging.getLogger("watchdog.observers.inotify_c")
    detector = OverflowDetector(lambda: calls.append(1))
    logger.addHandler(detector)
    try:
        logger.warning(message)
        logger.warning("something else")
    finally:
        logger.removeHandler(detector)
    assert calls == [1]


def test_hitting_the_inotify_watch_limit_is_a_clear_configuration_error(tmp_path: Path) -> None:
    """The kernel's answer (ENOSPC from inotify_add_watch) cannot be provoked without
    changing a system-wide sysctl, so an observer that gives it is handed in."""
    import errno

    from syncd.errors import ConfigError
    from syncd.watcher import start_observer

    class LimitedObserver:
        def schedule(self, *_: object, **__: object) -> None:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")

        def start(self) -> None:  # pragma: no cover - never reached
            raise AssertionError

    handler = CourseEventHandler(tmp_path, lambda _c: None, logging.getLogger("test"))
    with pytest.raises(ConfigError) as error:
        start_observer(tmp_path, handler, polling=False, observer_factory=LimitedObserver)
    assert "fs.inotify.max_user_watches" in str(error.value) and "--polling" in str(error.value)


def test_a_course_taken_for_syncing_stays_pending_until_it_is_done() -> None:
    """Issue 11, problem 2: a course stuck in retries was not counted: heartbeats said
    pending 0 and lag 0 while an edit waited for the database."""
    now = [100.0]
    debouncer = Debouncer(quiet_s=0.5, max_delay_s=5.0, clock=lambda: now[0])
    debouncer.mark("c")
    now[0] += 1.0
    assert debouncer.take_due() == ["c"]
    now[0] += 10.0  # its sync waits out an outage
    assert debouncer.pending() == 1
    assert debouncer.oldest_age() == pytest.approx(11.0)
    debouncer.defer("c", until=now[0] + 5.0)  # it failed: back in line, its age kept
    assert debouncer.pending() == 1 and debouncer.oldest_age() == pytest.approx(11.0)
    now[0] += 5.0
    assert debouncer.take_due() == ["c"]
    debouncer.done("c")
    assert debouncer.pending() == 0 and debouncer.oldest_age() == 0.0


# -- close events (inotify): saves land on close, half-written files wait ------------------


def inotify_debouncer(clock: Clock) -> Debouncer:
    return Debouncer(quiet_s=0.5, max_delay_s=5.0, clock=clock, settle_s=0.05)


def save(debouncer: Debouncer, course: str, path: str) -> None:
    """What inotify reports of one save in place: open, write, close."""
    debouncer.opened(course, path)
    debouncer.writing(course, path)
    debouncer.closed(course, path, wrote=True)


def test_with_close_events_a_closed_save_is_due_after_the_settle_time_not_the_quiet_period() -> (
    None
):
    clock = Clock()
    debouncer = inotify_debouncer(clock)
    save(debouncer, "a", "lessons/1.1-x.md")
    clock.now += 0.04
    assert debouncer.take_due() == []
    clock.now += 0.01
    assert debouncer.take_due() == ["a"]


def test_a_burst_of_closed_saves_is_one_batch() -> None:
    clock = Clock()
    debouncer = inotify_debouncer(clock)
    for i in range(20):  # 20 lessons written one after another, 10 ms apart
        save(debouncer, "a", f"lessons/1.{i}-x.md")
        clock.now += 0.01
        assert debouncer.take_due() == []
    clock.now += 0.05
    assert debouncer.take_due() == ["a"]


def test_a_file_still_open_for_writing_holds_its_course_past_the_maximum_delay() -> None:
    clock = Clock()
    debouncer = inotify_debouncer(clock)
    debouncer.opened("a", "lessons/1.1-x.md")
    for _chunk in range(8):  # chunks written 0.8 s apart, the file never closed meanwhile
        debouncer.writing("a", "lessons/1.1-x.md")
        clock.now += 0.8
        assert debouncer.is_writing("a") and debouncer.held() == 1
        assert debouncer.take_due() == []
    save(debouncer, "b", "lessons/1.1-y.md")  # another course is not held by it
    clock.now += 0.05
    assert debouncer.take_due() == ["b"]
    debouncer.closed("a", "lessons/1.1-x.md", wrote=True)
    assert not debouncer.is_writing("a")
    clock.now += 0.05
    assert debouncer.take_due() == ["a"]


def test_another_program_opening_and_closing_the_file_does_not_release_it() -> None:
    """`touch` (or a reader) while a generator streams the file: inotify's closes do not say
    whose they are, so the file stays held until the last one."""
    clock = Clock()
    debouncer = inotify_debouncer(clock)
    path = "lessons/1.1-x.md"
    debouncer.opened("a", path)  # the generator
    debouncer.writing("a", path)
    debouncer.opened("a", path)  # touch
    debouncer.closed("a", path, wrote=True)
    clock.now += 1.0
    assert debouncer.is_writing("a") and debouncer.take_due() == []
    debouncer.writing("a", path)
    debouncer.closed("a", path, wrote=True)  # the generator is done
    clock.now += 0.05
    assert not debouncer.is_writing("a") and debouncer.take_due() == ["a"]


def test_a_new_file_is_held_from_its_creation_until_its_creator_closes_it() -> None:
    clock = Clock()
    debouncer = inotify_debouncer(clock)
    path = "lessons/1.9-new.md"
    debouncer.created("a", path)
    debouncer.opened("a", path)
    clock.now += 0.8  # the generator has not written its first chunk yet
    assert debouncer.is_writing("a") and debouncer.take_due() == []
    debouncer.writing("a", path)
    debouncer.closed("a", path, wrote=True)
    clock.now += 0.05
    assert debouncer.take_due() == ["a"]


def test_a_file_of_a_folder_moved_in_is_created_but_never_held() -> None:
    clock = Clock()
    debouncer = inotify_debouncer(clock)
    debouncer.created("a", "lessons/1.1-x.md")  # watchdog reports the folder's files as created
    assert not debouncer.is_writing("a")
    clock.now += 0.05
    assert debouncer.take_due() == ["a"]
    debouncer.done("a")
    debouncer.opened("a", "lessons/1.1-x.md")  # syncd reads it
    assert debouncer.is_writing("a")  # created, and open: it could be its creator
    debouncer.closed("a", "lessons/1.1-x.md", wrote=False)
    assert not debouncer.is_writing("a")
    clock.now += 0.05
    assert debouncer.take_due() == ["a"]  # released: read again, never left unsynced


def test_reads_alone_never_make_a_course_due() -> None:
    clock = Clock()
    debouncer = inotify_debouncer(clock)
    for _ in range(3):
        debouncer.opened("a", "lessons/1.1-x.md")
        debouncer.closed("a", "lessons/1.1-x.md", wrote=False)
    clock.now += 1.0
    assert debouncer.take_due() == [] and debouncer.pending() == 0


def test_a_write_whose_open_was_not_seen_holds_until_a_close_and_a_lost_close_until_the_hold() -> (
    None
):
    from syncd.debounce import OPEN_HOLD_S

    clock = Clock()
    debouncer = inotify_debouncer(clock)
    debouncer.writing("a", "lessons/1.1-x.md")  # opened before syncd watched
    clock.now += 10
    assert debouncer.is_writing("a") and debouncer.take_due() == []
    debouncer.closed("a", "lessons/1.1-x.md", wrote=True)
    clock.now += 0.05
    assert debouncer.take_due() == ["a"]
    debouncer.writing("b", "lessons/1.1-y.md")  # and its close is lost
    clock.now += OPEN_HOLD_S - 0.1
    assert debouncer.take_due() == []
    clock.now += 0.2
    assert not debouncer.is_writing("b") and debouncer.take_due() == ["b"]


def test_a_deleted_file_and_lost_events_hold_nothing() -> None:
    clock = Clock()
    debouncer = inotify_debouncer(clock)
    debouncer.opened("a", "lessons/1.1-x.md")
    debouncer.writing("a", "lessons/1.1-x.md")
    debouncer.gone("a", "lessons/1.1-x.md")
    assert not debouncer.is_writing("a")
    debouncer.opened("b", "lessons/1.1-y.md")
    debouncer.writing("b", "lessons/1.1-y.md")
    debouncer.files_unknown()  # the watch queue overflowed
    assert not debouncer.is_writing("b")


def test_without_close_events_writes_wait_for_the_quiet_period() -> None:
    clock = Clock()
    debouncer = Debouncer(quiet_s=0.5, max_delay_s=5.0, clock=clock)  # polling
    debouncer.writing("a", "lessons/1.1-x.md")
    assert not debouncer.is_writing("a")
    clock.now += 0.4
    assert debouncer.take_due() == []
    clock.now += 0.1
    assert debouncer.take_due() == ["a"]


class RecordingFiles:
    def __init__(self) -> None:
        self.seen: list[tuple[object, ...]] = []

    def opened(self, course: str, path: str) -> None:
        self.seen.append(("opened", course, path))

    def writing(self, course: str, path: str) -> None:
        self.seen.append(("writing", course, path))

    def created(self, course: str, path: str) -> None:
        self.seen.append(("created", course, path))

    def closed(self, course: str, path: str, *, wrote: bool) -> None:
        self.seen.append(("closed", course, path, wrote))

    def gone(self, course: str, path: str) -> None:
        self.seen.append(("gone", course, path))


def test_file_events_are_routed_by_kind(tmp_path: Path) -> None:
    from watchdog.events import (
        DirModifiedEvent,
        FileAttribEvent,
        FileClosedEvent,
        FileClosedNoWriteEvent,
        FileCreatedEvent,
        FileDeletedEvent,
        FileModifiedEvent,
        FileMovedEvent,
        FileOpenedEvent,
    )

    files = RecordingFiles()
    handler = CourseEventHandler(
        tmp_path, lambda c: files.seen.append(("mark", c)), logging.getLogger("t"), files=files
    )
    root = str(tmp_path)
    lesson = tmp_path / "a/lessons/1.1-x.md"
    lesson.parent.mkdir(parents=True)
    lesson.write_text("# x\n", encoding="utf-8")
    handler.dispatch(FileCreatedEvent(str(lesson)))
    handler.dispatch(FileOpenedEvent(str(lesson)))
    handler.dispatch(FileModifiedEvent(str(lesson)))
    handler.dispatch(FileClosedEvent(str(lesson)))
    handler.dispatch(FileClosedNoWriteEvent(str(lesson)))
    handler.dispatch(DirModifiedEvent(f"{root}/a/lessons"))
    handler.dispatch(FileAttribEvent(str(lesson)))  # chmod: no write
    handler.dispatch(FileMovedEvent(f"{root}/b/lessons/1.1-y.md", f"{root}/b/lessons/1.2-y.md"))
    handler.dispatch(FileDeletedEvent(f"{root}/c/curriculum.yaml"))
    handler.dispatch(FileModifiedEvent(f"{root}/c/lessons/1.1-deleted.md"))  # no such file
    handler.dispatch(FileModifiedEvent(f"{root}/a/lessons/.1.1-x.md.swp"))  # noise
    rel = "lessons/1.1-x.md"
    assert files.seen == [
        ("created", "a", rel),
        ("opened", "a", rel),
        ("writing", "a", rel),
        ("closed", "a", rel, True),
        ("closed", "a", rel, False),
        ("mark", "a"),
        ("mark", "a"),
        ("gone", "b", "lessons/1.1-y.md"),
        ("mark", "b"),
        ("gone", "c", "curriculum.yaml"),
    ]
