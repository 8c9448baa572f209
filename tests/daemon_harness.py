"""Run `syncd` as a real subprocess and watch its JSON log lines."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def syncd_env(dsn: str) -> dict[str, str]:
    """The environment of a syncd subprocess: this one's, without the caller's SYNCD_*
    settings (but keeping SYNCD_SCHEMA_DIR), pointed at ``dsn``, logging JSON."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("SYNCD_") or k == "SYNCD_SCHEMA_DIR"
    }
    env.update({"DATABASE_URL": dsn, "SYNCD_LOG_FORMAT": "json"})
    return env


def run_syncd(*args: str, dsn: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """One `syncd` command as a subprocess, logging JSON, pointed at ``dsn``."""
    return subprocess.run(
        [sys.executable, "-m", "syncd", *args],
        cwd=REPO,
        env=syncd_env(dsn),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class DaemonProcess:
    def __init__(
        self,
        root: Path,
        dsn: str,
        *args: str,
        env: dict[str, str] | None = None,
        wrap: Sequence[str] = (),
    ) -> None:
        """``wrap``: a command that runs syncd (``exec "$@"``), e.g. in a user namespace."""
        full_env = {**syncd_env(dsn), "PYTHONUNBUFFERED": "1"}
        full_env.update(env or {})
        self.proc = subprocess.Popen(
            [
                *wrap,
                sys.executable,
                "-m",
                "syncd",
                "--root",
                str(root),
                "--heartbeat",
                "1",
                *args,
            ],
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line)
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        self.events.append(json.loads(line))
                self._cond.notify_all()

    def named(self, event: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e for e in self.events if e.get("event") == event]

    def wait_for(
        self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            if self.proc.poll() is not None:
                # its last lines may still be in the pipe: judged once the reader has them all
                self._reader.join(timeout=max(deadline - time.monotonic(), 5.0))
                if predicate():
                    return
                raise AssertionError(
                    f"daemon exited ({self.proc.returncode}) before: {what}\n{self.output()}"
                )
            time.sleep(0.05)
        raise AssertionError(
            f"timed out after {timeout}s waiting for: {what}\n{self.output()[-4000:]}"
        )

    def wait_event(self, event: str, count: int = 1, timeout: float = 30.0) -> dict[str, Any]:
        self.wait_for(lambda: len(self.named(event)) >= count, timeout, f"{count}x {event!r}")
        return self.named(event)[count - 1]

    def wait_exit(self, timeout: float = 30.0) -> int:
        """The exit code of a process that ends on its own, once the reader has read every
        line it wrote (``proc.wait`` returns before the reader has the last ones)."""
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=timeout)
        assert not self._reader.is_alive(), "the daemon exited but its output stayed open"
        return code

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._reader.join(timeout=5)

    def output(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
