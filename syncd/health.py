"""The daemon's own state, for `syncd health` (the image's HEALTHCHECK): the supervisor
writes a small JSON file every few seconds; the command reads it, and nothing else (no
database, no network, nothing written), so it is fast and cannot disturb the daemon.

Unhealthy when the file is stale (the supervisor itself stopped), when the writer or the
watcher has stalled, when the database has been away (breaker not closed: unreachable, disk
full, or the password rejected, each said as such) for longer than a threshold, or when a
course has been stuck (a lock held, a timeout, a surprise) that long. A course whose data
the database refuses is named but is the content's problem, not the daemon's: healthy."""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

WRITE_EVERY_S = 5.0  # how often the supervisor rewrites the file (and at every breaker change)


@dataclass(frozen=True)
class Failing:
    """A course whose last sync failed on its own (see course_failures)."""

    course: str
    kind: str  # refused | busy | error
    reason: str
    sqlstate: str | None
    since: float  # wall clock of its first failure in this run
    attempts: int


STUCK_KINDS = ("busy", "error")  # unhealthy when failing longer than the threshold


def describe_failing(failing: Failing, now: float) -> str:
    return f"{failing.course} ({failing.reason}, {now - failing.since:.0f} s)"


@dataclass(frozen=True)
class HealthState:
    written_at: float  # wall clock, seconds since the epoch
    pid: int
    ready: bool  # the first full reconcile is done
    writer_responsive: bool
    observer_alive: bool
    breaker: str
    unreachable_since: float | None  # wall clock when the breaker left closed, if it has
    pending: int
    lag_s: float
    last_sync: str
    root_problem: str | None = None  # the course root cannot be read (missing, unreadable)
    breaker_kind: str = ""  # of the last failure: unreachable | disk-full | auth
    breaker_reason: str = ""
    breaker_kind_since: float | None = None  # wall clock: failures of that kind began
    failing: list[Failing] = field(default_factory=list)
    # folders (relative to the root) the inotify watch limit left unwatched: polled meanwhile
    unwatched: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, object]) -> HealthState:
        failing = data.pop("failing", [])
        if not isinstance(failing, list):  # verdict() reads this as an unreadable file
            raise TypeError(f"failing is not a list: {failing!r}")
        return cls(**data, failing=[Failing(**f) for f in failing])  # type: ignore[arg-type]


def status_line(state: HealthState) -> str:
    """One line for `systemctl status` (STATUS=)."""
    breaker = state.breaker if not state.breaker_kind else f"{state.breaker}({state.breaker_kind})"
    line = f"pending={state.pending} breaker={breaker} last_sync={state.last_sync}"
    if state.unwatched:
        line += f" unwatched={len(state.unwatched)}"
    if state.failing:
        now = state.written_at
        line += f" failing={len(state.failing)}: " + "; ".join(
            describe_failing(f, now) for f in state.failing[:3]
        )
    return line


def write(path: Path, state: HealthState) -> None:
    """Atomically (a temporary file, then a rename): a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(asdict(state)), encoding="utf-8")
    temp.chmod(0o644)  # no secret in it: a monitoring user may read it (the unit's umask is 077)
    os.replace(temp, path)


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def verdict(
    path: Path, *, stalled_after_s: float, unreachable_after_s: float, now: float | None = None
) -> tuple[bool, str]:
    """(healthy, one line saying why) from the state file at ``path``."""
    now = time.time() if now is None else now
    try:
        state = HealthState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return False, f"no health file at {path}: is the daemon running (same --data-dir)?"
    except (OSError, ValueError, TypeError) as exc:
        return False, f"health file {path} unreadable: {exc}"
    age = now - state.written_at
    if age > stalled_after_s:
        return False, f"stalled: the daemon has not written its state for {age:.0f} s"
    if not _alive(state.pid):
        return False, f"the daemon (pid {state.pid}) is not running"
    if not state.writer_responsive:
        return False, "stalled: the writer has made no progress for longer than any wait lasts"
    if not state.observer_alive:
        return False, "stalled: the watcher is not running"
    if state.root_problem:
        return False, f"course root unavailable: {state.root_problem}"
    if state.unreachable_since is not None:
        down = now - state.unreachable_since
        if down > unreachable_after_s:
            return False, _away(state, down)
    stuck = [
        f for f in state.failing if f.kind in STUCK_KINDS and now - f.since > unreachable_after_s
    ]
    if stuck:
        return False, f"{len(stuck)} course(s) stuck: " + "; ".join(
            describe_failing(f, now) for f in stuck
        )
    line = (
        f"healthy: {'ready' if state.ready else 'first reconcile running'}, breaker "
        f"{state.breaker}, {state.pending} pending, lag {state.lag_s:.1f} s, "
        f"last sync {state.last_sync}"
    )
    if state.unwatched:  # polled meanwhile, so edits land: a warning, not a failure
        shown = ", ".join(state.unwatched[:5])
        more = f" and {len(state.unwatched) - 5} more" if len(state.unwatched) > 5 else ""
        line = (
            f"healthy, but {len(state.unwatched)} folder(s) not watched (inotify watch limit:"
            f" raise fs.inotify.max_user_watches), polled every second meanwhile: {shown}{more};"
            f" breaker {state.breaker}, {state.pending} pending, lag {state.lag_s:.1f} s"
        )
    if state.failing:
        line += f"; {len(state.failing)} course(s) failing: " + "; ".join(
            describe_failing(f, now) for f in state.failing
        )
    return True, line


def _away(state: HealthState, down: float) -> str:
    """Why the database has been away ``down`` seconds, by the kind of its last failure."""
    pending = f"{state.pending} course(s) pending"
    if state.breaker_kind == "auth":
        return (
            f"database rejects syncd's password for {down:.0f} s ({state.breaker_reason}): "
            f"update DATABASE_URL and restart syncd; {pending}"
        )
    if state.breaker_kind == "disk-full":
        return f"database disk full for {down:.0f} s ({state.breaker_reason}); {pending}"
    return f"database unreachable for {down:.0f} s (breaker {state.breaker}), {pending}"


def unwatched(path: Path, *, stalled_after_s: float, now: float | None = None) -> list[str]:
    """The folders the running daemon cannot watch, from its state file (none when no
    daemon is running, or its state is stale)."""
    now = time.time() if now is None else now
    try:
        state = HealthState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return []
    if now - state.written_at > stalled_after_s or not _alive(state.pid):
        return []
    return list(state.unwatched)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, as another user
    return True
