"""The writer: drains the debouncer into the database on its own thread.

``Writer.run`` is the body of the ``syncd-writer`` thread, which the daemon starts and joins
(daemon.py); the writer starts no thread itself. Its jobs (a full reconcile's, each due
course's, the keep-warm check) run on the scheduler's workers (scheduler.py), which decides
what runs at once: one waiting event job per course (``submit_unless_waiting``), never two
jobs of a course together. The retry policy lives here too: tenacity attempts whose every
failure counts for the breaker at once, the cause of an empty pool asked of the server, a
rejected password said with back-off and, after ``auth_grace_s``, the end of the daemon.

Shared state and its locks: the writer keeps no lock of its own. Its counters and marks
(``last_tick``, ``last_sync``, ``root_problem``, ``reconcile_left``, ``fatal``...) are single
attribute writes, made from the writer thread and its jobs and read by the supervisor (a
reading may be one tick old); ``_auth_said``, read then written by whichever worker hears a
rejected password, may at worst let two workers say it at once. ``failures``
(CourseFailures), the debouncer, the breaker and the scheduler each guard their own state
with their own lock."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import tenacity

from syncd import heap
from syncd.breaker import CircuitBreaker, State
from syncd.course_failures import (
    CourseFailure,
    CourseFailures,
    describe_failure,
    is_course_level,
)
from syncd.debounce import Debouncer
from syncd.driver_errors import PoolExhausted
from syncd.errors import (
    AuthenticationFailed,
    ConfigError,
    DatabaseFull,
    FatalError,
    RootUnavailable,
    SyncdError,
    TransientError,
)
from syncd.reconcile import Reconciler
from syncd.scheduler import CourseScheduler

FULL_RECONCILE = "(full reconcile)"  # how a failing full reconcile is named among the courses
# A quiet daemon checks its least recently used connection in the background this often, if
# it was not used for WARM_AFTER_S (daemon.py): a save after a quiet spell then finds it
# checked and pays no round trip for it (over a far link, a third of such a save's time).
WARM_EVERY_S = 2.0
KEEP_WARM = "(keep warm)"  # the scheduler's key of that background check


@dataclass
class Writer:
    """Drains the debouncer into the database: runs the full reconciles and submits each
    due course to the scheduler, on its own thread. ``step`` is one turn of its loop."""

    reconciler: Reconciler
    debouncer: Debouncer
    breaker: CircuitBreaker
    scheduler: CourseScheduler
    stop: threading.Event
    log: Any
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], object] | None = None  # retry back-off; default: stop.wait
    retry_attempts: int = 3
    failures: CourseFailures = field(init=False)  # courses failing on their own (``clock``)
    # Why the pool cannot connect (a rejected password), asked when it says only "no
    # connection available"; None: not asked.
    diagnose: Callable[[], SyncdError | None] | None = None
    auth_grace_s: float = 300.0  # a password rejected this long ends the daemon (exit 4)
    reconcile_requested: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)
    fatal: BaseException | None = None
    last_tick: float = 0.0
    last_sync: float | None = None
    last_sync_wall: str = "never"
    root_problem: str | None = None  # why the course root cannot be read now, if it cannot
    reconcile_left: int = 0  # courses of the running full reconcile not done yet
    settle_heap: Callable[[], object] = heap.collect_and_freeze  # after each full reconcile
    # While quiet: check a pooled connection in the background (IdleCheck.warm); None: never
    keep_warm: Callable[[], None] | None = None
    _auth_said: tuple[float, float] | None = None  # (said at, next after) in this failing run
    _reconcile_not_before: float = 0.0  # a failed full reconcile waits out its back-off
    _warm_at: float = 0.0  # the next keep-warm job, while quiet

    def __post_init__(self) -> None:
        self.failures = CourseFailures(self.clock)

    def run(self) -> None:
        self.reconcile_requested.set()  # the first job: a full reconcile
        try:
            while not self.stop.is_set() and self.fatal is None:
                self.step()
                self._idle()
        except FatalError as error:
            self.fatal = error
        except BaseException as error:  # a dead writer must stop the daemon loudly
            self.fatal = error
            self.log.exception("writer crashed")
        finally:
            self.scheduler.shutdown(wait=True)  # jobs in flight finish before shutdown goes on

    def step(self) -> None:
        """A requested full reconcile, then every due course handed to the scheduler."""
        self.last_tick = self.clock()
        if self.reconcile_requested.is_set() and self.clock() >= self._reconcile_not_before:
            self._reconcile()
            if not self.ready.is_set() and not self.reconcile_requested.is_set():
                self.ready.set()
        if self.ready.is_set():
            for course in self.debouncer.take_due():
                self._submit(course)
            self._keep_warm()

    def _keep_warm(self) -> None:
        """While quiet (nothing pending or running, the breaker closed), every WARM_EVERY_S:
        a scheduler job that checks the least recently used connection if it sat unused,
        so that the next save does not pay for that round trip."""
        now = self.clock()
        if (
            self.keep_warm is None
            or now < self._warm_at
            or self.stop.is_set()
            or self.reconcile_requested.is_set()
            or self.debouncer.pending()
            or self.scheduler.busy()
            or self.breaker.state is not State.CLOSED
        ):
            return
        self._warm_at = now + WARM_EVERY_S
        with contextlib.suppress(RuntimeError):  # shutting down
            self.scheduler.submit(KEEP_WARM, self.keep_warm)

    def responsive(self, now: float, hung_after: float) -> bool:
        """Has the loop turned (or a full reconcile moved on by a course) within
        ``hung_after``? Waiting out an outage (retries, deadlines, back-off) is bounded and
        counts as alive; only a writer stuck for longer is hung."""
        return now - self.last_tick < hung_after

    def _submit(self, course: str) -> None:
        """One event job per course waiting at a time: a job that has not started yet reads
        the newest files anyway. The scheduler never runs two jobs of a course at once."""
        try:
            submitted = self.scheduler.submit_unless_waiting(
                course, partial(self._event_job, course)
            )
        except RuntimeError:  # shutting down: the flush takes it
            self.debouncer.defer(course, self.clock())
            return
        if submitted is None:
            self.debouncer.done(course)  # the job waiting reads this change too

    def _event_job(self, course: str) -> None:
        try:
            if self.stop.is_set():
                self.debouncer.defer(course, self.clock())  # left for the shutdown flush
            elif self._sync(course):
                self.debouncer.done(course)
        except FatalError as error:
            self.fatal = error
        except BaseException as error:  # only what is not one course's (a crash) ends it
            self.fatal = error
            self.log.exception("course sync crashed", course=course)

    def _course_failed(self, course: str, error: BaseException) -> None:
        """One course's own failure: named, retried alone on its back-off; the rest goes
        on."""
        record = self._failed(course, error, course=course)
        self.debouncer.defer(course, record.retry_at)

    def _reconcile_failed(self, error: Exception) -> None:
        """A full reconcile's own step (registering the source, reading what syncd wrote)
        refused, stuck behind a lock or surprised: said, tried again on its own back-off
        (health names it as a failing course), never the end of the daemon."""
        self.breaker.release_trial()  # the connection told the breaker what it heard
        record = self._failed(FULL_RECONCILE, error, event="reconcile failed")
        self._reconcile_not_before = record.retry_at

    def _failed(
        self, name: str, error: BaseException, *, event: str | None = None, **fields: Any
    ) -> CourseFailure:
        """Record a failure of ``name`` (a course, or the full reconcile) on its own back-off
        and say it once, with a surprise's traceback."""
        failure = describe_failure(error)
        record = self.failures.failed(name, failure)
        self.log.error(
            event or failure.event,
            **fields,
            kind=failure.kind,
            reason=failure.reason,
            sqlstate=failure.sqlstate,
            attempt=record.attempts,
            failing_s=round(self.clock() - record.since, 1),
            retry_in_s=round(record.retry_at - self.clock(), 1),
            exc_info=error if failure.kind == "error" else None,
        )
        return record

    def _course_recovered(self, course: str) -> None:
        record = self.failures.recovered(course)
        if record is not None:
            self.log.info(
                "course recovered",
                course=course,
                attempts=record.attempts,
                failing_s=round(self.clock() - record.since, 1),
            )

    def flush(self, deadline: float) -> list[str]:
        """Shutdown: sync every pending course until ``deadline``; return the rest."""
        courses = self.debouncer.take_all()
        left = [c for c in courses if self.debouncer.is_writing(c)]  # never read half-written
        for course in [c for c in courses if c not in left]:
            synced = (
                self.clock() < deadline and self.fatal is None and self._sync(course, retry=False)
            )
            if not synced:
                left.append(course)
        return left

    def _idle(self) -> None:
        """Wait for work without spinning: the next due course, a new event, the breaker
        reset, or one second (so that the watchdog sees progress)."""
        timeout = 1.0
        if self.breaker.state is State.OPEN:
            timeout = min(timeout, max(self.breaker.retry_at() - self.clock(), 0.05))
        self.debouncer.wait(timeout)

    def _reconcile(self) -> None:
        if not self.breaker.allow():
            return
        try:
            self._with_retries(
                lambda: self.reconciler.reconcile_all(
                    self.scheduler,
                    progress=self._progress,
                    on_failure=self._course_failed,
                    after_course=self._course_recovered,
                )
            )
        except RootUnavailable as error:
            self.breaker.release_trial()  # not the database's
            self.root_problem = str(error)
            if not self.ready.is_set():  # at start: exit 5, as every command does
                self.fatal = error
                return
            self.log.error("course root unavailable", reason=str(error))
            self.stop.wait(min(self.breaker.reset_timeout_s, 5.0))
            return
        except TransientError:
            return  # every failed attempt was counted and logged (_attempt)
        except Exception as error:
            if not is_course_level(error):
                raise
            self._reconcile_failed(error)
            return
        self.failures.recovered(FULL_RECONCILE)
        self.breaker.release_trial()
        self.root_problem = None
        self.reconcile_left = 0
        self.reconcile_requested.clear()
        self._synced()
        self.settle_heap()  # full collections off the save path (heap.py)

    def _sync(self, course: str, *, retry: bool = True) -> bool:
        if not self.breaker.allow():
            self.debouncer.defer(course, self.breaker.retry_at())
            return False
        try:
            call = partial(self.reconciler.sync_course, course)
            result = self._with_retries(call) if retry else self._attempt(call)
        except RootUnavailable as error:
            self.breaker.release_trial()  # not the database's
            self.root_problem = str(error)
            self.log.error("course root unavailable", course=course, reason=str(error))
            self.debouncer.defer(course, self.clock() + 5.0)
            return False
        except TransientError:  # every failed attempt was counted and logged (_attempt)
            self.debouncer.defer(course, self.breaker.retry_at())
            return False
        except Exception as error:
            if not is_course_level(error):
                raise  # fatal: ends the daemon with its exit code
            self.breaker.release_trial()  # the connection told the breaker what it heard
            self._course_failed(course, error)
            return False
        self.breaker.release_trial()  # a sync that skipped the database says nothing of it
        self.root_problem = None
        retry_at = getattr(result, "retry_at", None)
        if retry_at is not None:  # nothing done yet (a vanished folder waits for its rename)
            self.debouncer.defer(course, retry_at)
            return False
        self._synced()
        self._course_recovered(course)
        return True

    def _attempt(self, call: Callable[[], Any], attempt: int = 1) -> Any:
        """One try; a transient failure counts for the breaker at once (per attempt, not
        per finished sync) and is logged, so an outage shows within one attempt."""
        try:
            return call()
        except TransientError as error:
            self._unavailable(self._cause(error), attempt)
            raise

    def _cause(self, error: TransientError) -> SyncdError:
        """The pool says only "no connection available": ask why (a rejected password, a
        TLS set-up that stopped working). A TLS failure while running (the server's
        certificate renewed by a CA that sslrootcert does not hold) is waited out as an
        outage, said with its fix: libpq reads the sslrootcert file at every connection, so
        replacing that file heals it without a restart (at start it is exit 2)."""
        if (
            isinstance(error, PoolExhausted)
            and self.diagnose is not None
            and not self.stop.is_set()
        ):
            cause = self.diagnose()  # the server's own answer: refused, timed out, password
            if isinstance(cause, AuthenticationFailed | TransientError | ConfigError):
                return cause
        return error

    def _with_retries(self, call: Callable[[], Any]) -> Any:
        def stop(state: tenacity.RetryCallState) -> bool:  # the breaker opened: stop trying
            return (
                state.attempt_number >= self.retry_attempts
                or self.breaker.state is State.OPEN
                or self.stop.is_set()  # stopping: the flush has what is left
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(TransientError),
            stop=stop,
            wait=tenacity.wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2),
            sleep=self._sleep,
            reraise=True,
        )
        attempts = itertools.count(1)
        return retrying(lambda: self._attempt(call, next(attempts)))

    def _progress(self, done: int, total: int, course: str) -> None:
        self.last_tick = self.clock()  # a long full reconcile is progress, not a hang
        self.reconcile_left = total - done

    def _sleep(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        else:
            self.stop.wait(seconds)  # a retry back-off that SIGTERM cuts short

    def _unavailable(self, error: SyncdError, attempt: int = 1) -> None:
        """Said first, then counted: the failure that opens the breaker precedes its
        `breaker opened` line."""
        if isinstance(error, AuthenticationFailed):
            self._auth_rejected(error)
            return
        kind = "disk-full" if isinstance(error, DatabaseFull) else "unreachable"
        self.log.warning(
            "database unavailable",
            cause=kind,
            reason=str(error),
            attempt=attempt,
            breaker=self.breaker.state.value,
        )
        self.breaker.record_failure(kind, str(error))

    def _auth_rejected(self, error: AuthenticationFailed) -> None:
        """A rejected password: its own event, said again with back-off (15 s, doubling to
        5 min) while it lasts, and after ``auth_grace_s`` the end of the daemon (exit 4): a
        running syncd cannot learn a new password (DATABASE_URL is read at start), so the
        unit stops restarting it and `systemctl status` shows why."""
        self.breaker.record_failure("auth", str(error))
        view = self.breaker.view()
        now = self.clock()
        since = view.kind_since if view.kind_since is not None else now
        failing_s = now - since
        said = self._auth_said
        if said is None or said[0] < since or now >= said[1]:
            every = 15.0 if said is None or said[0] < since else min((said[1] - said[0]) * 2, 300.0)
            self._auth_said = (now, now + every)
            self.log.error(
                "database authentication failed",
                reason=str(error),
                failing_s=round(failing_s, 1),
                exits_in_s=round(max(self.auth_grace_s - failing_s, 0.0), 1),
                hint="the password in DATABASE_URL is rejected: update it and restart syncd",
            )
        if failing_s >= self.auth_grace_s and self.fatal is None:
            self.fatal = AuthenticationFailed(
                f"{error} (rejected for {failing_s:.0f} s, --auth-grace {self.auth_grace_s:g} s):"
                " update DATABASE_URL and restart syncd"
            )

    def _synced(self) -> None:
        self.last_sync = self.clock()
        self.last_sync_wall = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
