"""`syncd health`: the daemon's own state, read without touching the database. Healthy
while it runs and syncs; unhealthy when it stalls or the database stays away too long."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from syncd import health
from syncd.exits import ExitCode
from tests.daemon_harness import REPO, DaemonProcess, syncd_env
from tests.helpers import lesson_text, make_course, write
from tests.proxy import proxy_in_front_of

NOW = 1_800_000_000.0


def state(**changes: object) -> health.HealthState:
    fields: dict[str, object] = {
        "written_at": NOW,
        "pid": os.getpid(),
        "ready": True,
        "writer_responsive": True,
        "observer_alive": True,
        "breaker": "closed",
        "unreachable_since": None,
        "pending": 0,
        "lag_s": 0.0,
        "last_sync": "2026-11-27T05:00:00Z",
    }
    fields.update(changes)
    return health.HealthState(**fields)  # type: ignore[arg-type]


def judge(path: Path, now: float = NOW) -> tuple[bool, str]:
    return health.verdict(path, stalled_after_s=30, unreachable_after_s=60, now=now)


def test_the_verdict_names_each_way_of_being_unhealthy(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    assert judge(path) == (
        False,
        f"no health file at {path}: is the daemon running (same --data-dir)?",
    )
    health.write(path, state())
    assert judge(path)[0] and judge(path)[1].startswith("healthy: ready, breaker closed")
    assert judge(path, NOW + 31) == (
        False,
        "stalled: the daemon has not written its state for 31 s",
    )
    health.write(path, state(writer_responsive=False))
    assert "the writer has made no progress" in judge(path)[1]
    health.write(path, state(observer_alive=False))
    assert judge(path) == (False, "stalled: the watcher is not running")
    health.write(path, state(breaker="open", unreachable_since=NOW - 59, pending=2))
    assert judge(path)[0]  # away, but not for long yet
    health.write(path, state(breaker="half-open", unreachable_since=NOW - 61, pending=2))
    assert judge(path) == (
        False,
        "database unreachable for 61 s (breaker half-open), 2 course(s) pending",
    )
    health.write(path, state(root_problem="/courses is missing"))
    assert judge(path) == (False, "course root unavailable: /courses is missing")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    health.write(path, state(pid=int(dead.stdout)))
    assert judge(path)[1] == f"the daemon (pid {int(dead.stdout)}) is not running"


def syncd_health(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncd", "health", "--health-file", str(path), *args],
        cwd=REPO,
        env={k: v for k, v in syncd_env("").items() if k != "DATABASE_URL"},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def wait_health(path: Path, code: int, *args: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while True:
        done = syncd_health(path, *args)
        if done.returncode == code:
            return done.stdout
        assert time.monotonic() < deadline, (
            f"syncd health stayed {done.returncode}: {done.stdout}{done.stderr}"
        )
        time.sleep(0.5)


def test_syncd_health_follows_the_daemon_through_an_outage_a_hang_and_a_stop(
    tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "existing", lessons=2)
    path = tmp_path / "state" / "health.json"
    proxy, through_proxy = proxy_in_front_of(db_dsn)
    daemon = DaemonProcess(
        root,
        through_proxy,
        "--health-file",
        str(path),
        "--breaker-failures",
        "1",
        "--breaker-reset",
        "3",
    )
    try:
        daemon.wait_event("daemon ready", timeout=60)
        assert wait_health(path, ExitCode.OK).startswith("healthy: ready, breaker closed")

        proxy.refuse()  # the database goes away; an edit makes the daemon find out
        write(root / "existing/lessons/1.3-during.md", lesson_text(1, 3))
        daemon.wait_event("breaker opened", timeout=60)
        out = wait_health(path, ExitCode.UNHEALTHY, "--unreachable-after", "2")
        assert out.startswith("database unreachable for") and "1 course(s) pending" in out
        assert syncd_health(path, "--unreachable-after", "600").returncode == 0  # threshold

        proxy.heal()
        daemon.wait_event("breaker closed", timeout=90)
        wait_health(path, ExitCode.OK, "--unreachable-after", "2")

        os.kill(daemon.proc.pid, signal.SIGSTOP)  # hung
        try:
            out = wait_health(path, ExitCode.UNHEALTHY, "--stalled-after", "3")
            assert out.startswith("stalled: the daemon has not written its state")
        finally:
            os.kill(daemon.proc.pid, signal.SIGCONT)
        wait_health(path, ExitCode.OK, "--stalled-after", "3")

        assert daemon.terminate() == 0
        out = syncd_health(path)
        assert out.returncode == ExitCode.UNHEALTHY and out.stdout.startswith("no health file")
        assert not list(path.parent.glob(".*tmp"))  # health writes nothing of its own
    finally:
        daemon.kill()
        proxy.close()


def test_the_verdict_says_what_kind_of_outage_and_names_stuck_courses(tmp_path: Path) -> None:
    """Issue 16: a rejected password, a full disk and a course stuck behind a lock each have
    their own reason; a course whose data is refused is named but is not the daemon's ill."""
    path = tmp_path / "health.json"
    away = {"breaker": "open", "unreachable_since": NOW - 61, "pending": 1}
    health.write(
        path,
        state(**away, breaker_kind="auth", breaker_reason="password authentication failed"),
    )
    assert judge(path)[1].startswith("database rejects syncd's password for 61 s")
    health.write(path, state(**away, breaker_kind="disk-full", breaker_reason="53100"))
    assert judge(path)[1].startswith("database disk full for 61 s")

    def failing(kind: str, for_s: float) -> health.Failing:
        return health.Failing("c1", kind, "lock timeout (SQLSTATE 55P03)", "55P03", NOW - for_s, 4)

    health.write(path, state(failing=[failing("busy", 80)]))
    assert judge(path) == (
        False,
        "1 course(s) stuck: c1 (lock timeout (SQLSTATE 55P03), 80 s)",
    )
    health.write(path, state(failing=[failing("busy", 10)]))  # not for long yet
    healthy, why = judge(path)
    assert healthy and why.endswith("1 course(s) failing: c1 (lock timeout (SQLSTATE 55P03), 10 s)")
    health.write(path, state(failing=[failing("refused", 600)]))  # the content's problem
    assert judge(path)[0]
