"""Wiring and the main loop of the long-running service.

Threads:
- watchdog's observer: events → ``Debouncer.mark`` (never blocks, never raises);
- the writer (``Writer.run``): the first full reconcile, then due courses, one
  transaction each, through tenacity retries and the circuit breaker;
- the main thread (``Daemon.run``): signals, systemd notifications, heartbeat, periodic
  reconciles, and supervision of the two others.

Start order: watch (events buffer) → full reconcile → READY=1 → process events.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import psycopg_pool
import tenacity

from syncd import config, health, heap, logs
from syncd.blindspots import BlindSpotKeeper, BlindSpots
from syncd.breaker import CircuitBreaker, State
from syncd.config import Settings
from syncd.course_failures import (
    CourseFailure,
    CourseFailures,
    describe_failure,
    is_course_level,
)
from syncd.deadline import SocketDeadlines
from syncd.debounce import SETTLE_S, Debouncer
from syncd.errors import (
    AuthenticationFailed,
    ConfigError,
    DatabaseFull,
    FatalError,
    RootUnavailable,
    SyncdError,
    TransientError,
)
from syncd.exits import ExitCode
from syncd.parser import ParseOptions
from syncd.reconcile import Reconciler
from syncd.scheduler import CourseScheduler
from syncd.store import (
    CourseStore,
    DbSettings,
    PoolExhausted,
    keeps_connection,
    make_pool,
    probe,
    translated,
)
from syncd.systemd import Notifier
from syncd.watcher import (
    POLL_INTERVAL_S,
    CourseEventHandler,
    LinkTargetHandler,
    OverflowDetector,
    UnwatchedDetector,
    start_observer,
)

FULL_RECONCILE = "(full reconcile)"  # how a failing full reconcile is named among the courses
IDLE_CHECK_S = 10.0  # a pooled connection idle this long is checked before use
# A quiet daemon checks its least recently used connection in the background this often, if
# it was not used for WARM_AFTER_S: a save after a quiet spell then finds it checked and
# pays no round trip for it (over a far link, a third of such a save's time).
WARM_EVERY_S = 2.0
WARM_AFTER_S = IDLE_CHECK_S / 2
KEEP_WARM = "(keep warm)"  # the scheduler's key of that background check
PROBE_EVERY_S = 5.0  # the pool says "no connection available": ask the server why, this often
STOP_TAIL_S = 5.0  # after --shutdown-timeout: a cut call failing, the watcher, the pool
WATCHDOG_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


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
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _queued: set[str] = field(default_factory=set)  # an event job submitted, not started
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
        with self._lock:
            if course in self._queued:
                self.debouncer.done(course)  # the job waiting reads this change too
                return
            self._queued.add(course)
        try:
            self.scheduler.submit(course, partial(self._event_job, course))
        except RuntimeError:  # shutting down: the flush takes it
            with self._lock:
                self._queued.discard(course)
            self.debouncer.defer(course, self.clock())

    def _event_job(self, course: str) -> None:
        with self._lock:
            self._queued.discard(course)
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


class Daemon:
    def __init__(
        self,
        settings: Settings,
        db: DbSettings,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.db = db
        self.notifier = notifier or Notifier()
        self.clock = clock
        self.log = logs.get()
        self.stop = threading.Event()
        self.signal_received: str | None = None
        self._link_watches: dict[str, Any] = {}  # followed link target -> its watch
        self._root_missing: str | None = None  # the supervisor's own look at the root
        self._health_due = 0.0  # monotonic: when the health file is written next
        self._health_failed = False
        # Longer than any bounded wait of the writer: every retry of a call that runs into its
        # client deadline (statement timeout twice, plus connecting), with back-off.
        call_s = db.statement_timeout_ms / 1000 * 2 + db.connect_timeout_s
        self._hung_after = max(60.0, call_s * 4 + 10.0)

    def run(self) -> int:
        s = self.settings
        if not s.root.is_dir():
            raise RootUnavailable(
                f"course root {s.root} is missing or not a folder: set --root (SYNCD_ROOT)"
            )
        breaker = CircuitBreaker(
            s.breaker_failures, s.breaker_reset_s, self.clock, on_change=self._breaker_changed
        )
        quiet_s, max_delay_s = s.quiet_ms / 1000, s.max_delay_ms / 1000
        if s.polling:  # events come once per poll: a quiet period shorter would split bursts
            quiet_s = max(quiet_s, 1.5 * POLL_INTERVAL_S)
            max_delay_s = max(max_delay_s, quiet_s)
        debouncer = Debouncer(
            quiet_s,
            max_delay_s,
            self.clock,
            settle_s=None if s.polling else SETTLE_S,  # polling sees no close events
        )
        deadlines = SocketDeadlines(on_expire=self._call_cut)
        checker = self._checker(deadlines)
        pool = make_pool(self.db, workers=s.workers, check=checker)
        call_deadline = self.db.statement_timeout_ms / 1000 * 2 + self.db.connect_timeout_s
        store = CourseStore(
            lambda: _guarded(pool, deadlines, call_deadline, breaker.record_success),
            self.clock,
            source=s.source_name,
        )
        reconciler = Reconciler(
            root=s.root,
            store=store,
            log=self.log,
            options=ParseOptions(default_creator_mind=s.creator_mind),
            max_file_bytes=s.max_file_bytes,
            write=s.persist,
            clock=self.clock,
            follow_symlinks=s.follow_symlinks,
            host=config.host_name(),
            being_written=debouncer.is_writing,
        )
        writer = Writer(
            reconciler,
            debouncer,
            breaker,
            CourseScheduler(s.workers),
            self.stop,
            self.log,
            self.clock,
            diagnose=ProbeEvery(lambda: probe(self.db), self.clock),
            auth_grace_s=s.auth_grace_s,
            keep_warm=partial(checker.warm, pool),
        )
        handler = CourseEventHandler(
            s.root,
            debouncer.mark,
            self.log,
            files=None if s.polling else debouncer,  # polling sees no opens or closes
        )
        overflow = OverflowDetector(lambda: self._overflowed(writer, debouncer))
        self._blind = BlindSpotKeeper(
            BlindSpots(self.clock, retry_s=s.watch_retry_s),
            s.root,
            lambda: self._observer,
            handler,
            debouncer.mark,
            self.log,
            self.clock,
            follow_symlinks=s.follow_symlinks,
        )
        unwatched = UnwatchedDetector(self._blind.on_unwatched)
        for name in WATCHDOG_LOGGERS:
            logging.getLogger(name).addHandler(overflow)
            logging.getLogger(name).addHandler(unwatched)

        self._install_signals()
        self.log.info(
            "daemon started",
            root=str(s.root),
            write=s.persist,
            polling=s.polling,
            quiet_ms=round(debouncer.quiet_s * 1000) if s.polling else None,
            settle_ms=None if s.polling else round(SETTLE_S * 1000),
            max_delay_ms=round(debouncer.max_delay_s * 1000),
            pid=os.getpid(),
        )
        if not s.persist:
            self.log.warning("kill switch on: CREATOR_OS_DB_PERSIST is false, nothing is written")
        pool.open(wait=False)
        observer = start_observer(s.root, handler, polling=s.polling)
        thread = threading.Thread(target=writer.run, name="syncd-writer")
        thread.start()
        self._observer = observer
        self._root_identity = _identity(s.root)
        code: int = ExitCode.OK
        try:
            code = self._supervise(writer, thread, debouncer, breaker, handler)
        finally:
            code = self._shutdown(
                code,
                writer=writer,
                thread=thread,
                debouncer=debouncer,
                pool=pool,
                deadlines=deadlines,
            )
            for name in WATCHDOG_LOGGERS:
                logging.getLogger(name).removeHandler(overflow)
                logging.getLogger(name).removeHandler(unwatched)
        return code

    # -- the main loop ------------------------------------------------------------------

    def _supervise(
        self,
        writer: Writer,
        thread: threading.Thread,
        debouncer: Debouncer,
        breaker: CircuitBreaker,
        handler: CourseEventHandler,
    ) -> int:
        s = self.settings
        tick = min(1.0, self.notifier.watchdog_interval_s or 1.0)
        now = self.clock()
        next_heartbeat = now + s.heartbeat_s
        next_reconcile = now + s.reconcile_interval_s if s.reconcile_interval_s > 0 else None
        ready_sent = False
        observer_restarts = 0
        while not self.stop.wait(tick):
            now = self.clock()
            if writer.fatal is not None:
                return self._writer_failed(writer)
            if not thread.is_alive():
                self.log.error("writer thread stopped unexpectedly")
                return ExitCode.WRITER_DIED
            root_present = self._check_root(writer, debouncer, handler)
            observer = self._observer
            if root_present and not observer.is_alive():
                observer_restarts += 1
                self.log.error("watcher died", restarts=observer_restarts)
                if observer_restarts > 3:
                    return ExitCode.WATCHER_DIED
                self._rewatch(writer, debouncer, handler)
                observer = self._observer
            if s.follow_symlinks:
                self._watch_link_targets(writer, debouncer)
            if root_present and not s.polling:
                self._blind.tick()  # folders the watch limit left unwatched: said, polled
            # The watchdog is fed from this loop on the threads' liveness, not on a sync
            # finishing: a writer waiting out an outage (retries, deadlines, back-off) is
            # alive. Only a writer silent for longer than any bounded wait can last is hung.
            writer_alive = thread.is_alive() and writer.responsive(now, self._hung_after)
            # One reading of the state per tick, by this thread: the health file, the
            # systemd status and the heartbeat all say the same thing.
            state = self._observe(writer, debouncer, breaker, writer_alive, observer.is_alive())
            if writer.ready.is_set() and not ready_sent:
                ready_sent = True
                self.notifier.ready(health.status_line(state))
                self.log.info("daemon ready", pending=state.pending)
            if observer.is_alive() and writer_alive:
                self.notifier.watchdog()
            self.notifier.status(health.status_line(state))
            if now >= self._health_due:
                self._write_health(state)
            if next_reconcile is not None and now >= next_reconcile:
                writer.reconcile_requested.set()
                debouncer.wake()
                next_reconcile = now + s.reconcile_interval_s
            if now >= next_heartbeat:
                next_heartbeat = now + s.heartbeat_s
                self.log.info(
                    "heartbeat",
                    pending=state.pending,
                    breaker=state.breaker,
                    breaker_cause=state.breaker_kind or None,
                    lag_s=state.lag_s,
                    held=debouncer.held(),
                    failing=[health.describe_failing(f, time.time()) for f in state.failing],
                    unwatched=len(state.unwatched),
                    last_sync=state.last_sync,
                    observer_alive=state.observer_alive,
                )
        return ExitCode.OK

    def _shutdown(
        self,
        code: int,
        *,
        writer: Writer,
        thread: threading.Thread,
        debouncer: Debouncer,
        pool: Any,
        deadlines: SocketDeadlines,
    ) -> int:
        """One budget for the whole stop: ``--shutdown-timeout`` for the jobs in flight and
        the flush together (a database call still running at its end has its socket shut),
        then at most ``STOP_TAIL_S`` to close the watcher and the pool."""
        observer = self._observer
        self.notifier.stopping()
        self.stop.set()
        debouncer.wake()
        deadline = self.clock() + self.settings.shutdown_timeout_s
        deadlines.cap(deadline)
        self.log.info("daemon stopping", signal=self.signal_received, pending=debouncer.pending())
        observer.stop()
        # a call still running at the deadline has its socket shut then: a moment to fail
        thread.join(timeout=max(deadline - self.clock(), 0.0) + STOP_TAIL_S / 5)
        left: list[str] = []
        if (
            code == ExitCode.OK
            and writer.fatal is None
            and writer.ready.is_set()
            and not thread.is_alive()
        ):
            left = writer.flush(deadline)
        else:  # no flush (a fatal error, or the writer still busy): what stays unwritten
            left = sorted(debouncer.pending_courses())  # a job still under way included
        if left:
            self.log.warning(
                "shutdown with unsynced courses (the next start reconciles them)", courses=left
            )
        observer.join(timeout=STOP_TAIL_S * 2 / 5)
        health.remove(self.settings.health_path)  # a stopped daemon is not healthy
        pool.close(timeout=STOP_TAIL_S * 2 / 5)
        deadlines.close()
        if code == ExitCode.OK and writer.fatal is not None:
            code = self._writer_failed(writer)
        if code == ExitCode.OK and self.signal_received == "SIGINT":
            code = ExitCode.INTERRUPTED  # Ctrl-C: docs/exit-codes.md's 130, after a clean stop
        self.log.info("daemon stopped", exit_code=int(code), unsynced=len(left))
        return code

    def _writer_failed(self, writer: Writer) -> int:
        error = writer.fatal
        if isinstance(error, RootUnavailable):
            self.log.error("course root unavailable", reason=str(error), exit_code=5)
            return ExitCode.ROOT_UNAVAILABLE
        if isinstance(error, FatalError):
            self.log.error("database refused syncd", reason=str(error))
            return ExitCode.FATAL_DB
        self.log.error("writer thread crashed", error=repr(error))
        return ExitCode.WRITER_DIED

    def _check_root(
        self, writer: Writer, debouncer: Debouncer, handler: CourseEventHandler
    ) -> bool:
        """Notice the course root disappearing (deleted, renamed, unmounted) and coming
        back: watch it again and reconcile. Returns whether it is there now."""
        identity = _identity(self.settings.root)
        self._root_missing = None if identity is not None else f"{self.settings.root} is missing"
        if identity == self._root_identity:
            return identity is not None
        self._root_identity = identity
        if identity is None:
            self.log.error(
                "course root unavailable",
                root=str(self.settings.root),
                reason="missing: nothing is archived until it is back",
            )
            return False
        self.log.warning(
            "course root is back or replaced: watching it again", root=str(self.settings.root)
        )
        self._rewatch(writer, debouncer, handler)
        return True

    def _rewatch(self, writer: Writer, debouncer: Debouncer, handler: CourseEventHandler) -> None:
        """Replace the observer, then reconcile what happened while nobody watched."""
        with contextlib.suppress(Exception):  # the old observer may already be broken
            self._observer.stop()
        self._link_watches = {}  # the new observer watches them again
        try:
            self._observer = start_observer(
                self.settings.root, handler, polling=self.settings.polling
            )
            self._blind.rewatched()  # a new watch covers the whole tree, or fails
        except ConfigError as error:
            self.log.error("watcher could not start", reason=str(error))
        writer.reconcile_requested.set()
        debouncer.wake()

    def _watch_link_targets(self, writer: Writer, debouncer: Debouncer) -> None:
        """Keep one watch on each folder reached through a followed link, as the last scans
        of their courses found them (inotify does not follow links; polling uses lstat)."""
        wanted = writer.reconciler.link_targets()
        for target in [t for t in self._link_watches if t not in wanted]:
            watch = self._link_watches.pop(target)
            if watch is not None:
                with contextlib.suppress(Exception):
                    self._observer.unschedule(watch)
        for target, course in wanted.items():
            if target in self._link_watches:
                continue
            try:
                self._link_watches[target] = self._observer.schedule(
                    LinkTargetHandler(course, debouncer.mark, self.log), target, recursive=True
                )
                self.log.info("link target watched", course=course, path=target)
            except OSError as exc:
                self._link_watches[target] = None  # named once; the safety reconcile covers it
                self.log.warning(
                    "link target not watched", course=course, path=target, reason=exc.strerror
                )

    def _overflowed(self, writer: Writer, debouncer: Debouncer) -> None:
        self.log.warning("watch queue overflowed: events were lost, full reconcile scheduled")
        debouncer.files_unknown()
        writer.reconcile_requested.set()
        debouncer.wake()

    def _call_cut(self, seconds: float, stopping: bool) -> None:
        if stopping:
            self.log.warning(
                "database call cut at the stop's deadline",
                seconds=round(seconds, 1),
                hint="--shutdown-timeout",
            )
        else:
            self.log.warning("database call timed out", seconds=round(seconds, 1))

    def _breaker_changed(self, old: State, new: State) -> None:
        """Told under the breaker's lock, in order: only logs and asks for a health write."""
        self._health_due = 0.0  # said at the next tick
        if new is State.OPEN:
            self.log.warning("breaker opened", previous=old.value)
        elif new is State.HALF_OPEN:
            self.log.info("breaker half-open", previous=old.value)
        else:
            self.log.info("breaker closed", previous=old.value)

    def _observe(
        self,
        writer: Writer,
        debouncer: Debouncer,
        breaker: CircuitBreaker,
        writer_alive: bool,
        observer_alive: bool,
    ) -> health.HealthState:
        """The daemon's state, read once from its owners: the breaker's own view, the
        debouncer's pending courses (and, during the first full reconcile, the courses it
        has not reached), the failing courses."""
        now, wall = self.clock(), time.time()
        view = breaker.view()

        def wall_of(at: float | None) -> float | None:
            return None if at is None else wall - (now - at)

        unreconciled = 0 if writer.ready.is_set() else writer.reconcile_left
        secrets = self.settings.secrets()  # a server's message may quote one: never in the file

        def said(text: str) -> str:
            return config.redact(text, secrets)

        return health.HealthState(
            written_at=wall,
            pid=os.getpid(),
            ready=writer.ready.is_set(),
            writer_responsive=writer_alive,
            observer_alive=observer_alive,
            breaker=view.state.value,
            # away since its first failure, not since the breaker opened on the third
            unreachable_since=wall_of(
                None if view.away_since is None else (view.failing_since or view.away_since)
            ),
            pending=debouncer.pending() + unreconciled,
            lag_s=round(debouncer.oldest_age(), 3),
            last_sync=writer.last_sync_wall,
            root_problem=self._root_missing or writer.root_problem,
            breaker_kind=view.kind,
            breaker_reason=said(view.reason),
            breaker_kind_since=wall_of(view.kind_since),
            failing=[
                health.Failing(
                    course=f.course,
                    kind=f.kind,
                    reason=said(f.reason),
                    sqlstate=f.sqlstate,
                    since=wall - (now - f.since),
                    attempts=f.attempts,
                )
                for f in writer.failures.failing()
            ],
            unwatched=self._blind.unwatched(),
        )

    def _write_health(self, state: health.HealthState) -> None:
        """The state `syncd health` reads (the image's HEALTHCHECK)."""
        self._health_due = self.clock() + health.WRITE_EVERY_S
        try:
            health.write(self.settings.health_path, state)
            self._health_failed = False
        except OSError as exc:
            if not self._health_failed:  # said once, not every few seconds
                self._health_failed = True
                self.log.warning(
                    "health file not written",
                    path=str(self.settings.health_path),
                    reason=exc.strerror,
                    hint="set --health-file (SYNCD_HEALTH_FILE) to a writable place",
                )

    def _checker(self, deadlines: SocketDeadlines) -> IdleCheck:
        return IdleCheck(deadlines, float(self.db.connect_timeout_s), self.clock)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handle(signum: int, _frame: Any) -> None:
            self.signal_received = signal.Signals(signum).name
            self.stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


class IdleCheck:
    """The pool's health check: a round trip under a deadline, but only for a connection
    that sat idle long enough to have been dropped on the way (a busy connection proves
    itself with every sync and would pay one more round trip). ``warm``: the same check in
    the background, for the least recently used connection, sooner (WARM_AFTER_S), so that
    a quiet daemon's connections are checked before a save needs one."""

    def __init__(
        self, deadlines: SocketDeadlines, seconds: float, clock: Callable[[], float]
    ) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._clock = clock
        self._last: dict[int, float] = {}  # id(conn) -> when last handed out (or checked)
        self._warming = threading.local()  # set on the thread running ``warm``

    def __call__(self, conn: Any) -> None:
        now = self._clock()
        idle = WARM_AFTER_S if getattr(self._warming, "on", False) else IDLE_CHECK_S
        if now - self._last.get(id(conn), -IDLE_CHECK_S) >= idle:
            with self._deadlines.guard(conn, self._seconds):
                # one round trip (an empty query in autocommit), not three (BEGIN,
                # SELECT 1, ROLLBACK): it runs before the save that follows a quiet spell
                psycopg_pool.ConnectionPool.check_connection(conn)
        self._last[id(conn)] = now

    def warm(self, pool: psycopg_pool.ConnectionPool[Any]) -> None:
        """Take the least recently used connection (the pool hands them out in turn) and
        check it if it was not used for WARM_AFTER_S. A failed check is the pool's (it
        drops that connection and opens another); a pool with none to give is left alone."""
        self._warming.on = True
        try:
            conn = pool.getconn(timeout=self._seconds)
            pool.putconn(conn)
        except (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed):
            pass  # the database is away or the daemon stopping: a save will say so
        finally:
            self._warming.on = False


class ProbeEvery:
    """``probe`` at most once every ``PROBE_EVERY_S``: the workers that all find the pool
    empty at once ask the server once, and hear the same answer."""

    def __init__(self, probe: Callable[[], SyncdError | None], clock: Callable[[], float]) -> None:
        self._probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, SyncdError | None] | None = None

    def __call__(self) -> SyncdError | None:
        with self._lock:
            now = self._clock()
            if self._last is None or now - self._last[0] >= PROBE_EVERY_S:
                self._last = (now, self._probe())
            return self._last[1]


def _identity(path: Any) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


@contextmanager
def _guarded(
    pool: Any, deadlines: SocketDeadlines, seconds: float, answered: Callable[[], None]
) -> Iterator[Any]:
    """A pooled connection under a deadline. ``answered`` is told when the database
    answered (the block ended, or the database refused data or cancelled a statement): the
    breaker hears of the database from the database alone, never from a sync that had no
    need of it. After any other error the connection is closed, so the pool replaces it: a
    session stuck read-only (failover) or half-dead never comes back."""
    wait = deadlines.bounded(pool.timeout)  # never waits for a connection past the stop's end
    with (
        translated("database"),
        pool.connection(timeout=wait) as conn,
        deadlines.guard(conn, seconds),
    ):
        try:
            yield conn
        except BaseException as exc:
            if keeps_connection(exc):
                answered()
            else:
                conn.close()
            raise
        answered()


def run(settings: Settings, db: DbSettings) -> int:
    return Daemon(settings, db).run()
