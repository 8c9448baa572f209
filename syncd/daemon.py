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
from syncd.breaker import CircuitBreaker, State
from syncd.config import Settings
from syncd.deadline import SocketDeadlines
from syncd.debounce import SETTLE_S, Debouncer
from syncd.errors import ConfigError, FatalError, RejectedError, RootUnavailable, TransientError
from syncd.exits import ExitCode
from syncd.parser import ParseOptions
from syncd.reconcile import Reconciler
from syncd.scheduler import CourseScheduler
from syncd.store import CourseStore, DbSettings, make_pool, translated
from syncd.systemd import Notifier
from syncd.watcher import (
    POLL_INTERVAL_S,
    CourseEventHandler,
    LinkTargetHandler,
    OverflowDetector,
    start_observer,
)

IDLE_CHECK_S = 10.0  # a pooled connection idle this long is checked before use
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
    reconcile_requested: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)
    fatal: BaseException | None = None
    last_tick: float = 0.0
    last_sync: float | None = None
    last_sync_wall: str = "never"
    root_problem: str | None = None  # why the course root cannot be read now, if it cannot
    settle_heap: Callable[[], object] = heap.collect_and_freeze  # after each full reconcile
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _queued: set[str] = field(default_factory=set)  # an event job submitted, not started

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
        if self.reconcile_requested.is_set():
            self._reconcile()
            if not self.ready.is_set() and not self.reconcile_requested.is_set():
                self.ready.set()
        if self.ready.is_set():
            for course in self.debouncer.take_due():
                self._submit(course)

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
                self._course_synced(course)
        except FatalError as error:
            self.fatal = error
        except BaseException as error:  # a crashed sync must stop the daemon loudly
            self.fatal = error
            self.log.exception("course sync crashed", course=course)

    def _course_synced(self, course: str) -> None:
        """Its changes are in the database, unless a later job of it waits (then that one's
        end says so): until then it counts as pending, retries included."""
        if not self.scheduler.queued(course):
            self.debouncer.done(course)

    def flush(self, deadline: float) -> list[str]:
        """Shutdown: sync every pending course until ``deadline``; return the rest."""
        courses = self.debouncer.take_all()
        left = [c for c in courses if self.debouncer.is_writing(c)]  # never read half-written
        for course in [c for c in courses if c not in left]:
            synced = (
                self.clock() < deadline
                and self.fatal is None
                and self.breaker.allow()
                and self._sync(course, retry=False)
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
                    self.scheduler, progress=self._progress, after_course=self._course_synced
                )
            )
        except RootUnavailable as error:
            self.breaker.record_success()
            self.root_problem = str(error)
            if not self.ready.is_set():  # at start: exit 5, as every command does
                self.fatal = error
                return
            self.log.error("course root unavailable", reason=str(error))
            self.stop.wait(min(self.breaker.reset_timeout_s, 5.0))
            return
        except TransientError:
            return  # every failed attempt was counted and logged (_attempt)
        self.breaker.record_success()
        self.root_problem = None
        self.reconcile_requested.clear()
        self._synced()
        self.settle_heap()  # full collections off the save path (heap.py)

    def _sync(self, course: str, *, retry: bool = True) -> bool:
        if not self.breaker.allow():
            self.debouncer.defer(course, self.breaker.retry_at())
            return False
        try:
            if retry:
                self._with_retries(lambda: self.reconciler.sync_course(course))
            else:
                self._attempt(lambda: self.reconciler.sync_course(course))
        except RootUnavailable as error:
            self.breaker.record_success()
            self.root_problem = str(error)
            self.log.error("course root unavailable", course=course, reason=str(error))
            self.debouncer.defer(course, self.clock() + 5.0)
            return False
        except TransientError:  # every failed attempt was counted and logged (_attempt)
            self.debouncer.defer(course, self.breaker.retry_at())
            return False
        except RejectedError as error:
            self.breaker.record_success()  # the database answered: it is up
            self.log.error("course rejected", course=course, reason=error.reason)
            return True
        self.breaker.record_success()
        self.root_problem = None
        self._synced()
        return True

    def _attempt(self, call: Callable[[], Any], attempt: int = 1) -> Any:
        """One try; a transient failure counts for the breaker at once (per attempt, not
        per finished sync) and is logged, so an outage shows within one attempt."""
        try:
            return call()
        except TransientError as error:
            self._unavailable(error, attempt)
            raise

    def _with_retries(self, call: Callable[[], Any]) -> Any:
        def stop(state: tenacity.RetryCallState) -> bool:  # the breaker opened: stop trying
            return state.attempt_number >= self.retry_attempts or (self.breaker.state is State.OPEN)

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

    def _sleep(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        else:
            self.stop.wait(seconds)  # a retry back-off that SIGTERM cuts short

    def _unavailable(self, error: Exception, attempt: int = 1) -> None:
        """Said first, then counted: the failure that opens the breaker precedes its
        `breaker opened` line."""
        self.log.warning(
            "database unavailable",
            reason=str(error),
            attempt=attempt,
            breaker=self.breaker.state.value,
        )
        self.breaker.record_failure()

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
        self._unreachable_since: float | None = None  # wall clock: the breaker left closed
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
        deadlines = SocketDeadlines(
            on_expire=lambda secs: self.log.warning("database call timed out", seconds=secs)
        )
        pool = make_pool(self.db, workers=s.workers, check=self._checker(deadlines))
        call_deadline = self.db.statement_timeout_ms / 1000 * 2 + self.db.connect_timeout_s
        store = CourseStore(
            lambda: _guarded(pool, deadlines, call_deadline), self.clock, source=s.source_name
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
        )
        handler = CourseEventHandler(
            s.root,
            debouncer.mark,
            self.log,
            files=None if s.polling else debouncer,  # polling sees no opens or closes
        )
        overflow = OverflowDetector(lambda: self._overflowed(writer, debouncer))
        for name in WATCHDOG_LOGGERS:
            logging.getLogger(name).addHandler(overflow)

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
        if code == ExitCode.OK and self.signal_received == "SIGINT":
            return ExitCode.INTERRUPTED  # Ctrl-C: the README's 130, after a clean stop
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
            if writer.ready.is_set() and not ready_sent:
                ready_sent = True
                self.notifier.ready(self._status(writer, debouncer, breaker))
                self.log.info("daemon ready", pending=debouncer.pending())
            # The watchdog is fed from this loop on the threads' liveness, not on a sync
            # finishing: a writer waiting out an outage (retries, deadlines, back-off) is
            # alive. Only a writer silent for longer than any bounded wait can last is hung.
            writer_alive = thread.is_alive() and writer.responsive(now, self._hung_after)
            if observer.is_alive() and writer_alive:
                self.notifier.watchdog()
            self.notifier.status(self._status(writer, debouncer, breaker))
            if now >= self._health_due:
                self._write_health(writer, debouncer, breaker, writer_alive, observer.is_alive())
            if next_reconcile is not None and now >= next_reconcile:
                writer.reconcile_requested.set()
                debouncer.wake()
                next_reconcile = now + s.reconcile_interval_s
            if now >= next_heartbeat:
                next_heartbeat = now + s.heartbeat_s
                self.log.info(
                    "heartbeat",
                    pending=debouncer.pending(),
                    breaker=breaker.state.value,
                    lag_s=round(debouncer.oldest_age(), 3),
                    held=debouncer.held(),
                    last_sync=writer.last_sync_wall,
                    observer_alive=observer.is_alive(),
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
        observer = self._observer
        self.notifier.stopping()
        self.stop.set()
        debouncer.wake()
        self.log.info("daemon stopping", signal=self.signal_received, pending=debouncer.pending())
        observer.stop()
        thread.join(timeout=self.settings.shutdown_timeout_s)
        left: list[str] = []
        if (
            code == ExitCode.OK
            and writer.fatal is None
            and writer.ready.is_set()
            and not thread.is_alive()
        ):
            left = writer.flush(self.clock() + self.settings.shutdown_timeout_s)
        elif code == ExitCode.OK and writer.fatal is None:
            left = debouncer.take_all()
        if left:
            self.log.warning(
                "shutdown with unsynced courses (the next start reconciles them)", courses=left
            )
        observer.join(timeout=5)
        health.remove(self.settings.health_path)  # a stopped daemon is not healthy
        pool.close(timeout=5)
        deadlines.close()
        if code == ExitCode.OK and writer.fatal is not None:
            code = self._writer_failed(writer)
        self.log.info("daemon stopped", exit_code=code, unsynced=len(left))
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
        if identity == self._root_identity:
            return identity is not None
        self._root_identity = identity
        if identity is None:
            writer.root_problem = f"{self.settings.root} is missing"
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

    def _breaker_changed(self, old: State, new: State) -> None:
        if new is State.CLOSED:
            self._unreachable_since = None
        elif self._unreachable_since is None:
            self._unreachable_since = time.time()
        self._health_due = 0.0  # said at the next tick
        if new is State.OPEN:
            self.log.warning("breaker opened", previous=old.value)
        elif new is State.HALF_OPEN:
            self.log.info("breaker half-open", previous=old.value)
        else:
            self.log.info("breaker closed", previous=old.value)

    def _write_health(
        self,
        writer: Writer,
        debouncer: Debouncer,
        breaker: CircuitBreaker,
        writer_alive: bool,
        observer_alive: bool,
    ) -> None:
        """The state `syncd health` reads (the image's HEALTHCHECK)."""
        self._health_due = self.clock() + health.WRITE_EVERY_S
        state = health.HealthState(
            written_at=time.time(),
            pid=os.getpid(),
            ready=writer.ready.is_set(),
            writer_responsive=writer_alive,
            observer_alive=observer_alive,
            breaker=breaker.state.value,
            unreachable_since=self._unreachable_since,
            pending=debouncer.pending(),
            lag_s=round(debouncer.oldest_age(), 3),
            last_sync=writer.last_sync_wall,
            root_problem=writer.root_problem,
        )
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

    def _status(self, writer: Writer, debouncer: Debouncer, breaker: CircuitBreaker) -> str:
        return (
            f"pending={debouncer.pending()} breaker={breaker.state.value} "
            f"last_sync={writer.last_sync_wall}"
        )

    def _checker(self, deadlines: SocketDeadlines) -> Callable[[Any], None]:
        """The pool's health check: a round trip under a deadline, but only for a
        connection that sat idle long enough to have been dropped on the way (a busy
        connection proves itself with every sync and would pay one more round trip)."""
        seconds = float(self.db.connect_timeout_s)
        last_checked: dict[int, float] = {}

        def check(conn: Any) -> None:
            now = self.clock()
            if now - last_checked.get(id(conn), -IDLE_CHECK_S) >= IDLE_CHECK_S:
                with deadlines.guard(conn, seconds):
                    # one round trip (an empty query in autocommit), not three (BEGIN,
                    # SELECT 1, ROLLBACK): it runs before the save that follows a quiet spell
                    psycopg_pool.ConnectionPool.check_connection(conn)
            last_checked[id(conn)] = now

        return check

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handle(signum: int, _frame: Any) -> None:
            self.signal_received = signal.Signals(signum).name
            self.stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


def _identity(path: Any) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


@contextmanager
def _guarded(pool: Any, deadlines: SocketDeadlines, seconds: float) -> Iterator[Any]:
    """A pooled connection under a deadline. After a transient error the connection is
    closed, so the pool replaces it: a session stuck read-only (failover) or half-dead
    never comes back."""
    with translated("database"), pool.connection() as conn, deadlines.guard(conn, seconds):
        try:
            yield conn
        except RejectedError:
            raise  # the data was refused; the connection is fine
        except BaseException:
            conn.close()
            raise


def run(settings: Settings, db: DbSettings) -> int:
    return Daemon(settings, db).run()
