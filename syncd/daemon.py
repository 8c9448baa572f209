"""Wiring and the stop of the long-running service (``syncd`` without a command).

``Daemon.run`` builds the parts (breaker, debouncer, socket deadlines, pool, store,
reconciler, scheduler, writer, event handler, supervisor), starts them, hands the main
thread to the supervisor (supervisor.py) and, whatever ends that, stops them in order.

Threads, and who owns them:
- main: ``Daemon.run``; signal handlers (they only set ``stop`` and note the signal), then
  ``Supervisor.run`` once a second, then ``_shutdown``;
- ``syncd-writer``: ``Writer.run`` (writer.py), started and joined here;
- ``syncd-course_N``: the scheduler's ``--workers`` job threads (scheduler.py: its executor,
  started as jobs come; shut down by the writer's loop as it ends);
- watchdog's observer and its emitter threads: started here (``watch``), replaced by the
  supervisor when they die or the root comes back, stopped and joined by ``_shutdown``;
- ``syncd-deadlines``: started by ``SocketDeadlines`` (deadline.py) at the first guarded
  call, ended by ``deadlines.close()`` here;
- psycopg_pool's ``syncd-scheduler`` and ``syncd-worker-0..2`` (connections opened and
  checked in the background): started by ``pool.open``, ended by ``pool.close`` here.

Start order (``run``): refuse a root that is not a folder → build the parts → install the
signal handlers → ``daemon started`` → open the pool (not waiting for it) → start the
observer (events buffer in the debouncer) → start the writer thread, whose first job is the
full reconcile → the supervisor's loop; it sends READY=1 at its first tick after that
reconcile (``daemon ready``). A failure to start watching (the inotify watch limit) raises
ConfigError (exit 2) before the writer starts; the pool, already opening, is not closed.

Shutdown (``_shutdown``), with S = ``--shutdown-timeout`` (``shutdown_timeout_s``) and
``STOP_TAIL_S`` = 5 s:
1. STOPPING=1; ``stop`` set, the debouncer woken; the stop's deadline is now + S, and
   ``deadlines.cap`` makes every database call under way or to come end by it (its socket
   shut then; a pool checkout waits at most until then);
2. the observer stopped (not joined yet);
3. the writer thread joined for at most (deadline - now) + STOP_TAIL_S / 5 (1 s, for a call
   cut at the deadline to fail): its loop ends (no retry once ``stop`` is set; a full
   reconcile under way goes on until its calls are cut), then the scheduler's jobs in
   flight finish (an event job not yet begun finds ``stop`` set and leaves its course for
   the flush);
4. the flush, if the supervisor ended on ``stop``, the writer has no fatal error, its first
   reconcile was done and its thread has ended: each pending course not being written is
   synced once, without retries, while the clock is before the deadline (a sync begun
   before it may end a moment after, its calls cut at it); a course still being written, or
   not reached, is left; without a flush every pending course is left (a job still under
   way included); those left are named (``shutdown with unsynced courses``);
5. the observer joined for at most STOP_TAIL_S * 2/5 (2 s); the health file removed;
6. the pool closed, waiting at most STOP_TAIL_S * 2/5 (2 s);
7. ``deadlines.close()``: its thread joined (at most 5 s; it ends as soon as woken);
8. the exit code (the writer's fatal error's, or 130 after SIGINT) and ``daemon stopped``.
So the stop takes at most S + STOP_TAIL_S (S + 1 + 2 + 2 s), beyond which only a sync
begun just before the deadline (file reading, a cut call failing) and the deadline thread's
join can add.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from syncd import config, health, logs
from syncd.breaker import CircuitBreaker, State
from syncd.config import Settings
from syncd.course import ParseOptions
from syncd.database import DbSettings, ProbeEvery, guarded, idle_check, make_pool, probe
from syncd.deadline import SocketDeadlines
from syncd.debounce import SETTLE_S, Debouncer
from syncd.errors import RootUnavailable
from syncd.exits import ExitCode
from syncd.reconcile import Reconciler
from syncd.scheduler import CourseScheduler
from syncd.store import CourseStore
from syncd.supervisor import HealthFile, Supervisor, writer_failed
from syncd.systemd import Notifier
from syncd.watcher import (
    POLL_INTERVAL_S,
    CourseEventHandler,
    OverflowDetector,
    UnwatchedDetector,
    start_observer,
)
from syncd.writer import Writer

STOP_TAIL_S = 5.0  # after --shutdown-timeout: a cut call failing, the watcher, the pool
WATCHDOG_LOGGERS = ("watchdog.observers.inotify_c", "watchdog.observers.inotify")


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
        self._health = HealthFile(settings.health_path, clock, self.log)
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
        checker = idle_check(deadlines, self.db, self.clock)
        pool = make_pool(self.db, workers=s.workers, check=checker)
        call_deadline = self.db.statement_timeout_ms / 1000 * 2 + self.db.connect_timeout_s
        store = CourseStore(
            lambda: guarded(pool, deadlines, call_deadline, breaker.record_success),
            self.clock,
            source=s.source_name,
            history_keep=s.history_retention,
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

        def watch() -> Any:
            return start_observer(s.root, handler, polling=s.polling)

        supervisor = Supervisor(
            s,
            writer=writer,
            debouncer=debouncer,
            breaker=breaker,
            handler=handler,
            watch=watch,
            notifier=self.notifier,
            health_file=self._health,
            stop=self.stop,
            log=self.log,
            clock=self.clock,
            hung_after=self._hung_after,
        )
        overflow = OverflowDetector(supervisor.overflowed)
        unwatched = UnwatchedDetector(supervisor.blind.on_unwatched)
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
        observer = watch()
        thread = threading.Thread(target=writer.run, name="syncd-writer")
        thread.start()
        supervisor.watching(observer)
        code: int = ExitCode.OK
        try:
            code = supervisor.run(thread)
        finally:
            code = self._shutdown(
                code,
                observer=supervisor.observer,
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

    # -- the stop ------------------------------------------------------------------------

    def _shutdown(
        self,
        code: int,
        *,
        observer: Any,
        writer: Writer,
        thread: threading.Thread,
        debouncer: Debouncer,
        pool: Any,
        deadlines: SocketDeadlines,
    ) -> int:
        """One budget for the whole stop: ``--shutdown-timeout`` for the jobs in flight and
        the flush together (a database call still running at its end has its socket shut),
        then at most ``STOP_TAIL_S`` to close the watcher and the pool."""
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
            code = writer_failed(writer, self.log)
        if code == ExitCode.OK and self.signal_received == "SIGINT":
            code = ExitCode.INTERRUPTED  # Ctrl-C: docs/exit-codes.md's 130, after a clean stop
        self.log.info("daemon stopped", exit_code=int(code), unsynced=len(left))
        return code

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
        self._health.soon()  # said at the next tick
        if new is State.OPEN:
            self.log.warning("breaker opened", previous=old.value)
        elif new is State.HALF_OPEN:
            self.log.info("breaker half-open", previous=old.value)
        else:
            self.log.info("breaker closed", previous=old.value)

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handle(signum: int, _frame: Any) -> None:
            self.signal_received = signal.Signals(signum).name
            self.stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)


def run(settings: Settings, db: DbSettings) -> int:
    return Daemon(settings, db).run()
