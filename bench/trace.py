"""Where a save's time goes inside the daemon, without changing syncd: ``python -m
bench.trace [syncd args]`` wraps a few of the daemon's functions with timestamps, then runs
``syncd.cli.main`` as ``python -m syncd`` would. Each stage prints one JSON line
``{"event": "trace", "stage": ..., "t": time.monotonic(), ...}`` on stdout (CLOCK_MONOTONIC
is the same clock in every process, so the bench can set them against its own stamps).

``breakdown`` turns those lines and the bench's saves into a table of per-stage medians."""

from __future__ import annotations

import contextlib
import functools
import gc
import json
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

_out_lock = threading.Lock()


def emit(stage: str, **fields: Any) -> None:
    line = json.dumps({"event": "trace", "stage": stage, "t": time.monotonic(), **fields})
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def _wrap(owner: Any, name: str, before: str | None, after: str | None) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before:
            emit(before)
        result = original(*args, **kwargs)
        if after:
            emit(after)
        return result

    setattr(owner, name, wrapper)


def _trace_gc() -> None:
    started: dict[str, float] = {}

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started["t"] = time.monotonic()
        elif "t" in started:
            ms = (time.monotonic() - started.pop("t")) * 1000
            emit("gc", ms=ms, generation=info.get("generation"), collected=info.get("collected"))

    gc.callbacks.append(callback)


def install() -> None:
    from syncd import daemon, database, debounce, reconcile, store, watcher, writer

    _trace_gc()

    handler_cls = watcher.CourseEventHandler
    on_any = handler_cls.on_any_event

    def on_any_event(self: Any, event: Any) -> None:
        emit("inotify", kind=type(event).__name__, path=str(event.src_path))
        on_any(self, event)

    handler_cls.on_any_event = on_any_event  # type: ignore[method-assign]

    deb = debounce.Debouncer
    closed = deb.closed

    def closed_traced(self: Any, course: str, path: str, *, wrote: bool) -> None:
        closed(self, course, path, wrote=wrote)
        emit("debouncer closed", path=path, wrote=wrote)

    deb.closed = closed_traced  # type: ignore[method-assign]
    wait = deb.wait

    def wait_traced(self: Any, timeout: float) -> None:
        with self._cond:
            upcoming = min((self._due_at(c) for c in self._first), default=None)
        emit("writer waits", due_in=None if upcoming is None else upcoming - self._clock())
        wait(self, timeout)
        emit("writer woke")

    deb.wait = wait_traced  # type: ignore[method-assign]
    take_due = deb.take_due

    def take_due_traced(self: Any) -> list[str]:
        due = take_due(self)
        if due:
            emit("due taken", courses=due)
        return due

    deb.take_due = take_due_traced  # type: ignore[method-assign]
    _wrap(writer.Writer, "_event_job", "job started", "job ended")
    _wrap(reconcile.Reconciler, "prepare", None, "read and parsed")
    _wrap(store.CourseStore, "sync_course", "transaction starts", "committed")

    guarded = daemon.guarded  # type: ignore[attr-defined]

    @contextlib.contextmanager
    def guarded_traced(*args: Any, **kwargs: Any) -> Iterator[Any]:
        emit("checkout starts")
        with guarded(*args, **kwargs) as conn:
            emit("checked out")
            yield conn

    daemon.guarded = guarded_traced  # type: ignore[attr-defined]
    check = database.IdleCheck.__call__

    def check_traced(self: Any, conn: Any) -> None:
        started = time.monotonic()
        check(self, conn)
        emit("pool check", ms=(time.monotonic() - started) * 1000)

    database.IdleCheck.__call__ = check_traced  # type: ignore[method-assign]


# -- the bench side ---------------------------------------------------------------------

STAGES = (
    # (label, from stage, to stage): each the first occurrence after the save's open
    ("open -> close returned (the bench's write)", "open", "closed"),
    ("close -> IN_CLOSE_WRITE handled (inotify, watchdog threads)", "closed", "close event"),
    ("close event -> writer woke for the due course (settle)", "close event", "woke due"),
    ("writer woke -> course taken", "woke due", "due taken"),
    ("course taken -> job started (scheduler handoff)", "due taken", "job started"),
    ("job started -> read and parsed", "job started", "read and parsed"),
    ("read and parsed -> pooled connection checked out", "read and parsed", "checked out"),
    ("checked out -> committed (2 round trips, commit)", "checked out", "committed"),
    ("committed -> poller saw the row", "committed", "seen"),
)


def _marks(window: list[dict[str, Any]], save: Any, checks: list[float]) -> dict[str, float]:
    """When each stage of ``save`` was reached (the first such trace after its open)."""
    marks: dict[str, float] = {"open": save.before_open, "closed": save.closed, "seen": save.seen}
    for e in window:
        stage = e["stage"]
        if (
            stage == "inotify"
            and e.get("kind") == "FileClosedEvent"
            and e["path"].endswith(save.path)
        ):
            marks.setdefault("close event", e["t"])
        elif stage == "due taken":
            marks.setdefault("due taken", e["t"])
        elif stage in ("job started", "read and parsed", "checked out", "committed"):
            if "due taken" in marks:
                marks.setdefault(stage, e["t"])
        elif stage == "pool check" and "due taken" in marks:
            checks.append(e["ms"])
    if "due taken" in marks:
        woke = [
            e["t"] for e in window if e["stage"] == "writer woke" and e["t"] <= marks["due taken"]
        ]
        if woke:
            marks["woke due"] = woke[-1]
    return marks


def breakdown(events: list[dict[str, Any]], saves: list[Any]) -> list[str]:
    traces = sorted((e for e in events if e.get("event") == "trace"), key=lambda e: e["t"])
    per_stage: dict[str, list[float]] = {label: [] for label, _, _ in STAGES}
    checks: list[float] = []
    slowest: list[tuple[float, list[str]]] = []
    windows = []
    for save in saves:
        window = [e for e in traces if save.before_open <= e["t"] <= save.seen + 0.001]
        windows.append(window)
        marks = _marks(window, save, checks)
        parts = []
        for label, start, end in STAGES:
            if start in marks and end in marks:
                per_stage[label].append((marks[end] - marks[start]) * 1000)
                parts.append(f"{(marks[end] - marks[start]) * 1000:.1f}")
            else:
                parts.append("?")
        slowest.append((save.latency_ms, parts))
    lines = ["breakdown (ms, median / p90 / max over the saves; stages in order):"]
    for label, samples in per_stage.items():
        if samples:
            ordered = sorted(samples)
            p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
            lines.append(
                f"  {label}: {statistics_median(samples):.2f} / {p90:.2f} / {max(samples):.2f}"
            )
    lines += _extras(traces, windows, len(saves))
    lines.append("  slowest saves, each stage in the order above:")
    for total, parts in sorted(slowest, reverse=True)[:5]:
        lines.append(f"    {total:.1f} ms = {' + '.join(parts)}")
    if checks:
        queried = [c for c in checks if c > 0.05]
        lines.append(
            f"  pool checkout checks: {len(checks)}, median {statistics_median(checks):.3f} ms; "
            f"{len(queried)} ran a query (> 0.05 ms)"
        )
    return lines


def _extras(
    traces: list[dict[str, Any]], windows: list[list[dict[str, Any]]], saves: int
) -> list[str]:
    """Watch events and garbage collections inside the saves; syncs started."""
    kinds: dict[str, int] = {}
    pauses: dict[int, list[float]] = {}
    for window in windows:
        for e in window:
            if e["stage"] == "inotify":
                kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
            elif e["stage"] == "gc":
                pauses.setdefault(int(e.get("generation") or 0), []).append(e["ms"])
    lines = [
        "  watch events handled per save (its own and syncd's reads): "
        + ", ".join(f"{k} {v / max(1, saves):.1f}" for k, v in sorted(kinds.items()))
    ]
    for generation, found in sorted(pauses.items()):
        lines.append(
            f"  gc generation {generation} inside the saves: {len(found)} collections, median "
            f"{statistics_median(found):.2f} ms, max {max(found):.2f} ms"
        )
    syncs = sum(1 for e in traces if e["stage"] == "due taken")
    lines.append(f"  course syncs started: {syncs} for {saves} saves")
    return lines


def statistics_median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def main() -> int:
    install()
    from syncd.cli import main as syncd_main

    return syncd_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
