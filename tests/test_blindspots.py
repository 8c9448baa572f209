"""Issue 16, item 4: a folder the inotify watch limit leaves unwatched at runtime is said
(an event, a health reason, a verify line), polled so that its edits still land, and
watched again once the limit allows."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd import health
from syncd.blindspots import BlindSpotKeeper, BlindSpots
from syncd.watcher import OverflowDetector, UnwatchedDetector
from tests.daemon_harness import REPO, DaemonProcess, syncd_env
from tests.helpers import Clock, lesson_text, make_course, write
from tests.proxy import Proxy, proxy_in_front_of
from tests.test_daemon import documented_alerts, run_alert

# -- the bookkeeping, in-process (clock passed in) -----------------------------------------


def test_each_unwatched_folder_is_said_once_and_retried_from_the_outermost() -> None:
    clock = Clock()
    spots = BlindSpots(clock, retry_s=30)
    spots.unwatched("c1", "limit")
    spots.unwatched("c1/lessons", "limit")
    spots.unwatched("c2/lessons", "limit")
    spots.unwatched("c1", "limit")  # reported again by watchdog: still one folder
    assert [s.path for s in spots.news()] == ["c1", "c1/lessons", "c2/lessons"]
    assert spots.news() == []  # said once
    assert spots.paths() == ["c1", "c1/lessons", "c2/lessons"]
    assert spots.retry_due() == []  # not before retry_s
    clock.now += 30
    assert spots.retry_due() == ["c1", "c2/lessons"]  # c1's watch will cover c1/lessons
    spots.retry_later("c2/lessons")  # still at the limit
    assert [s.path for s in spots.watched("c1")] == ["c1", "c1/lessons"]
    assert spots.retry_due() == []
    clock.now += 30
    assert spots.retry_due() == ["c2/lessons"]
    spots.unwatched("c1", "limit")  # blind again later: said again
    assert [s.path for s in spots.news()] == ["c1"]
    assert [s.path for s in spots.all_watched()] == ["c1", "c2/lessons"]
    assert not spots


def test_a_polled_course_is_marked_once_its_files_changed_and_stayed_still_for_a_poll() -> None:
    spots = BlindSpots(Clock())
    spots.unwatched("c1/lessons", "limit")
    spots.unwatched("", "limit")  # the root itself: every course is polled
    assert spots.polled_courses(lambda: ["a", "c1"]) == ["a", "c1"]
    spots.watched("")
    spots.unwatched("c1/lessons", "limit")
    assert spots.polled_courses(lambda: ["a", "c1"]) == ["c1"]
    # what happened before the polls began is not known: the second poll marks it
    assert [spots.changed("c1", b"v1") for _ in range(3)] == [False, True, False]
    assert spots.changed("c1", b"v2") is False  # being written: not taken half-done
    assert spots.changed("c1", b"v3") is False
    assert spots.changed("c1", b"v3") is True  # still for one poll
    assert spots.changed("c1", b"v3") is False


def record(msg: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    return logging.LogRecord(
        "watchdog.observers.inotify",
        logging.WARNING,
        __file__,
        1,
        msg,
        args,
        (type(exc), exc, None) if exc is not None else None,
    )


def test_the_detector_reads_watchdogs_record_not_its_wording() -> None:
    found: list[str | bytes] = []
    detector = UnwatchedDetector(found.append)
    limit = OSError(errno.ENOSPC, "inotify watch limit reached")
    detector.emit(record("Unable to watch %r: %s", b"/r/c1/lessons", limit))
    detector.emit(record("Could not add a watch on %s (%s)", "/r/c2", limit))  # reworded
    detector.emit(record("Unable to rebuild watches below %r", b"/r", exc=limit))
    detector.emit(record("Unable to watch %r: %s", b"/r/c3", OSError(errno.EACCES, "denied")))
    detector.emit(record("Inotify queue overflowed; filesystem events were lost"))
    assert found == [b"/r/c1/lessons", "/r/c2", b"/r"]
    overflows: list[int] = []
    OverflowDetector(lambda: overflows.append(1)).emit(
        record("Unable to watch %r: %s", b"/r/c1", limit)
    )
    assert overflows == []  # a folder not watched is not an overflow


NOW = 1_800_000_000.0


def test_health_names_the_folders_not_watched_as_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "health.json"
    state = health.HealthState(
        written_at=NOW,
        pid=os.getpid(),
        ready=True,
        writer_responsive=True,
        observer_alive=True,
        breaker="closed",
        unreachable_since=None,
        pending=0,
        lag_s=0.0,
        last_sync="2026-12-06T21:00:00Z",
        unwatched=[f"c{n}" for n in range(7)],
    )
    health.write(path, state)
    healthy, why = health.verdict(path, stalled_after_s=30, unreachable_after_s=60, now=NOW)
    assert healthy, why
    assert why.startswith("healthy, but 7 folder(s) not watched")
    assert "fs.inotify.max_user_watches" in why and "c0, c1, c2, c3, c4 and 2 more" in why
    assert health.unwatched(path, stalled_after_s=30, now=NOW) == [f"c{n}" for n in range(7)]
    assert health.unwatched(path, stalled_after_s=30, now=NOW + 31) == []  # stale: no daemon


# -- the daemon, under a watch limit of its own -------------------------------------------


def _user_namespaces_work() -> bool:
    """A user namespace has its own inotify watch limit (/proc/sys/user/max_inotify_watches,
    Linux ≥ 5.11): lowering it there touches no other process on the machine."""
    if not shutil.which("unshare") or not shutil.which("nsenter"):
        return False
    probe = subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "sh",
            "-c",
            "echo 100 > /proc/sys/user/max_inotify_watches",
        ],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def limited(watches: int) -> list[str]:
    """Run a command in a new user namespace allowed ``watches`` inotify watches."""
    script = f'echo {watches} > /proc/sys/user/max_inotify_watches && exec "$@"'
    return ["unshare", "--user", "--map-root-user", "sh", "-c", script, "sh"]


def set_limit(pid: int, watches: int) -> None:
    subprocess.run(
        [
            "nsenter",
            "--user",
            "--target",
            str(pid),
            "sh",
            "-c",
            f"echo {watches} > /proc/sys/user/max_inotify_watches",
        ],
        check=True,
    )


def live_lessons(dsn: str, course: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            """select count(*) from contents c join content_projects p on p.id = c.project_id
            where p.slug = %s and c.content_type = 'course_lesson' and c.deleted_at is null""",
            (course,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def atomic_write(path: Path, text: str) -> None:
    temp = path.parent / f".{path.name}.tmp"
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def health_json(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return loaded


@pytest.fixture
def through_tcp(db_dsn: str) -> Iterator[str]:
    """The database over TCP: in its user namespace, syncd cannot open the server's unix
    socket (owned by a user not mapped there)."""
    proxy: Proxy
    proxy, dsn = proxy_in_front_of(db_dsn)
    try:
        yield dsn
    finally:
        proxy.close()


@pytest.mark.skipif(not _user_namespaces_work(), reason="needs user namespaces (unshare)")
def test_folders_moved_in_beyond_the_watch_limit_are_said_polled_and_watched_again(
    tmp_path: Path, db_dsn: str, through_tcp: str, daemons: list[DaemonProcess]
) -> None:
    """Reported: 60 course folders moved in under a low fs.inotify.max_user_watches; 20 got
    no watch, their edits never landed, health said healthy and nothing but watchdog's
    library warnings said why."""
    root = tmp_path / "courses"
    make_course(root, "existing", lessons=2)
    folders = sum(1 for p in root.rglob("*") if p.is_dir()) + 1  # the root too
    health_file = tmp_path / "health.json"
    daemon = DaemonProcess(
        root,
        through_tcp,
        "--health-file",
        str(health_file),
        env={"SYNCD_WATCH_RETRY": "1"},
        wrap=limited(folders + 3),  # three folders more, no other process touched
    )
    daemons.append(daemon)
    daemon.wait_event("daemon ready", timeout=60)

    outside = tmp_path / "outside"
    for n in range(1, 7):  # each is two folders (the course and its lessons)
        make_course(outside, f"moved-{n}", lessons=1)
        os.rename(outside / f"moved-{n}", root / f"moved-{n}")
    blind = daemon.wait_event("folder not watched")
    assert "fs.inotify.max_user_watches" in blind["reason"], blind
    daemon.wait_for(
        lambda: all(live_lessons(db_dsn, f"moved-{n}") == 1 for n in range(1, 7)),
        what="every moved-in course synced",
    )
    course = blind["course"]
    assert course.startswith("moved-")
    # Every folder's watch was tried before the move's event reached syncd, so before those
    # syncs; each is said at the supervisor's next tick, which may come after the rows (and
    # its line is read a moment later still). A tick begun after now has said them all, and
    # logs its heartbeat after them: the second heartbeat stamped after now is of such a tick.
    synced_at = time.time()
    daemon.wait_for(
        lambda: (
            sum(
                datetime.fromisoformat(e["timestamp"]).timestamp() > synced_at
                for e in daemon.named("heartbeat")
            )
            >= 2
        ),
        what="a supervisor tick after the moved-in courses synced",
    )

    # an edit in a course nobody watches lands: it is polled
    atomic_write(root / course / "lessons" / "1.2-polled.md", lesson_text(1, 2))
    daemon.wait_for(lambda: live_lessons(db_dsn, course) == 2, what=f"the edit in {course}")

    unwatched = sorted(e["path"] for e in daemon.named("folder not watched"))
    log = tmp_path / "syncd.log"
    log.write_text("".join(daemon.lines), encoding="utf-8")
    alert = documented_alerts()[
        "folders syncd cannot watch (inotify watch limit): polled until"
        " fs.inotify.max_user_watches is raised"
    ]
    assert sorted(run_alert(alert, log)) == unwatched  # the alert of docs/monitoring.md, as written
    daemon.wait_for(
        lambda: sorted(health_json(health_file).get("unwatched", [])) == unwatched,
        what="the health file naming the folders",
    )
    env = syncd_env(db_dsn)
    said = subprocess.run(
        [sys.executable, "-m", "syncd", "health", "--health-file", str(health_file)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert said.returncode == 0, said.stdout  # polled: edits land (see docs/monitoring.md)
    assert said.stdout.startswith(f"healthy, but {len(unwatched)} folder(s) not watched")
    checked = subprocess.run(
        [
            *[sys.executable, "-m", "syncd", "verify", "--root", str(root)],
            *["--health-file", str(health_file)],
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr  # not a drift
    lines = [line for line in checked.stdout.splitlines() if line.startswith("unwatched")]
    assert sorted(line.split()[1] for line in lines) == unwatched, checked.stdout
    assert "not watched by the running daemon" in checked.stderr

    set_limit(daemon.proc.pid, 100_000)  # the operator raises the limit
    daemon.wait_for(
        lambda: sorted(e["path"] for e in daemon.named("folder watched again")) == unwatched,
        what="every folder watched again",
    )
    atomic_write(root / course / "lessons" / "1.3-watched.md", lesson_text(1, 3))
    daemon.wait_for(lambda: live_lessons(db_dsn, course) == 3, what="an edit, watched")
    daemon.wait_for(
        lambda: health_json(health_file).get("unwatched") == [], what="health: all watched"
    )
    assert daemon.terminate() == 0


@pytest.mark.skipif(not _user_namespaces_work(), reason="needs user namespaces (unshare)")
def test_a_tree_beyond_the_watch_limit_at_start_is_exit_2_naming_the_sysctl(
    tmp_path: Path, through_tcp: str, daemons: list[DaemonProcess]
) -> None:
    """At start the limit is a configuration error, as before: nothing runs half-blind."""
    root = tmp_path / "courses"
    make_course(root, "existing", lessons=2)
    folders = sum(1 for p in root.rglob("*") if p.is_dir()) + 1
    daemon = DaemonProcess(root, through_tcp, wrap=limited(folders - 1))
    daemons.append(daemon)
    assert daemon.proc.wait(timeout=60) == 2
    daemon.kill()  # joins the reader
    assert "fs.inotify.max_user_watches" in daemon.output()
    assert "--polling" in daemon.output()
    assert not daemon.named("folder not watched")


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def _say(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    info = warning = error = _say

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.lines if name == event]


class LimitedObserver:
    """schedule() as watchdog's: all or nothing, ENOSPC while the limit is reached."""

    def __init__(self) -> None:
        self.full = True
        self.tried: list[str] = []
        self.watches: list[str] = []
        self.unscheduled: list[Any] = []

    def schedule(self, _handler: object, path: str, *, recursive: bool) -> str:
        assert recursive
        self.tried.append(path)
        if self.full:
            raise OSError(errno.ENOSPC, "inotify watch limit reached")
        self.watches.append(path)
        return path

    def unschedule(self, watch: Any) -> None:
        self.unscheduled.append(watch)


def test_the_keeper_says_polls_retries_and_drops_a_watch_whose_folder_went(
    tmp_path: Path,
) -> None:
    root = tmp_path / "courses"
    make_course(root, "c1", lessons=1)
    make_course(root, "c2", lessons=1)
    clock, log, observer, marked = Clock(), Log(), LimitedObserver(), []
    keeper = BlindSpotKeeper(
        BlindSpots(clock, retry_s=30), root, lambda: observer, None, marked.append, log, clock
    )
    keeper.on_unwatched(os.fsencode(root / "c1"))
    keeper.on_unwatched(str(root / "c1" / "lessons"))
    keeper.on_unwatched(str(root / "c2"))
    keeper.on_unwatched(str(root / ".git" / "objects"))  # hidden: nothing syncd reads
    keeper.on_unwatched(str(root / "c1" / ".git" / "objects"))  # nor here
    keeper.on_unwatched(str(root / "c1" / "sources" / "raw"))  # nor in sources/
    keeper.on_unwatched("/elsewhere/x")  # outside the root
    keeper.tick()
    said = log.named("folder not watched")
    assert [(s["course"], s["path"]) for s in said] == [
        ("c1", "c1"),
        ("c1", "c1/lessons"),
        ("c2", "c2"),
    ]
    assert "fs.inotify.max_user_watches" in said[0]["reason"]
    assert keeper.unwatched() == ["c1", "c1/lessons", "c2"]
    for _ in range(3):
        clock.now += 1
        keeper.tick()
    assert marked == ["c1", "c2"]  # once: their files are as they were at the second poll
    write(root / "c1" / "lessons" / "1.2-new.md", lesson_text(1, 2))
    for _ in range(2):
        clock.now += 1
        keeper.tick()
    assert marked == ["c1", "c2", "c1"]  # the edit, seen by polling
    clock.now += 30
    keeper.tick()  # still at the limit: c1 tried, and c2 not even tried
    assert observer.tried == [str(root / "c1")] and observer.watches == []
    assert keeper.unwatched() == ["c1", "c1/lessons", "c2"]
    observer.full = False
    clock.now += 30
    keeper.tick()
    assert observer.watches == [str(root / "c1"), str(root / "c2")]  # outermost, recursively
    again = log.named("folder watched again")
    assert [a["path"] for a in again] == ["c1", "c1/lessons", "c2"]
    assert keeper.unwatched() == [] and marked[-2:] == ["c1", "c2"]
    shutil.rmtree(root / "c1")
    keeper.tick()
    assert observer.unscheduled == [str(root / "c1")]  # its events would carry a stale path


def test_a_root_watch_that_lost_every_watch_is_replaced_once_the_limit_allows(
    tmp_path: Path,
) -> None:
    """watchdog rebuilds its watches after a queue overflow; when even the root's fails, it
    logs the exception and watches nothing: every course is polled until the root's watch
    is replaced."""
    root = tmp_path / "courses"
    make_course(root, "c1", lessons=1)
    make_course(root, "c2", lessons=1)
    clock, log, observer, marked = Clock(), Log(), LimitedObserver(), []
    keeper = BlindSpotKeeper(
        BlindSpots(clock, retry_s=30), root, lambda: observer, None, marked.append, log, clock
    )
    UnwatchedDetector(keeper.on_unwatched).emit(
        record(
            "Unable to rebuild recursive inotify watches below %r",
            os.fsencode(root),
            exc=OSError(errno.ENOSPC, "inotify watch limit reached"),
        )
    )
    keeper.tick()
    assert [(s["course"], s["path"]) for s in log.named("folder not watched")] == [(None, ".")]
    clock.now += 1
    keeper.tick()
    assert marked == ["c1", "c2"]  # every course, polled
    clock.now += 30
    keeper.tick()
    assert observer.watches == [] and keeper.unwatched() == ["."]
    observer.full = False
    clock.now += 30
    keeper.tick()
    assert observer.unscheduled and observer.watches == [str(root)]
    assert [a["path"] for a in log.named("folder watched again")] == ["."]
    assert keeper.unwatched() == [] and marked[-2:] == ["c1", "c2"]
