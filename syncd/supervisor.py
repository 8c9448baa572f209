"""Supervision: the daemon's main loop, once a second on the main thread.

It watches the threads the daemon started (the writer, watchdog's observer) and replaces the
observer when it dies (up to 3 times) or when the course root comes back; it keeps the
watches of followed link targets and of folders the inotify limit left unwatched
(``BlindSpotKeeper``); it reads the daemon's state once per tick and says it to systemd
(READY, STATUS, WATCHDOG), to the health file and in heartbeats; it asks for the periodic
safety reconcile. It starts no thread of its own: the observers it starts are watchdog's
(each with its emitter threads), owned here from then on and stopped by the daemon at
shutdown. Its state is the main thread's alone, so it holds no lock: from other threads come
only ``overflowed`` and ``blind.on_unwatched`` (watchdog's thread: they set events and record
under the debouncer's and BlindSpots' own locks) and ``HealthFile.soon`` (a breaker change: one
attribute write). What it reads of others (writer, debouncer, breaker) is read through their
own locks or as single attributes."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from syncd import config, health
from syncd.blindspots import BlindSpotKeeper, BlindSpots
from syncd.breaker import CircuitBreaker
from syncd.config import Settings
from syncd.debounce import Debouncer
from syncd.errors import ConfigError, FatalError, RootUnavailable
from syncd.exits import ExitCode
from syncd.systemd import Notifier
from syncd.tree import folder_identity
from syncd.watcher import CourseEventHandler, LinkTargetHandler
from syncd.writer import Writer

MAX_OBSERVER_RESTARTS = 3  # a watcher that dies once more ends the daemon (exit 6)


def writer_failed(writer: Writer, log: Any) -> int:
    """The exit code of the writer's fatal error, said."""
    error = writer.fatal
    if isinstance(error, RootUnavailable):
        log.error("course root unavailable", reason=str(error), exit_code=5)
        return ExitCode.ROOT_UNAVAILABLE
    if isinstance(error, FatalError):
        log.error("database refused syncd", reason=str(error))
        return ExitCode.FATAL_DB
    log.error("writer thread crashed", error=repr(error))
    return ExitCode.WRITER_DIED


class HealthFile:
    """The file `syncd health` reads (the image's HEALTHCHECK): written every
    ``health.WRITE_EVERY_S`` by the supervisor, and at its next tick after ``soon``."""

    def __init__(self, path: Any, clock: Callable[[], float], log: Any) -> None:
        self.path = path
        self._clock = clock
        self._log = log
        self._due = 0.0  # monotonic: when the file is written next
        self._failed = False

    def soon(self) -> None:
        """Written at the next tick (a breaker change: told under the breaker's lock)."""
        self._due = 0.0

    def due(self, now: float) -> bool:
        return now >= self._due

    def write(self, state: health.HealthState) -> None:
        self._due = self._clock() + health.WRITE_EVERY_S
        try:
            health.write(self.path, state)
            self._failed = False
        except OSError as exc:
            if not self._failed:  # said once, not every few seconds
                self._failed = True
                self._log.warning(
                    "health file not written",
                    path=str(self.path),
                    reason=exc.strerror,
                    hint="set --health-file (SYNCD_HEALTH_FILE) to a writable place",
                )


class Supervisor:
    """The main thread's loop (``run``) over a running daemon's parts. ``watch`` starts a
    new observer of the root; ``observer`` is the current one."""

    def __init__(
        self,
        settings: Settings,
        *,
        writer: Writer,
        debouncer: Debouncer,
        breaker: CircuitBreaker,
        handler: CourseEventHandler,
        watch: Callable[[], Any],
        notifier: Notifier,
        health_file: HealthFile,
        stop: threading.Event,
        log: Any,
        clock: Callable[[], float],
        hung_after: float,
    ) -> None:
        self.settings = settings
        self.writer = writer
        self.debouncer = debouncer
        self.breaker = breaker
        self.handler = handler
        self.notifier = notifier
        self.health_file = health_file
        self.stop = stop
        self.log = log
        self.clock = clock
        self._watch = watch
        self._hung_after = hung_after  # longer than any bounded wait of the writer
        self.observer: Any = None
        self.blind = BlindSpotKeeper(
            BlindSpots(clock, retry_s=settings.watch_retry_s),
            settings.root,
            lambda: self.observer,
            handler,
            debouncer.mark,
            log,
            clock,
            follow_symlinks=settings.follow_symlinks,
        )
        self._link_watches: dict[str, Any] = {}  # followed link target -> its watch
        self._root_missing: str | None = None  # the supervisor's own look at the root
        self._root_identity: tuple[int, int] | None = None

    def watching(self, observer: Any) -> None:
        """The observer the daemon started, and the root it watches as it is now."""

        self.observer = observer
        self._root_identity = folder_identity(self.settings.root)

    def run(self, thread: threading.Thread) -> int:
        """Until ``stop`` (OK) or a thread's end: the exit code."""
        s, writer, debouncer = self.settings, self.writer, self.debouncer
        tick = min(1.0, self.notifier.watchdog_interval_s or 1.0)
        now = self.clock()
        next_heartbeat = now + s.heartbeat_s
        next_reconcile = now + s.reconcile_interval_s if s.reconcile_interval_s > 0 else None
        ready_sent = False
        observer_restarts = 0
        while not self.stop.wait(tick):
            now = self.clock()
            if writer.fatal is not None:
                return writer_failed(writer, self.log)
            if not thread.is_alive():
                self.log.error("writer thread stopped unexpectedly")
                return ExitCode.WRITER_DIED
            root_present = self._check_root()
            observer = self.observer
            if root_present and not observer.is_alive():
                observer_restarts += 1
                self.log.error("watcher died", restarts=observer_restarts)
                if observer_restarts > MAX_OBSERVER_RESTARTS:
                    return ExitCode.WATCHER_DIED
                self._rewatch()
                observer = self.observer
            if s.follow_symlinks:
                self._watch_link_targets()
            if root_present and not s.polling:
                self.blind.tick()  # folders the watch limit left unwatched: said, polled
            # The watchdog is fed from this loop on the threads' liveness, not on a sync
            # finishing: a writer waiting out an outage (retries, deadlines, back-off) is
            # alive. Only a writer silent for longer than any bounded wait can last is hung.
            writer_alive = thread.is_alive() and writer.responsive(now, self._hung_after)
            # One reading of the state per tick, by this thread: the health file, the
            # systemd status and the heartbeat all say the same thing.
            state = self._observe(writer_alive, observer.is_alive())
            if writer.ready.is_set() and not ready_sent:
                ready_sent = True
                self.notifier.ready(health.status_line(state))
                self.log.info("daemon ready", pending=state.pending)
            if observer.is_alive() and writer_alive:
                self.notifier.watchdog()
            self.notifier.status(health.status_line(state))
            if self.health_file.due(now):
                self.health_file.write(state)
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

    def overflowed(self) -> None:
        """The kernel's event queue overflowed (told from watchdog's thread)."""
        self.log.warning("watch queue overflowed: events were lost, full reconcile scheduled")
        self.debouncer.files_unknown()
        self.writer.reconcile_requested.set()
        self.debouncer.wake()

    # -- the root and its watches -----------------------------------------------------------

    def _check_root(self) -> bool:
        """Notice the course root disappearing (deleted, renamed, unmounted) and coming
        back: watch it again and reconcile. Returns whether it is there now."""

        identity = folder_identity(self.settings.root)
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
        self._rewatch()
        return True

    def _rewatch(self) -> None:
        """Replace the observer, then reconcile what happened while nobody watched."""
        with contextlib.suppress(Exception):  # the old observer may already be broken
            self.observer.stop()
        self._link_watches = {}  # the new observer watches them again
        try:
            self.observer = self._watch()
            self.blind.rewatched()  # a new watch covers the whole tree, or fails
        except ConfigError as error:
            self.log.error("watcher could not start", reason=str(error))
        self.writer.reconcile_requested.set()
        self.debouncer.wake()

    def _watch_link_targets(self) -> None:
        """Keep one watch on each folder reached through a followed link, as the last scans
        of their courses found them (inotify does not follow links; polling uses lstat)."""
        wanted = self.writer.reconciler.link_targets()
        for target in [t for t in self._link_watches if t not in wanted]:
            watch = self._link_watches.pop(target)
            if watch is not None:
                with contextlib.suppress(Exception):
                    self.observer.unschedule(watch)
        for target, course in wanted.items():
            if target in self._link_watches:
                continue
            try:
                self._link_watches[target] = self.observer.schedule(
                    LinkTargetHandler(course, self.debouncer.mark, self.log),
                    target,
                    recursive=True,
                )
                self.log.info("link target watched", course=course, path=target)
            except OSError as exc:
                self._link_watches[target] = None  # named once; the safety reconcile covers it
                self.log.warning(
                    "link target not watched", course=course, path=target, reason=exc.strerror
                )

    # -- the state, read once per tick --------------------------------------------------------

    def _observe(self, writer_alive: bool, observer_alive: bool) -> health.HealthState:
        """The daemon's state, read once from its owners: the breaker's own view, the
        debouncer's pending courses (and, during the first full reconcile, the courses it
        has not reached), the failing courses."""
        writer, debouncer = self.writer, self.debouncer
        now, wall = self.clock(), time.time()
        view = self.breaker.view()

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
            unwatched=self.blind.unwatched(),
        )
