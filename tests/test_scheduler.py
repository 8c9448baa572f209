"""The scheduler and the writer's loop in-process: a fake store (reconciler) and a fake
clock, no database, no sleeping. Jobs run inline, or on real worker threads where the point
is that two jobs of one course never overlap."""

from __future__ import annotations

import gc
import itertools
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

import pytest

from syncd import heap
from syncd.breaker import CircuitBreaker, State
from syncd.daemon import Writer
from syncd.debounce import Debouncer
from syncd.errors import TransientError
from syncd.reconcile import Summary
from syncd.scheduler import CourseScheduler

T = TypeVar("T")
WAIT_S = 10.0  # upper bound on waiting for an event that must come


class InlineExecutor(Executor):
    """Runs each job at once on the caller's thread (in-process tests, dry runs)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.events if name == event]

    def __getattr__(self, _level: str) -> Callable[..., None]:
        def record(event: str, **fields: Any) -> None:
            self.events.append((event, fields))

        return record


class FakeStore:
    """Stands for the reconciler and its database: records what was synced; while
    ``down``, every call fails as a lost connection does, after ``attempt_s`` of waiting."""

    def __init__(self, clock: Clock, courses: list[str] | None = None) -> None:
        self.clock = clock
        self.courses = courses or []
        self.down = False
        self.attempt_s = 0.0
        self.synced: list[str] = []
        self.reconciles = 0
        self.on_call: Callable[[str], None] = lambda _course: None

    def _call(self, course: str) -> None:
        self.on_call(course)
        if self.down:
            self.clock.advance(self.attempt_s)
            raise TransientError("connection refused")
        self.synced.append(course)

    def sync_course(self, course: str) -> None:
        self._call(course)

    def reconcile_all(
        self,
        scheduler: CourseScheduler,
        progress: Any = None,
        after_course: Callable[[str], None] | None = None,
    ) -> Summary:
        self.reconciles += 1
        scheduler.wait_idle()
        for done, course in enumerate(self.courses, 1):
            scheduler.submit(course, lambda c=course: self._call(c)).result()
            if after_course is not None:
                after_course(course)
            if progress is not None:
                progress(done, len(self.courses), course)
        return Summary(courses=len(self.courses))


def make_writer(
    store: FakeStore,
    clock: Clock,
    scheduler: CourseScheduler | None = None,
    settle_heap: Callable[[], object] = lambda: None,  # not pytest's heap (see heap tests)
) -> tuple[Writer, Debouncer, Log]:
    log = Log()
    debouncer = Debouncer(0.5, 5.0, clock)
    breaker = CircuitBreaker(
        3, 5.0, clock, on_change=lambda old, new: log.warning(f"breaker {new}")
    )
    writer = Writer(
        store,  # type: ignore[arg-type]
        debouncer,
        breaker,
        scheduler or CourseScheduler(1, InlineExecutor()),
        threading.Event(),
        log,
        clock,
        sleep=clock.advance,  # a retry back-off passes on the fake clock
        settle_heap=settle_heap,
    )
    writer.reconcile_requested.set()
    writer.step()  # the first full reconcile
    assert writer.ready.is_set()
    return writer, debouncer, log


# -- the heap after a full reconcile (full collections off the save path) ------------------


class _Node:
    me: object = None


def test_a_full_reconcile_freezes_the_heap_and_the_next_one_frees_a_cycle_it_froze() -> None:
    """After each full reconcile the writer collects and freezes the heap, so that later
    full collections do not walk it while a save waits; a reference cycle dropped after a
    freeze is freed by the next reconcile, not kept for ever."""
    node = _Node()
    node.me = node  # a reference cycle: only the cyclic collector can free it
    alive = weakref.ref(node)
    try:
        writer, _, _ = make_writer(
            FakeStore(Clock(), ["a"]), Clock(), settle_heap=heap.collect_and_freeze
        )
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert alive() is not None  # frozen: no collection walks it
        writer.reconcile_requested.set()
        writer.step()  # the next full reconcile (the periodic safety one)
        assert alive() is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


# -- the scheduler ------------------------------------------------------------------------


def test_two_jobs_of_one_course_never_run_at_once_and_keep_their_order() -> None:
    scheduler = CourseScheduler(3, ThreadPoolExecutor(3))
    release = threading.Event()
    started: list[str] = []

    def first() -> None:
        started.append("a1")
        assert release.wait(WAIT_S)

    a1 = scheduler.submit("a", first)
    a2 = scheduler.submit("a", lambda: started.append("a2"))
    b = scheduler.submit("b", lambda: started.append("b"))
    b.result(WAIT_S)  # a free worker ran course b: a2 waits for a1, not for a worker
    assert started == ["a1", "b"]
    assert scheduler.queued("a") == 1 and scheduler.busy() == 1
    release.set()
    a1.result(WAIT_S)
    a2.result(WAIT_S)
    assert started == ["a1", "b", "a2"]
    assert scheduler.wait_idle(WAIT_S) and scheduler.busy() == 0
    scheduler.shutdown()


def test_a_job_failure_goes_to_its_caller_and_the_course_goes_on() -> None:
    scheduler = CourseScheduler(1, InlineExecutor())

    def boom() -> None:
        raise TransientError("gone")

    with pytest.raises(TransientError):
        scheduler.submit("a", boom).result()
    assert scheduler.submit("a", lambda: 7).result() == 7
    assert scheduler.busy() == 0


def test_after_shutdown_nothing_more_is_accepted() -> None:
    scheduler = CourseScheduler(1, InlineExecutor())
    scheduler.shutdown()
    with pytest.raises(RuntimeError):
        scheduler.submit("a", lambda: None)


# -- the writer's loop ---------------------------------------------------------------------


def test_an_outage_keeps_the_edit_pending_opens_the_breaker_and_the_edit_lands_after() -> None:
    clock = Clock()
    store = FakeStore(clock, ["c1"])
    writer, debouncer, log = make_writer(store, clock)
    store.synced.clear()

    store.down = True
    debouncer.mark("c1")
    clock.advance(0.6)
    writer.step()
    # every failed attempt is counted and said at once, and the third opens the breaker
    assert [e["attempt"] for e in log.named("database unavailable")] == [1, 2, 3]
    assert writer.breaker.state is State.OPEN
    assert log.named("breaker open")
    assert debouncer.pending() == 1 and debouncer.oldest_age() > 0.6

    clock.advance(2.0)  # the breaker is still open: nothing is tried
    writer.step()
    assert len(log.named("database unavailable")) == 3
    assert debouncer.pending() == 1 and debouncer.oldest_age() > 2.6

    store.down = False
    clock.advance(5.0)  # past the reset timeout: one trial, which succeeds
    writer.step()
    assert store.synced == ["c1"]
    assert writer.breaker.state is State.CLOSED
    assert debouncer.pending() == 0 and debouncer.oldest_age() == 0.0


def test_a_course_changed_again_while_it_syncs_is_synced_again_once() -> None:
    clock = Clock()
    store = FakeStore(clock, ["c1"])
    scheduler = CourseScheduler(2, ThreadPoolExecutor(2))
    writer, debouncer, _log = make_writer(store, clock, scheduler)
    store.synced.clear()
    in_sync, release = threading.Event(), threading.Event()

    def hold_first(_course: str) -> None:
        if not in_sync.is_set():
            in_sync.set()
            assert release.wait(WAIT_S)

    store.on_call = hold_first
    debouncer.mark("c1")
    clock.advance(0.6)
    writer.step()
    assert in_sync.wait(WAIT_S)
    for _ in range(3):  # three more saves while the first sync runs
        debouncer.mark("c1")
        clock.advance(0.6)
        writer.step()
    assert scheduler.queued("c1") == 1  # one follow-up, not three
    assert debouncer.pending() == 1
    release.set()
    assert scheduler.wait_idle(WAIT_S)
    assert store.synced == ["c1", "c1"]
    assert debouncer.pending() == 0
    scheduler.shutdown()


def test_stopping_flushes_every_pending_course_due_or_not() -> None:
    clock = Clock()
    store = FakeStore(clock, ["c1", "c2"])
    writer, debouncer, _log = make_writer(store, clock)
    store.synced.clear()
    debouncer.mark("c1")
    debouncer.mark("c2")  # neither is due yet
    writer.stop.set()
    assert writer.flush(clock() + 20) == []
    assert sorted(store.synced) == ["c1", "c2"]


def test_stopping_in_an_outage_hands_back_what_is_left() -> None:
    clock = Clock()
    store = FakeStore(clock, ["c1", "c2"])
    writer, debouncer, _log = make_writer(store, clock)
    store.down = True
    debouncer.mark("c1")
    debouncer.mark("c2")
    writer.stop.set()
    assert sorted(writer.flush(clock() + 20)) == ["c1", "c2"]


def test_the_watchdog_is_fed_every_tick_while_a_reconcile_waits_out_an_outage() -> None:
    """The supervisor pings while ``responsive``: through a full reconcile whose attempts
    each wait a 10 s connect deadline in a 25 s outage, the gaps stay at one tick."""
    clock = Clock()
    store = FakeStore(clock, ["c1", "c2"])
    writer, _debouncer, _log = make_writer(store, clock)
    hung_after = 60.0  # Daemon: longer than any bounded wait of the writer
    pings: list[float] = []
    outage_ends = clock() + 25.0

    def wait(seconds: float) -> None:
        # time passes on the writer's side; the supervisor ticks every second meanwhile
        while seconds > 0:
            clock.advance(min(1.0, seconds))
            seconds -= 1.0
            if writer.responsive(clock(), hung_after):
                pings.append(clock())

    def deadline_then_fail(_course: str) -> None:
        wait(10.0)  # each attempt waits out its connect deadline
        store.down = clock() < outage_ends

    store.down = True
    store.on_call = deadline_then_fail
    writer.sleep = wait  # the retries' back-off
    writer.reconcile_requested.set()
    while writer.reconcile_requested.is_set():
        writer.step()
        wait(writer.breaker.reset_timeout_s)  # the loop idles until the breaker's reset
    assert store.synced and clock() > outage_ends
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) == pytest.approx(1.0), gaps  # one supervisor tick, never more

    # a writer that does not come back within hung_after is hung: no more pings
    assert not writer.responsive(clock() + hung_after, hung_after)
