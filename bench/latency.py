"""Change-to-commit latency with the daemon running, seen from outside.

An edit rewrites a lesson's ``**Revisão:**`` label with a unique token (write a hidden
temporary file, then ``os.replace`` it over the lesson: an atomic rename, which is how a
careful generator writes). A poller thread queries the database every ``POLL_S`` for the
tokens still pending (the label lands in ``contents.metadata->'labels'``) and stamps each
one when it first sees it. The latency of an edit is (time the query that first saw its
token returned) - (time its rename returned): an upper bound, at most one poll interval
plus one query late (``track_commit_timestamp`` is off on the default server, so commit
times are not available from PostgreSQL itself).
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bench import gen

POLL_S = 0.005
PENDING_QUERY = (
    "SELECT file_path, metadata->'labels'->>%(label)s FROM public.contents "
    "WHERE file_path = ANY(%(paths)s::text[]) AND deleted_at IS NULL"
)
BURST_QUERY = (
    "SELECT count(*) FROM public.contents c JOIN public.content_projects p "
    "ON p.id = c.project_id WHERE p.slug = %(slug)s AND c.content_type = 'course_lesson' "
    "AND c.deleted_at IS NULL"
)


def write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.bench-tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


@dataclass
class TokenPoller:
    """Watches the database for edit tokens; ``latencies`` in seconds once seen."""

    dsn: str
    latencies: list[float] = field(default_factory=list)
    poll_times: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        # file_path -> tokens written to it, oldest first, not yet seen
        self._pending: dict[str, list[tuple[str, float]]] = {}
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="bench-poller", daemon=True)
        self._thread.start()

    def expect(self, file_path: str, token: str, edited_at: float) -> None:
        with self._lock:
            self._pending.setdefault(file_path, []).append((token, edited_at))

    def outstanding(self) -> int:
        with self._lock:
            return sum(len(tokens) for tokens in self._pending.values())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._error is not None:
            raise RuntimeError(f"poller failed: {self._error!r}")

    def _run(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                while not self._stop.is_set():
                    with self._lock:
                        paths = list(self._pending)
                    if paths:
                        started = time.monotonic()
                        rows = conn.execute(
                            PENDING_QUERY, {"label": gen.REVISION_LABEL, "paths": paths}
                        ).fetchall()
                        seen_at = time.monotonic()
                        self.poll_times.append(seen_at - started)
                        self._seen(rows, seen_at)
                    self._stop.wait(POLL_S)
        except BaseException as error:  # reported by stop()
            self._error = error

    def _seen(self, rows: list[tuple[str, str | None]], seen_at: float) -> None:
        with self._lock:
            for file_path, token in rows:
                tokens = self._pending.get(file_path)
                if not tokens or token is None:
                    continue
                index = next((i for i, (t, _) in enumerate(tokens) if t == token), None)
                if index is None:
                    continue
                # this token and every older one of the file are in (older ones superseded)
                for _, edited_at in tokens[: index + 1]:
                    self.latencies.append(seen_at - edited_at)
                del tokens[: index + 1]
                if not tokens:
                    del self._pending[file_path]


@dataclass
class SteadyResult:
    latencies_s: list[float]
    edits: int
    lost: int
    achieved_rate: float
    mean_poll_ms: float


def steady_edits(
    tree: gen.Tree, dsn: str, courses: int, rate: float, duration_s: float
) -> SteadyResult:
    """``rate`` edits per second for ``duration_s``, round robin over the lessons of the
    first ``courses`` courses (consecutive edits hit different courses)."""
    lessons: list[list[Path]] = [
        sorted((tree.root / course / "lessons").iterdir()) for course in tree.courses[:courses]
    ]
    base = {path: path.read_text(encoding="utf-8") for paths in lessons for path in paths}
    marker = f"**{gen.REVISION_LABEL}:** r0"
    poller = TokenPoller(dsn)
    total = int(rate * duration_s)
    started = time.monotonic()
    try:
        for k in range(total):
            delay = started + k / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            course = k % courses
            path = lessons[course][(k // courses) % len(lessons[course])]
            token = f"t{k:07d}"
            write_atomic(path, base[path].replace(marker, f"**{gen.REVISION_LABEL}:** {token}"))
            poller.expect(str(path.relative_to(tree.root)), token, time.monotonic())
        elapsed = time.monotonic() - started
        deadline = time.monotonic() + 60
        while poller.outstanding() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        poller.stop()
    polls = poller.poll_times or [0.0]
    return SteadyResult(
        latencies_s=poller.latencies,
        edits=total,
        lost=poller.outstanding(),
        achieved_rate=total / elapsed if elapsed else 0.0,
        mean_poll_ms=sum(polls) / len(polls) * 1000,
    )


@dataclass
class BurstResult:
    after_last_s: float  # last rename -> all 20 lessons committed
    after_first_s: float  # first rename -> all 20 lessons committed
    write_s: float  # first rename -> last rename


def burst(
    root: Path,
    staging: Path,
    index: int,
    dsn: str,
    *,
    timeout_s: float = 60.0,
    prefix: str = "burst",
) -> BurstResult:
    """A new 20-lesson course moved into the tree file by file (atomic renames)."""
    name = gen.write_course(staging, index, prefix=prefix)
    source = staging / name
    lessons = sorted(Path("lessons") / p.name for p in (source / "lessons").iterdir())
    files = [Path("curriculum.yaml"), *lessons]
    with psycopg.connect(dsn, autocommit=True) as conn:
        first = time.monotonic()
        (root / name / "lessons").mkdir(parents=True)
        for rel in files:
            os.rename(source / rel, root / name / rel)
        last = time.monotonic()
        deadline = last + timeout_s
        while True:
            row = conn.execute(BURST_QUERY, {"slug": name}).fetchone()
            done = time.monotonic()
            if row is not None and row[0] >= len(files) - 1:
                break
            if done > deadline:
                raise TimeoutError(f"burst {name} not committed within {timeout_s}s")
            time.sleep(POLL_S)
    return BurstResult(done - last, done - first, last - first)


def single_saves(
    tree: gen.Tree, dsn: str, saves: int, *, atomic: bool, timeout_s: float = 30.0
) -> list[float]:
    """Save to row, one save at a time into an idle daemon: each save rewrites a lesson's
    revision label, in place (open, write, close: the close lands it) or through a temporary
    file and a rename, and waits for its row before the next. Seconds per save."""
    lessons = [
        path
        for course in tree.courses
        for path in sorted((tree.root / course / "lessons").iterdir())
    ]
    marker = f"**{gen.REVISION_LABEL}:** r0"
    poller = TokenPoller(dsn)
    try:
        for k in range(saves):
            path = lessons[k % len(lessons)]
            text = path.read_text(encoding="utf-8")
            token = f"s{'a' if atomic else 'w'}{k:06d}"
            new = text.replace(marker, f"**{gen.REVISION_LABEL}:** {token}", 1)
            if marker not in text:  # saved before in this run: replace the last token
                head, _, rest = text.partition(f"**{gen.REVISION_LABEL}:** ")
                new = f"{head}**{gen.REVISION_LABEL}:** {token}{rest[rest.index(chr(10)) :]}"
            if atomic:
                write_atomic(path, new)
            else:
                path.write_text(new, encoding="utf-8")
            poller.expect(str(path.relative_to(tree.root)), token, time.monotonic())
            deadline = time.monotonic() + timeout_s
            while poller.outstanding() and time.monotonic() < deadline:
                time.sleep(0.001)
            if poller.outstanding():
                raise TimeoutError(f"save {k} of {path} not in the database within {timeout_s}s")
            time.sleep(0.05)  # the daemon is idle again before the next save
    finally:
        poller.stop()
    return poller.latencies


@dataclass
class ChunkedResult:
    files: int
    partial_versions_seen: int  # rows the database showed with only part of a file
    close_to_row_s: list[float]  # the writer's close -> the whole file in the database


CHUNK_QUERY = (
    "SELECT metadata->'labels'->>%(label)s, content FROM public.contents "
    "WHERE file_path = %(path)s AND deleted_at IS NULL"
)


def chunked_saves(tree: gen.Tree, dsn: str, files: int, pause_s: float) -> ChunkedResult:
    """Lessons written in three chunks, ``pause_s`` apart, through one open file (a generator
    streaming its output). The database is watched throughout: a version that has the new
    revision label without the last chunk is a partial version."""
    lessons = [sorted((tree.root / c / "lessons").iterdir())[0] for c in tree.courses[:files]]
    partial = 0
    close_to_row: list[float] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for k, path in enumerate(lessons):
            rel = str(path.relative_to(tree.root))
            token = f"chunked{k:04d}"
            text = re.sub(  # whatever revision the lesson is at (single saves changed it)
                rf"\*\*{gen.REVISION_LABEL}:\*\* \S+",
                f"**{gen.REVISION_LABEL}:** {token}",
                path.read_text(encoding="utf-8"),
                count=1,
            )
            third = len(text) // 3
            cuts = [text.index("\n", third) + 1, text.index("\n", 2 * third) + 1]
            end = f"\nEnd of {token}.\n"
            chunks = [text[: cuts[0]], text[cuts[0] : cuts[1]], text[cuts[1] :] + end]
            closed_at = None
            with open(path, "w", encoding="utf-8") as out:
                for i, chunk in enumerate(chunks):
                    out.write(chunk)
                    out.flush()
                    pause_until = time.monotonic() + (pause_s if i < len(chunks) - 1 else 0)
                    while time.monotonic() < pause_until:  # watch the database meanwhile
                        partial += _partial_rows(conn, rel, token, end)
                        time.sleep(POLL_S)
            closed_at = time.monotonic()
            deadline = closed_at + 30
            while True:
                row = conn.execute(
                    CHUNK_QUERY, {"label": gen.REVISION_LABEL, "path": rel}
                ).fetchone()
                if row is not None and row[0] == token:
                    if end.strip() in (row[1] or ""):
                        close_to_row.append(time.monotonic() - closed_at)
                        break
                    partial += 1
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{rel} not in the database within 30 s of its close")
                time.sleep(POLL_S)
    return ChunkedResult(len(lessons), partial, close_to_row)


def _row(conn: psycopg.Connection[Any], rel: str) -> tuple[Any, ...] | None:
    return conn.execute(CHUNK_QUERY, {"label": gen.REVISION_LABEL, "path": rel}).fetchone()


def _partial_rows(conn: psycopg.Connection[Any], rel: str, token: str, end: str) -> int:
    row = _row(conn, rel)
    return int(row is not None and row[0] == token and end.strip() not in (row[1] or ""))
