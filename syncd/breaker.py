"""Circuit breaker: closed → open after N consecutive failures → half-open after a reset
timeout (one trial call) → closed on success, open again on failure.

Hand-written rather than a library: the ones on PyPI either hold a lock around the
protected call (serialising every database call) or are asyncio-only. Here the lock
guards only the state; the caller makes the call itself between ``allow`` and
``record_*``. The clock is passed in."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from enum import StrEnum


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


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
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

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
        change = None
        with self._lock:
            if self._state is State.OPEN:
                if self._clock() < self._opened_at + self.reset_timeout_s:
                    return False
                change = (self._state, State.HALF_OPEN)
                self._state = State.HALF_OPEN
                self._trial_in_flight = False
            if self._state is State.HALF_OPEN:
                if self._trial_in_flight:
                    allowed = False
                else:
                    self._trial_in_flight = allowed = True
            else:
                allowed = True
        self._notify(change)
        return allowed

    def record_success(self) -> None:
        change = None
        with self._lock:
            self._failures = 0
            self._trial_in_flight = False
            if self._state is not State.CLOSED:
                change = (self._state, State.CLOSED)
                self._state = State.CLOSED
        self._notify(change)

    def record_failure(self) -> None:
        change = None
        with self._lock:
            self._failures += 1
            self._trial_in_flight = False
            if self._state is State.HALF_OPEN or (
                self._state is State.CLOSED and self._failures >= self.failure_threshold
            ):
                change = (self._state, State.OPEN)
                self._state = State.OPEN
                self._opened_at = self._clock()
            elif self._state is State.OPEN:
                self._opened_at = self._clock()
        self._notify(change)

    def _notify(self, change: tuple[State, State] | None) -> None:
        if change is not None and self._on_change is not None:
            self._on_change(*change)
