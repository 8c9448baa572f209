"""Save to row measured from outside, the way an operator would: the real ``syncd`` daemon
in its own process, single saves (open, write, close) a few hundred ms apart, and the
database watched by another process.

``python -m bench.outside [--saves 40] [--gap-ms 400] [--lessons 3] [--poll-ms 3]`` starts a
PostgreSQL (the pgserver wheel, as bench/pg.py), writes a small course (``--lessons``, 3 by
default, like the report in issue 16), starts ``python -m syncd --root TREE`` with
DATABASE_URL and JSON logs, waits for "daemon ready", then:

1. outside: ``--saves`` single saves, one every ``--gap-ms``. Each save rewrites a
   lesson's ``**Revisão:**`` label with a new token in place (``open(path, "w")``, write,
   close). Its time starts just before the open. A poller *process* (``python -m
   bench.outside poll``: its own interpreter and its own connection, so it never shares a
   GIL with the writer) runs the same query every ``--poll-ms`` and prints each label it
   sees change, stamped with ``time.monotonic()`` (CLOCK_MONOTONIC, the same clock in every
   process) after the query returned. A save's latency is (that stamp) - (before the open):
   an upper bound, at most one poll interval plus one query late; the report gives the poll
   interval it achieved.
2. in the bench's own way (``bench.latency.single_saves``, docs/benchmarks.md's older
   ``save_to_row`` row), on the same daemon: a poller thread inside the bench process, the
   time starting after the write returned, the next save 50 ms after the row was seen.

Both are printed side by side (p50/p90/p99/max) with the load average. With
``--trace`` the daemon runs as ``python -m bench.trace`` (the same code, with timestamps at
each stage) and the per-stage breakdown of the saves is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml

from bench import gen, latency, procs
from bench.delayproxy import DelayProxy
from bench.pg import BenchServer
from bench.report import git_revision, load_average, median, percentile

_RUNS = itertools.count()
POLL_QUERY = (
    "SELECT file_path, metadata->'labels'->>%(label)s FROM public.contents "
    "WHERE file_path = ANY(%(paths)s::text[]) AND deleted_at IS NULL"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the tree ---------------------------------------------------------------------------


def small_course(root: Path, lessons: int, prefix: str = "outside") -> tuple[str, list[Path]]:
    """One course of ``lessons`` lessons (1..20): a generated 20-lesson course cut down,
    its curriculum.yaml listing only the lessons kept."""
    name = gen.write_course(root, 0, prefix=prefix)
    folder = root / name
    curriculum = yaml.safe_load((folder / "curriculum.yaml").read_text(encoding="utf-8"))
    kept: list[Path] = []
    modules = []
    for module in curriculum["modules"]:
        entries = []
        for entry in module["lessons"]:
            path = folder / entry["file_path"]
            if len(kept) < lessons:
                kept.append(path)
                entries.append(entry)
            else:
                path.unlink()
        if entries:
            modules.append({**module, "lessons": entries})
    curriculum["modules"] = modules
    curriculum["metadata"]["num_modules"] = len(modules)
    curriculum["metadata"]["num_lessons"] = len(kept)
    (folder / "curriculum.yaml").write_text(
        yaml.safe_dump(curriculum, allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return name, kept


def with_token(text: str, token: str) -> str:
    head, sep, rest = text.partition(f"**{gen.REVISION_LABEL}:** ")
    if not sep:
        raise ValueError("no revision label")
    return f"{head}{sep}{token}{rest[rest.index(chr(10)) :]}"


# -- the poller process -----------------------------------------------------------------


def poll_main(dsn: str, paths: list[str], poll_s: float) -> int:
    """Poll the labels of ``paths``; print a JSON line for every change seen. Runs until
    stdin closes; then prints the achieved poll intervals."""
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    seen: dict[str, str | None] = {}
    intervals: list[float] = []
    queries: list[float] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        params = {"label": gen.REVISION_LABEL, "paths": paths}
        previous_start: float | None = None
        while not stop.is_set():
            started = time.monotonic()
            rows = conn.execute(POLL_QUERY, params).fetchall()
            returned = time.monotonic()
            if previous_start is not None:
                intervals.append(started - previous_start)
            queries.append(returned - started)
            for path, label in rows:
                if seen.get(path, "") != label:
                    seen[path] = label
                    line = {"path": path, "label": label, "seen": returned, "started": started}
                    print(json.dumps(line), flush=True)
            previous_start = started
            stop.wait(max(0.0, poll_s - (time.monotonic() - started)))
    print(
        json.dumps(
            {
                "poll_interval_ms_p50": median(intervals) * 1000 if intervals else None,
                "poll_interval_ms_max": max(intervals) * 1000 if intervals else None,
                "query_ms_p50": median(queries) * 1000 if queries else None,
                "polls": len(queries),
            }
        ),
        flush=True,
    )
    return 0


@dataclass
class Poller:
    """The poller process and what it has reported."""

    dsn: str
    paths: list[str]
    poll_s: float
    changes: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        argv = [sys.executable, "-m", "bench.outside", "poll", self.dsn, str(self.poll_s)]
        self.proc = procs.CHILDREN.popen(
            [*argv, *self.paths],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            record = json.loads(line)
            with self._cond:
                if "path" in record:
                    self.changes.append(record)
                else:
                    self.stats = record
                self._cond.notify_all()

    def wait_for(self, path: str, label: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for change in reversed(self.changes):
                    if change["path"] == path and change["label"] == label:
                        return change
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"{path} never showed {label!r} within {timeout_s}s")
                self._cond.wait(min(left, 0.5))

    def close(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.proc.wait(timeout=10)
        self._reader.join(timeout=5)
        procs.CHILDREN.forget(self.proc)


# -- the measurement ---------------------------------------------------------------------


@dataclass
class Save:
    path: str
    token: str
    before_open: float
    closed: float
    seen: float
    poll_started: float

    @property
    def latency_ms(self) -> float:
        return (self.seen - self.before_open) * 1000


def outside_saves(
    root: Path, lessons: list[Path], dsn: str, *, saves: int, gap_s: float, poll_s: float
) -> tuple[list[Save], dict[str, Any]]:
    """``saves`` in-place saves, one every ``gap_s``, round robin over ``lessons``; each
    waited for (seen by the poller process) before the next."""
    rels = [str(p.relative_to(root)) for p in lessons]
    run = next(_RUNS)  # tokens unique to this call: a tree saved into before holds older ones
    poller = Poller(dsn, rels, poll_s)
    done: list[Save] = []
    try:
        time.sleep(0.5)  # the poller connected and saw the current labels
        texts = {p: p.read_text(encoding="utf-8") for p in lessons}
        next_at = time.monotonic()
        for k in range(saves):
            path, rel = lessons[k % len(lessons)], rels[k % len(lessons)]
            token = f"out{os.getpid()}r{run}x{k:05d}"
            data = with_token(texts[path], token).encode("utf-8")
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            before_open = time.monotonic()
            with open(path, "wb") as out:
                out.write(data)
            closed = time.monotonic()
            next_at = before_open + gap_s
            change = poller.wait_for(rel, token, timeout_s=30)
            done.append(Save(rel, token, before_open, closed, change["seen"], change["started"]))
    finally:
        poller.close()
    return done, poller.stats


def summary(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    return (
        f"p50 {percentile(samples, 50):.1f} ms, p90 {percentile(samples, 90):.1f} ms, "
        f"p99 {percentile(samples, 99):.1f} ms, max {max(samples):.1f} ms (n={len(samples)})"
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    load_start = load_average()
    with BenchServer() as server, server.fresh_database() as db, contextlib.ExitStack() as stack:
        dsn = server.dsn(db)
        tmp = Path(server.tmp) / "tree"
        tmp.mkdir()
        _course, lessons = small_course(tmp, args.lessons)
        module = "bench.trace" if args.trace else "syncd"
        daemon_dsn = dsn
        if args.link_delay_ms:  # the daemon's link only: the poller stays on the socket
            proxy = stack.enter_context(DelayProxy(server.socket_path, args.link_delay_ms))
            daemon_dsn = server.dsn(db, proxy.port)
        daemon = procs.Daemon(tmp, daemon_dsn, tuple(args.daemon_arg), module=module)
        try:
            ready_s = daemon.wait_ready(timeout_s=120)
            log(f"daemon ready after {ready_s:.2f}s; {args.saves} saves {args.gap_ms} ms apart")
            time.sleep(1.0)
            cpu_before = procs.cpu_seconds(daemon.pid)
            saves, poll_stats = outside_saves(
                tmp,
                lessons,
                dsn,
                saves=args.saves,
                gap_s=args.gap_ms / 1000,
                poll_s=args.poll_ms / 1000,
            )
            cpu_ms_per_save = (procs.cpu_seconds(daemon.pid) - cpu_before) * 1000 / len(saves)
            log(f"outside: {summary([s.latency_ms for s in saves])}")
            inside: list[float] = []
            if args.inside:
                tree = gen.Tree(tmp, (_course,), len(lessons))
                inside = [
                    s * 1000 for s in latency.single_saves(tree, dsn, args.inside, atomic=False)
                ]
                log(f"bench's own way: {summary(inside)}")
            time.sleep(0.5)
        finally:
            daemon.stop()
    outside_ms = [s.latency_ms for s in saves]
    result: dict[str, Any] = {
        "commit": git_revision(),
        "load_average_at_start": load_start,
        "load_average_at_end": load_average(),
        "lessons": args.lessons,
        "gap_ms": args.gap_ms,
        "poll": poll_stats,
        "daemon_cpu_ms_per_save": cpu_ms_per_save,
        "outside_ms": outside_ms,
        "close_ms": [(s.closed - s.before_open) * 1000 for s in saves],
        "inside_ms": inside,
        "outside": summary(outside_ms),
        "inside": summary(inside),
    }
    result["daemon_events"] = {
        name: sum(1 for e in daemon.events if e.get("event") == name)
        for name in ("course synced", "course skipped", "file rejected")
    }
    if args.trace:
        from bench.trace import breakdown

        result["breakdown"] = breakdown(daemon.events, saves)
        result["trace"] = [e for e in daemon.events if e.get("event") == "trace"]
        result["saves"] = [vars(s) for s in saves]
    return result


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "poll":
        return poll_main(argv[1], argv[3:], float(argv[2]))
    parser = argparse.ArgumentParser(prog="python -m bench.outside", description=__doc__)
    parser.add_argument("--saves", type=int, default=40)
    parser.add_argument("--gap-ms", type=int, default=400, help="from one save's open to the next")
    parser.add_argument("--lessons", type=int, default=3, help="lessons in the course (1-20)")
    parser.add_argument("--poll-ms", type=float, default=3.0)
    parser.add_argument(
        "--inside", type=int, default=40, help="saves measured the bench's own way (0: none)"
    )
    parser.add_argument("--trace", action="store_true", help="per-stage breakdown (bench.trace)")
    parser.add_argument(
        "--link-delay-ms",
        type=float,
        default=0.0,
        help="the daemon reaches the database through bench/delayproxy.py, this delay each way",
    )
    parser.add_argument(
        "--daemon-arg", action="append", default=[], help="one more syncd argument (repeatable)"
    )
    parser.add_argument("--out", type=Path, help="JSON results file")
    args = parser.parse_args(argv)
    try:
        result = run(args)
    finally:
        procs.CHILDREN.kill_all()
    print(f"commit {result['commit']}; load average {result['load_average_at_start']} at start")
    print(f"outside probe ({args.lessons}-lesson course, saves {args.gap_ms} ms apart, poller")
    poll = result["poll"]
    print(
        f"  process every {args.poll_ms:g} ms, achieved p50 "
        f"{poll.get('poll_interval_ms_p50') or 0:.1f} ms, max "
        f"{poll.get('poll_interval_ms_max') or 0:.1f} ms): {result['outside']}"
    )
    print(f"bench's own way (thread poller, after the write, 50 ms apart): {result['inside']}")
    print(f"daemon log: {result['daemon_events']}")
    print(f"daemon CPU per save (utime+stime): {result['daemon_cpu_ms_per_save']:.1f} ms")
    for line in result.get("breakdown", []):
        print(line)
    print(f"load average at end {result['load_average_at_end']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
