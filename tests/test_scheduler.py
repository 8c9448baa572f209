"""The scheduler and the writer's loop in-process: a fake store (reconciler) and a fake
clock, no database, no sleeping. Jobs run inline, or on real worker threads where the point
is that two jobs of one course never overlap."""

from __future__ import annotations

import gc
import itertools
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from syncd import heap
from syncd.bookkeeping import Known
from syncd.breaker import CircuitBreaker, State
from syncd.course import ParseOptions
from syncd.course_failures import describe_failure, is_course_level
from syncd.debounce import Debouncer
from syncd.driver_errors import PoolExhausted
from syncd.errors import (
    AuthenticationFailed,
    ConfigError,
    CourseBusy,
    DatabaseFull,
    RejectedError,
    TransientError,
)
from syncd.reconcile import Reconciler
from syncd.renames import RENAME_GRACE_S
from syncd.scheduler import CourseScheduler
from syncd.store import CourseResult
from syncd.tree_pass import Summary
from syncd.writer import WARM_EVERY_S, Writer
from tests.helpers import Clock, InlineExecutor, Log

T = TypeVar("T")
WAIT_S = 10.0  # upper bound on waiting for an event that must come


class FakeStore:
    """Stands for the reconciler and its database: records what was synced; while
    ``down``, every call fails as a lost connection does, after ``attempt_s`` of waiting."""

    def __init__(self, clock: Clock, courses: list[str] | None = None) -> None:
        self.clock = clock
        self.courses = courses or []
        self.down = False
        self.attempt_s = 0.0
        self.synced: list[str] = []
        self.refusing: dict[str, Exception] = {}  # course -> what its sync raises
        self.reconciles = 0
        self.reconcile_error: Exception | None = None  # what the pass's own first step raises
        self.on_call: Callable[[str], None] = lambda _course: None
        self.answered: Callable[[], None] = lambda: None  # the database answered a call

    def _call(self, course: str) -> None:
        self.on_call(course)
        if course in self.refusing:
            error = self.refusing[course]
            if isinstance(error, RejectedError | CourseBusy):
                self.answered()  # the database answered, with a refusal
            raise error
        if self.down:
            self.clock.advance(self.attempt_s)
            raise TransientError("connection refused")
        self.answered()  # as the daemon's connection guard tells the breaker
        self.synced.append(course)

    def sync_course(self, course: str) -> None:
        self._call(course)

    def reconcile_all(
        self,
        scheduler: CourseScheduler,
        progress: Any = None,
        on_failure: Callable[[str, BaseException], None] | None = None,
        after_course: Callable[[str], None] | None = None,
    ) -> Summary:
        """As the reconciler's: a course's own failure is told to ``on_failure`` and the
        pass goes on; the database's ends it."""
        self.reconciles += 1
        scheduler.wait_idle()
        summary = Summary(courses=len(self.courses))
        if progress is not None:
            progress(0, len(self.courses), "")
        if self.reconcile_error is not None:  # registering the source, reading fingerprints
            raise self.reconcile_error
        for done, course in enumerate(self.courses, 1):
            try:
                scheduler.submit(course, lambda c=course: self._call(c)).result()
            except Exception as error:
                if not is_course_level(error):
                    raise
                summary.failed[course] = describe_failure(error)
                if on_failure is not None:
                    on_failure(course, error)
            else:
                if after_course is not None:
                    after_course(course)
            if progress is not None:
                progress(done, len(self.courses), course)
        return summary


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
    store.answered = breaker.record_success
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


def test_a_job_of_several_courses_waits_for_each_of_them_and_holds_them_all() -> None:
    """A full reconcile's job of several courses starts once every earlier job of any of
    them has finished, and a later job of any of them (a save) waits for it; a course it
    does not hold runs meanwhile."""
    scheduler = CourseScheduler(3, ThreadPoolExecutor(3))
    release_a, release_batch, batch_began = threading.Event(), threading.Event(), threading.Event()
    started: list[str] = []

    def hold(name: str, until: threading.Event) -> Callable[[], None]:
        def job() -> None:
            started.append(name)
            if name == "abc":
                batch_began.set()
            assert until.wait(WAIT_S)

        return job

    a1 = scheduler.submit("a", hold("a1", release_a))
    batch = scheduler.submit_group(["a", "b", "c"], hold("abc", release_batch))
    b2 = scheduler.submit("b", lambda: started.append("b2"))
    d = scheduler.submit("d", lambda: started.append("d"))
    d.result(WAIT_S)
    assert started == ["a1", "d"]  # the batch waits for a1; b2 waits for the batch
    assert scheduler.queued("b") == 2 and scheduler.queued("c") == 1
    release_a.set()
    a1.result(WAIT_S)
    assert batch_began.wait(WAIT_S)  # on a worker freed by a1
    assert started == ["a1", "d", "abc"] and not b2.done()
    release_batch.set()
    batch.result(WAIT_S)
    b2.result(WAIT_S)
    assert started == ["a1", "d", "abc", "b2"]
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


def test_a_quiet_writer_checks_a_connection_in_the_background_now_and_then() -> None:
    """Every WARM_EVERY_S while nothing is pending or running and the database answers, the
    writer hands the scheduler one background connection check (keep_warm), so that a save
    after a quiet spell does not pay for it; none while a change waits or the breaker is
    open."""
    clock = Clock()
    store = FakeStore(clock, ["c1"])
    writer, debouncer, _log = make_writer(store, clock)
    warmed: list[float] = []
    writer.keep_warm = lambda: warmed.append(clock())
    writer.step()
    writer.step()
    assert warmed == [clock()]  # once, not at every turn of the loop
    clock.advance(WARM_EVERY_S)
    writer.step()
    assert len(warmed) == 2
    clock.advance(WARM_EVERY_S)
    debouncer.mark("c1")  # a change waits out its quiet period: nothing meanwhile
    writer.step()
    assert len(warmed) == 2 and debouncer.pending() == 1
    store.down = True
    clock.advance(0.6)
    writer.step()  # the sync fails until the breaker opens; the change stays pending
    assert writer.breaker.state is State.OPEN and len(warmed) == 2
    store.down = False
    clock.advance(5.0)
    writer.step()  # the trial syncs it: quiet again, the breaker closed
    assert debouncer.pending() == 0 and writer.breaker.state is State.CLOSED
    assert len(warmed) == 3


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


# -- one course's trouble stays that course's (issue 16) ------------------------------------


def test_a_refusal_in_a_full_reconcile_is_that_courses_and_it_is_retried_on_its_own() -> None:
    """An archive refused by a trigger (P0001) crashed the writer (exit 7) and systemd
    restarted it into the same crash. Now the course is named, retried on its own back-off,
    and everything else goes on."""
    clock = Clock()
    store = FakeStore(clock, ["c1", "c2", "gone"])
    store.refusing["gone"] = RejectedError("gone", "archive refused (SQLSTATE P0001)", "P0001")
    writer, debouncer, log = make_writer(store, clock)
    assert writer.fatal is None
    assert sorted(store.synced) == ["c1", "c2"]
    (said,) = log.named("course rejected")
    assert said["course"] == "gone" and said["sqlstate"] == "P0001"
    assert said["attempt"] == 1 and said["retry_in_s"] > 0
    assert writer.breaker.state is State.CLOSED  # the database answered
    assert debouncer.pending() == 1  # the refused course is not in the database

    clock.advance(said["retry_in_s"] + 0.1)  # its own back-off passes: tried again, alone
    writer.step()
    assert [e["attempt"] for e in log.named("course rejected")] == [1, 2]
    second = log.named("course rejected")[1]
    assert second["retry_in_s"] > said["retry_in_s"]  # backing off

    del store.refusing["gone"]  # the trigger is dropped
    clock.advance(second["retry_in_s"] + 0.1)
    writer.step()
    assert store.synced[-1] == "gone"
    assert log.named("course recovered")[0]["course"] == "gone"
    assert debouncer.pending() == 0 and writer.failures.failing() == []


def test_a_surprise_in_one_course_does_not_end_the_daemon() -> None:
    """A KeyError in one course's job (the rename race) ended the daemon with exit 7."""
    clock = Clock()
    store = FakeStore(clock, ["c1", "c2"])
    writer, debouncer, log = make_writer(store, clock)
    store.synced.clear()
    store.refusing["c1"] = KeyError("c0")
    debouncer.mark("c1")
    debouncer.mark("c2")
    clock.advance(0.6)
    writer.step()
    assert writer.fatal is None
    assert store.synced == ["c2"]
    (failed,) = log.named("course failed")
    assert failed["course"] == "c1" and "KeyError" in failed["reason"]
    assert failed["exc_info"] is store.refusing["c1"]  # its traceback is logged
    assert [f.course for f in writer.failures.failing()] == ["c1"]


def test_a_lock_held_on_one_course_does_not_open_the_breaker_for_the_others() -> None:
    """Three lock waits on one course opened the breaker and stopped every course for as
    long as the lock stood."""
    clock = Clock()
    store = FakeStore(clock, ["locked", "free"])
    writer, debouncer, log = make_writer(store, clock)
    store.synced.clear()
    store.refusing["locked"] = CourseBusy(
        "course locked: canceling statement due to lock timeout (SQLSTATE 55P03)", "55P03"
    )
    for _ in range(6):  # the locked course keeps failing, edits to the other keep landing
        debouncer.mark("locked")
        debouncer.mark("free")
        clock.advance(30.0)
        writer.step()
    assert writer.breaker.state is State.CLOSED
    assert store.synced.count("free") == 6
    (failure,) = writer.failures.failing()
    assert failure.course == "locked" and failure.kind == "busy" and failure.sqlstate == "55P03"
    assert clock() - failure.since >= 150  # how long it has been stuck is known
    assert not log.named("database unavailable")


def test_a_rejected_password_is_said_as_such_with_back_off_and_ends_the_daemon_after_grace() -> (
    None
):
    """A password rotated while syncd runs: the pool says only "no connection available";
    the cause was in library warnings alone and the daemon retried for ever."""
    clock = Clock()
    store = FakeStore(clock, ["c1"])
    writer, debouncer, log = make_writer(store, clock)
    writer.auth_grace_s = 120.0
    writer.diagnose = lambda: AuthenticationFailed(
        'connection failed: FATAL:  password authentication failed for user "syncd"'
    )

    def pool_empty(_course: str) -> None:
        raise PoolExhausted("database: no connection available (couldn't get a connection)")

    store.on_call = pool_empty
    for _ in range(30):  # 150 s of edits, the breaker retrying every 5 s
        debouncer.mark("c1")
        clock.advance(5.0)
        writer.step()
        if writer.fatal is not None:
            break
    said = log.named("database authentication failed")
    assert said and "password authentication failed" in said[0]["reason"]
    assert 3 <= len(said) <= 6  # said again with back-off (15 s, 30 s, 60 s...), not per try
    assert not log.named("database unavailable")
    view = writer.breaker.view()
    assert view.state is State.OPEN and view.kind == "auth"
    assert isinstance(writer.fatal, AuthenticationFailed)  # exit 4 after the grace
    assert "update DATABASE_URL" in str(writer.fatal)


def test_a_tls_failure_while_running_is_waited_out_and_said_with_its_fix() -> None:
    """The server's certificate renewed by a CA that sslrootcert does not hold: the pool
    said only "no connection available". Now the reason names sslrootcert; the daemon waits
    (the file is read at every connection: replacing it heals syncd without a restart)."""
    clock = Clock()
    store = FakeStore(clock, ["c1"])
    writer, debouncer, log = make_writer(store, clock)
    writer.diagnose = lambda: ConfigError(
        "connect to db:5432: SSL error: certificate verify failed: fix sslrootcert in DATABASE_URL"
    )

    def pool_empty(_course: str) -> None:
        raise PoolExhausted("database: no connection available (couldn't get a connection)")

    store.on_call = pool_empty
    for _ in range(10):
        debouncer.mark("c1")
        clock.advance(5.0)
        writer.step()
    said = log.named("database unavailable")
    assert said and all("sslrootcert" in e["reason"] for e in said)
    assert writer.breaker.state is State.OPEN and writer.fatal is None  # waits, never exits
    store.on_call = lambda _course: None  # the file replaced
    clock.advance(30.0)
    debouncer.mark("c1")
    writer.step()
    assert writer.breaker.state is State.CLOSED and "c1" in store.synced


def test_a_full_disk_opens_the_breaker_with_its_own_reason() -> None:
    clock = Clock()
    store = FakeStore(clock, ["c1"])
    writer, debouncer, log = make_writer(store, clock)

    def full(_course: str) -> None:
        raise DatabaseFull("could not extend file: No space left on device (SQLSTATE 53100)")

    store.on_call = full
    debouncer.mark("c1")
    clock.advance(0.6)
    writer.step()
    assert writer.breaker.view().kind == "disk-full"
    assert {e["cause"] for e in log.named("database unavailable")} == {"disk-full"}


def test_pending_counts_a_change_whose_job_waits_behind_a_finishing_one() -> None:
    """The end of one job of a course checked ``queued() == 0`` and then said ``done``: a
    job taken in between was not counted as pending."""
    clock = Clock()
    debouncer = Debouncer(0.5, 5.0, clock)
    debouncer.mark("c1")
    clock.advance(0.6)
    assert debouncer.take_due() == ["c1"]  # job 1 runs
    debouncer.mark("c1")
    clock.advance(0.6)
    assert debouncer.take_due() == ["c1"]  # job 2 is taken before job 1 ends
    debouncer.done("c1")  # job 1 ends
    assert debouncer.pending() == 1 and debouncer.oldest_age() > 0
    debouncer.done("c1")  # job 2 ends
    assert debouncer.pending() == 0


def test_the_first_reconcile_counts_the_courses_it_has_not_reached_as_pending() -> None:
    """With the database failing during the first reconcile, heartbeats said pending 0 with
    every file unsynced."""
    clock = Clock()
    store = FakeStore(clock, [f"c{i}" for i in range(5)])
    log = Log()
    debouncer = Debouncer(0.5, 5.0, clock)
    writer = Writer(
        store,  # type: ignore[arg-type]
        debouncer,
        CircuitBreaker(3, 5.0, clock),
        CourseScheduler(1, InlineExecutor()),
        threading.Event(),
        log,
        clock,
        sleep=clock.advance,
    )
    store.down = True
    writer.reconcile_requested.set()
    writer.step()
    assert not writer.ready.is_set()
    assert writer.reconcile_left == 5


def test_breaker_changes_are_told_in_order_and_its_view_agrees_with_its_state() -> None:
    """Callbacks ran outside the breaker's lock: a late CLOSED->OPEN told after an
    OPEN->CLOSED left "unreachable since" set on a closed breaker."""
    told: list[State] = []
    breaker = CircuitBreaker(1, 0.0, on_change=lambda _old, new: told.append(new))

    def flip(n: int) -> None:
        for i in range(2000):
            if (i + n) % 2:
                breaker.record_failure()
            else:
                breaker.allow()
                breaker.record_success()

    threads = [threading.Thread(target=flip, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    view = breaker.view()
    assert told[-1] is view.state  # the last told is the state it is in
    assert (view.away_since is None) == (view.state is State.CLOSED)


def test_a_surprise_in_the_half_open_trial_does_not_leave_the_breaker_stuck() -> None:
    """The trial course failed with a KeyError: neither success nor failure was recorded,
    the trial stayed in flight, and no course was ever synced again."""
    clock = Clock()
    store = FakeStore(clock, ["odd", "good"])
    writer, debouncer, _log = make_writer(store, clock)
    store.synced.clear()
    store.down = True
    debouncer.mark("odd")
    clock.advance(0.6)
    writer.step()
    assert writer.breaker.state is State.OPEN
    store.down = False
    store.refusing["odd"] = KeyError("surprise")
    clock.advance(5.1)
    writer.step()  # "odd" takes the half-open trial and fails on its own
    debouncer.mark("good")
    clock.advance(0.6)
    writer.step()
    assert store.synced == ["good"]
    assert writer.breaker.state is State.CLOSED


def test_a_lock_wait_in_a_full_reconciles_own_step_is_retried_not_the_end() -> None:
    """A CourseBusy from the pass's own first step (the source row locked by an admin)
    reached the writer's loop: writer crashed, exit 7."""
    clock = Clock()
    store = FakeStore(clock, ["c1"])
    writer, _debouncer, log = make_writer(store, clock)
    store.reconcile_error = CourseBusy("touch source: lock timeout (SQLSTATE 55P03)", "55P03")
    writer.reconcile_requested.set()
    writer.step()
    assert writer.fatal is None
    (said,) = log.named("reconcile failed")
    assert said["sqlstate"] == "55P03" and said["retry_in_s"] > 0
    assert writer.breaker.state is State.CLOSED
    assert [f.course for f in writer.failures.failing()] == ["(full reconcile)"]
    writer.step()  # within its back-off: not tried again at once
    assert store.reconciles == 2  # the first pass, and the failed one
    store.reconcile_error = None
    clock.advance(said["retry_in_s"] + 0.1)
    writer.step()
    assert store.reconciles == 3 and not writer.reconcile_requested.is_set()
    assert writer.failures.failing() == []


def test_a_database_down_from_the_start_leaves_every_course_pending(tmp_path: Path) -> None:
    """The real reconciler: its first database call failed before it counted the courses,
    so health said "first reconcile running, 0 pending"."""
    from tests.helpers import make_course

    root = tmp_path / "courses"
    for name in ("a", "b", "c"):
        make_course(root, name, lessons=1)

    class DownStore:
        source = None

        def fingerprints(self) -> dict[str, object]:
            raise TransientError("connection refused")

    clock = Clock()
    reconciler = Reconciler(
        root=root,
        store=DownStore(),  # type: ignore[arg-type]
        options=ParseOptions(),
        log=Log(),
    )
    writer = Writer(
        reconciler,
        Debouncer(0.5, 5.0, clock),
        CircuitBreaker(3, 5.0, clock),
        CourseScheduler(1, InlineExecutor()),
        threading.Event(),
        Log(),
        clock,
        sleep=clock.advance,
    )
    writer.reconcile_requested.set()
    writer.step()
    assert not writer.ready.is_set()
    assert writer.reconcile_left == 3


def test_a_folder_back_within_the_rename_grace_gets_a_fresh_grace_when_it_goes_again(
    tmp_path: Path,
) -> None:
    """The grace was never reset: a folder gone and back (git, an editor) archived at once
    when it went for good days later, before its rename's new name was looked at."""
    from tests.helpers import make_course

    root = tmp_path / "courses"
    make_course(root, "o", lessons=1)
    make_course(root, "other", lessons=1)  # a folder syncd has not synced: a possible new name
    clock = Clock()

    class NoArchive:
        source = None

        def archive_course(self, course: str) -> tuple[bool, int]:
            raise AssertionError(f"{course} archived within its grace")

    reconciler = Reconciler(
        root=root,
        store=NoArchive(),  # type: ignore[arg-type]
        options=ParseOptions(),
        log=Log(),
        clock=clock,
    )
    reconciler._known["o"] = Known(b"f", False, b"s", slug="o")
    parked = tmp_path / "parked"
    (root / "o").rename(parked)
    first = reconciler.prepare("o")
    assert isinstance(first, CourseResult) and first.retry_at == clock() + RENAME_GRACE_S
    parked.rename(root / "o")
    reconciler.prepare("o")  # back
    clock.advance(86_400.0)
    (root / "o").rename(parked)  # gone for good, a day later: a fresh grace
    again = reconciler.prepare("o")
    assert isinstance(again, CourseResult) and again.retry_at == clock() + RENAME_GRACE_S


def test_a_sync_that_never_reached_the_database_does_not_close_the_breaker() -> None:
    """A phantom job (a course skipped unread) said "success" to the breaker: the password
    rejected for minutes read "failing 0 s" at every try, and an outage never opened it."""
    clock = Clock()
    store = FakeStore(clock, ["c1"])
    writer, debouncer, _log = make_writer(store, clock)
    store.down = True
    debouncer.mark("c1")
    clock.advance(0.6)
    writer.step()  # three failed attempts: open
    view = writer.breaker.view()
    assert view.state is State.OPEN and view.failing_since is not None
    store.on_call = lambda _course: None
    real_call = store._call

    def skip_unread(course: str) -> None:  # unchanged on disk: no database call at all
        return None

    store._call = skip_unread  # type: ignore[method-assign]
    clock.advance(5.1)  # past the reset: c1 takes the trial and touches nothing
    writer.step()
    after = writer.breaker.view()
    assert after.state is State.HALF_OPEN  # nothing was heard from the database
    assert after.failing_since == view.failing_since
    store._call = real_call  # type: ignore[method-assign]
    store.down = False
    debouncer.mark("c1")
    clock.advance(0.6)
    writer.step()  # the next trial reaches the database: closed
    assert writer.breaker.state is State.CLOSED
