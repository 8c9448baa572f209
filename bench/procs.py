"""syncd as a real process: a timed ``syncd --rescan`` and a daemon to watch from outside.

Every child is started in its own session and killed on the way out (``Children`` keeps
track of them), so that nothing is left running when the benchmark ends or is
interrupted."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# Where ``python -m syncd`` runs from (its ``syncd/`` package is the one imported): this
# checkout, or the sources of another commit (``bench.run --syncd-from``) for before/after
# figures measured by the same bench in the same sitting.
SYNCD_SOURCES = {"cwd": REPO}


def syncd_cwd() -> Path:
    return SYNCD_SOURCES["cwd"]


def syncd_env(dsn: str) -> dict[str, str]:
    """The caller's environment without SYNCD_* settings, plus the database and JSON logs."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not (k.startswith("SYNCD_") or k in ("DATABASE_URL", "CREATOR_OS_DB_PERSIST"))
    }
    env.update({"DATABASE_URL": dsn, "SYNCD_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"})
    return env


def parse_events(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
    return events


class Children:
    """Every child process the benchmark starts; ``kill_all`` ends the ones still alive."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()

    def popen(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("cwd", REPO)
        proc: subprocess.Popen[Any] = subprocess.Popen(argv, start_new_session=True, **kwargs)
        with self._lock:
            self._procs.append(proc)
        return proc

    def forget(self, proc: subprocess.Popen[Any]) -> None:
        with self._lock:
            if proc in self._procs:
                self._procs.remove(proc)

    def kill_all(self) -> None:
        with self._lock:
            procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)


CHILDREN = Children()


@dataclass
class RescanRun:
    wall_s: float
    code: int
    events: list[dict[str, Any]]

    def event(self, name: str) -> dict[str, Any]:
        found = [e for e in self.events if e.get("event") == name]
        if not found:
            raise RuntimeError(f"no {name!r} event in the syncd log")
        return found[-1]

    @property
    def reconcile_ms(self) -> float:
        return float(self.event("reconcile finished")["ms"])


def rescan(
    root: Path, dsn: str, timeout_s: float = 3600.0, args: tuple[str, ...] = ()
) -> RescanRun:
    """Wall time of a whole ``python -m syncd --rescan --root ROOT`` process."""
    with tempfile.TemporaryFile(mode="w+") as log:
        started = time.perf_counter()
        proc = CHILDREN.popen(
            [sys.executable, "-m", "syncd", "--rescan", "--root", str(root), *args],
            env=syncd_env(dsn),
            cwd=syncd_cwd(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            code = proc.wait(timeout=timeout_s)
        finally:
            CHILDREN.forget(proc)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wall = time.perf_counter() - started
        log.seek(0)
        text = log.read()
    if code != 0:
        raise RuntimeError(f"syncd --rescan exited {code}:\n{text[-3000:]}")
    return RescanRun(wall, code, parse_events(text))


@dataclass
class Daemon:
    """``python -m syncd --root ROOT [args]`` with its JSON log lines collected."""

    root: Path
    dsn: str
    args: tuple[str, ...] = ()
    module: str = "syncd"  # bench.trace: the same daemon with per-stage timestamps
    events: list[dict[str, Any]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self.started = time.monotonic()
        self.proc = CHILDREN.popen(
            [sys.executable, "-m", self.module, "--root", str(self.root), *self.args],
            env=syncd_env(self.dsn),
            cwd=syncd_cwd() if self.module == "syncd" else REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        self.events.append(json.loads(line))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_event(self, name: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for event in self.events:
                    if event.get("event") == name:
                        return event
                if self.proc.poll() is not None:
                    tail = "".join(self.lines[-30:])
                    raise RuntimeError(f"daemon exited ({self.proc.returncode}):\n{tail}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {name!r} from the daemon within {timeout_s}s")
                self._cond.wait(min(left, 0.5))

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds from the start of the process to "daemon ready" (first reconcile done)."""
        self.wait_event("daemon ready", timeout_s)
        return time.monotonic() - self.started

    def count(self, name: str) -> int:
        with self._cond:
            return sum(1 for e in self.events if e.get("event") == name)

    def stop(self, timeout_s: float = 30.0) -> int:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)
        finally:
            CHILDREN.forget(self.proc)
            self._reader.join(timeout=5)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# -- /proc readings --------------------------------------------------------------------


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clock_ticks()


def status_kb(pid: int, key: str) -> int:
    """A ``kB`` line of /proc/<pid>/status, e.g. VmHWM (peak RSS) or VmRSS."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


def poll_until(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()
