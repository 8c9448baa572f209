"""Circuit breaker: closed → open after N consecutive failures → half-open after a reset
timeout (one trial call) → closed on success, open again on failure.

Hand-written rather than a library: the ones on PyPI either hold a lock around the
protected call (serialising every database call) or are asyncio-only. Here the lock
guards only the state; the caller makes the call itself between ``allow`` and
``record_*``. The clock is passed in.

The breaker also keeps what health reports are derived from, under the same lock: since
when it has been away from closed, and the kind and reason of the last failure. The
``on_change`` callback runs under the lock too, so that transitions are told in the order
they happened (it must only record or log, never call back into the breaker)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass(frozen=True)
class BreakerView:
    """One consistent reading of the breaker (for health, heartbeats and status)."""

    state: State
    away_since: float | None  # clock time it left closed; None while closed
    kind: str  # of the last failure: "unreachable", "disk-full", "auth"
    reason: str  # the last failure's message ("" when none since closing)
    kind_since: float | None  # clock time failures of this kind began (unbroken)
    failing_since: float | None  # clock time of the first failure since the last success


class CircuitBreaker:
    def __init__(
        self,
        failure_threshold: int = 3,
        reset_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State, State], None] | None = None,
    ) -> None:
        if failure_threshold < 1 or reset_timeout_s < 0:
            raise ValueError("failure_threshold >= 1 and reset_timeout_s >= 0")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.RLock()
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False
        self._away_since: float | None = None
        self._kind = ""
        self._reason = ""
        self._kind_since: float | None = None
        self._failing_since: float | None = None

    def view(self) -> BreakerView:
        with self._lock:
            return BreakerView(
                self._state,
                self._away_since,
                self._kind,
                self._reason,
                self._kind_since,
                self._failing_since,
            )

    @property
    def state(self) -> State:
        with self._lock:
            return self._state

    def retry_at(self) -> float:
        """When a call may next be allowed (now when closed)."""
        with self._lock:
            if self._state is State.OPEN:
                return self._opened_at + self.reset_timeout_s
            return self._clock()

    def allow(self) -> bool:
        """May the caller try the protected call now? Never blocks."""
        with self._lock:
            if self._state is State.OPEN:
                if self._clock() < self._opened_at + self.reset_timeout_s:
                    return False
                self._move(State.HALF_OPEN)
                self._trial_in_flight = False
            if self._state is State.HALF_OPEN:
                if self._trial_in_flight:
                    return False
                self._trial_in_flight = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._trial_in_flight = False
            self._kind, self._reason, self._kind_since = "", "", None
            self._failing_since = None
            if self._state is not State.CLOSED:
                self._move(State.CLOSED)

    def release_trial(self) -> None:
        """The call allowed said nothing of the protected service (it failed for a reason
        of its own): the next ``allow`` may try again."""
        with self._lock:
            self._trial_in_flight = False

    def record_failure(self, kind: str = "unreachable", reason: str = "") -> None:
        """A failed call; ``kind`` says what kind of outage it shows (health names it)."""
        with self._lock:
            now = self._clock()
            if kind != self._kind or self._kind_since is None:
                self._kind_since = now
            if self._failing_since is None:
                self._failing_since = now
            self._kind, self._reason = kind, reason
            self._failures += 1
            self._trial_in_flight = False
            if self._state is State.HALF_OPEN or (
                self._state is State.CLOSED and self._failures >= self.failure_threshold
            ):
                self._opened_at = now
                self._move(State.OPEN)
            elif self._state is State.OPEN:
                self._opened_at = now

    def _move(self, new: State) -> None:
        """Under the lock: change state, keep ``away_since``, tell ``on_change``."""
        old, self._state = self._state, new
        if new is State.CLOSED:
            self._away_since = None
        elif self._away_since is None:
            self._away_since = self._clock()
        if self._on_change is not None:
            self._on_change(old, new)
