"""What every measurement shares: sizes and repeats (full or quick), the server, the
generated trees, the delaying proxies (one per round-trip time: 5 ms, and the far links'
50 and 150 ms), and the runs that several comparisons reuse (a comparison is always between
figures measured in this invocation, on this server)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench import gen, loaders, procs
from bench.delayproxy import DelayProxy
from bench.pg import BenchServer

RTT5_MS = 5.0  # the rtt5 section's link: 2.5 ms each way


@dataclass(frozen=True)
class Config:
    quick: bool
    cold_sizes: tuple[int, ...]
    compare_size: int  # the tree of items 3, 4, 5 and 7
    rtt_size: int
    repeats: int  # runs of a long figure (seconds)
    short_repeats: int  # runs of a short figure (< 1 s)
    naive_rtt_repeats: int  # the naive load over 5 ms RTT takes a minute or more per run
    far_rtts_ms: tuple[float, ...]  # far_links: round-trip times of the links
    far_size: int  # far_links: lessons of the cold backfill
    far_saves: int  # far_links: single saves per link (outside probe, 400 ms apart)
    far_quiet_saves: int  # far_links: saves 11 s apart (each after a quiet spell)
    in_process_samples: int
    steady_s: float
    steady_rate: float
    steady_courses: int
    bursts: int
    quiet_ms: int
    idle_windows: int
    idle_window_s: float
    rss_sizes: tuple[int, ...]
    rss_repeats: dict[int, int]

    @classmethod
    def full(cls) -> Config:
        return cls(
            quick=False,
            cold_sizes=(1_000, 10_000, 50_000),
            compare_size=10_000,
            rtt_size=10_000,
            repeats=3,
            short_repeats=5,
            naive_rtt_repeats=3,
            far_rtts_ms=(50.0, 150.0),
            far_size=10_000,
            far_saves=60,
            far_quiet_saves=6,
            in_process_samples=20,
            steady_s=30.0,
            steady_rate=50.0,
            steady_courses=20,
            bursts=10,
            quiet_ms=500,
            idle_windows=6,
            idle_window_s=10.0,
            rss_sizes=(10_000, 100_000),
            rss_repeats={10_000: 3, 100_000: 1},
        )

    @classmethod
    def quick_smoke(cls) -> Config:
        return cls(
            quick=True,
            cold_sizes=(1_000, 5_000),
            compare_size=1_000,
            rtt_size=1_000,
            repeats=3,
            short_repeats=5,
            naive_rtt_repeats=1,
            far_rtts_ms=(50.0, 150.0),
            far_size=1_000,
            far_saves=20,
            far_quiet_saves=2,
            in_process_samples=10,
            steady_s=10.0,
            steady_rate=50.0,
            steady_courses=20,
            bursts=5,
            quiet_ms=500,
            idle_windows=5,
            idle_window_s=2.0,
            rss_sizes=(10_000,),
            rss_repeats={10_000: 1},
        )


@dataclass(frozen=True)
class ColdRun:
    wall_s: float  # the whole ``syncd --rescan`` process
    reconcile_ms: float  # its "reconcile finished" line
    round_trips: int | None  # counted by the proxy (None: no proxy)


def _via(rtt_ms: float) -> str:
    return f" via {rtt_ms:g} ms RTT" if rtt_ms else ""


@dataclass(frozen=True)
class DaemonMemory:
    peak_mb: float  # VmHWM after the first reconcile
    now_mb: float  # VmRSS at the same moment
    ready_s: float  # start -> "daemon ready" (the first reconcile done)


@dataclass
class Context:
    config: Config
    server: BenchServer
    stack: contextlib.ExitStack
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="syncd-bench-")))
    log: Callable[[str], None] = print
    before: Path | None = None  # far_links: another commit's sources, measured beside
    _trees: dict[tuple[str, int], gen.Tree] = field(default_factory=dict)
    _proxies: dict[float, DelayProxy] = field(default_factory=dict)
    _cache: dict[tuple[object, ...], list[float]] = field(default_factory=dict)
    _cold: dict[tuple[int, float, str], list[ColdRun]] = field(default_factory=dict)
    _copies: dict[tuple[int, float], list[float]] = field(default_factory=dict)
    _rows: dict[int, list[loaders.CourseRows]] = field(default_factory=dict)
    _memory: dict[int, list[DaemonMemory]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- trees -----------------------------------------------------------------------

    def tree(self, lessons: int, prefix: str = "curso") -> gen.Tree:
        """A generated tree of ``lessons`` lessons (made once, then reused)."""
        key = (prefix, lessons)
        if key not in self._trees:
            started = time.perf_counter()
            tree = gen.generate(self.tmp / "trees" / f"{prefix}-{lessons}", lessons, prefix=prefix)
            self.log(
                f"  generated {lessons:,} lessons ({len(tree.courses):,} courses, "
                f"{gen.tree_bytes(tree.root) / 1e6:,.0f} MB) in "
                f"{time.perf_counter() - started:.1f}s"
            )
            self._trees[key] = tree
        return self._trees[key]

    def rows(self, lessons: int) -> list[loaders.CourseRows]:
        if lessons not in self._rows:
            tree = self.tree(lessons)
            self._rows[lessons] = loaders.read_and_parse(tree.root, tree.courses)
        return self._rows[lessons]

    # -- the link --------------------------------------------------------------------

    def proxy(self, rtt_ms: float) -> DelayProxy:
        """The proxy that makes an ``rtt_ms`` round trip (half of it each way), started on
        first use."""
        if rtt_ms not in self._proxies:
            self._proxies[rtt_ms] = self.stack.enter_context(
                DelayProxy(self.server.socket_path, rtt_ms / 2)
            )
        return self._proxies[rtt_ms]

    def dsn(self, dbname: str, rtt_ms: float = 0.0) -> str:
        """The database over the unix socket (``rtt_ms`` 0) or through the proxy."""
        return self.server.dsn(dbname, self.proxy(rtt_ms).port if rtt_ms else None)

    def ping_ms(self, rtt_ms: float, count: int = 100) -> list[float]:
        """``SELECT 1`` round trips on an open connection, in ms."""
        with self.server.fresh_database() as db, psycopg.connect(self.dsn(db, rtt_ms)) as conn:
            samples = []
            for _ in range(count):
                started = time.perf_counter()
                conn.execute("SELECT 1").fetchone()
                samples.append((time.perf_counter() - started) * 1000)
        return samples

    # -- runs several measurements compare against -----------------------------------

    def cached(self, key: tuple[object, ...], measure: Callable[[], list[float]]) -> list[float]:
        if key not in self._cache:
            self._cache[key] = measure()
        return self._cache[key]

    def syncd_cold(self, lessons: int, rtt_ms: float = 0.0) -> list[float]:
        """Wall seconds of ``syncd --rescan`` on a fresh database, one per repeat."""
        return [
            run.wall_s
            for run in self.cold_runs(lessons, rtt_ms, procs.SYNCD_SOURCES["cwd"], label="")
        ]

    def cold_runs(
        self, lessons: int, rtt_ms: float, sources: Path, label: str, repeat: int | None = None
    ) -> list[ColdRun]:
        """``syncd --rescan`` runs (syncd's sources in ``sources``) on fresh databases:
        ``repeat`` (0-based) alone, or every repeat; each measured once and kept."""
        key = (lessons, rtt_ms, str(sources))
        runs = self._cold.setdefault(key, [])
        wanted = range(self.config.repeats) if repeat is None else range(repeat, repeat + 1)
        for i in wanted:
            if i < len(runs):
                continue
            runs.append(self._cold_run(lessons, rtt_ms, sources, label, i))
        return runs if repeat is None else [runs[repeat]]

    def _cold_run(
        self, lessons: int, rtt_ms: float, sources: Path, label: str, index: int
    ) -> ColdRun:
        tree = self.tree(lessons)
        previous = procs.SYNCD_SOURCES["cwd"]
        procs.SYNCD_SOURCES["cwd"] = sources
        try:
            with self.server.fresh_database() as db:
                before = self.proxy(rtt_ms).stats() if rtt_ms else None
                run = procs.rescan(tree.root, self.dsn(db, rtt_ms))
                after = self.proxy(rtt_ms).stats() if rtt_ms else None
                self._check_rows(db, tree.rows, "syncd --rescan")
        finally:
            procs.SYNCD_SOURCES["cwd"] = previous
        trips = after["exchanges"] - before["exchanges"] if before and after else None
        self.log(
            f"  syncd{label} --rescan {lessons:,}{_via(rtt_ms)} run {index + 1}: "
            f"{run.wall_s:.2f}s (reconcile {run.reconcile_ms / 1000:.2f}s"
            + (f", {trips} round trips)" if trips is not None else ")")
        )
        return ColdRun(run.wall_s, run.reconcile_ms, trips)

    def naive(self, lessons: int, rtt_ms: float = 0.0) -> list[float]:
        repeats = self.config.naive_rtt_repeats if rtt_ms else self.config.repeats
        return self.cached(
            ("naive", lessons, rtt_ms),
            lambda: self._timed_loads("naive", lessons, rtt_ms, repeats, self._naive_once),
        )

    def copy(self, lessons: int, rtt_ms: float = 0.0, repeat: int | None = None) -> list[float]:
        """COPY loads of ``lessons`` (``repeat``, 0-based, alone; or every repeat)."""
        runs = self._copies.setdefault((lessons, rtt_ms), [])
        wanted = range(self.config.repeats) if repeat is None else range(repeat, repeat + 1)
        for i in wanted:
            if i >= len(runs):
                runs += self._timed_loads("COPY", lessons, rtt_ms, 1, self._copy_once, first=i)
        return runs if repeat is None else [runs[repeat]]

    def _naive_once(self, dsn: str, rows: list[loaders.CourseRows]) -> float:
        started = time.perf_counter()
        loaders.naive_load(dsn, rows)
        return time.perf_counter() - started

    def _copy_once(self, dsn: str, rows: list[loaders.CourseRows]) -> float:
        plan = loaders.plan_copy(rows)  # ids and values ready before the clock starts
        started = time.perf_counter()
        loaders.copy_load(dsn, plan)
        return time.perf_counter() - started

    def _timed_loads(
        self,
        what: str,
        lessons: int,
        rtt_ms: float,
        repeats: int,
        once: Callable[[str, list[loaders.CourseRows]], float],
        *,
        first: int = 0,
    ) -> list[float]:
        rows = self.rows(lessons)
        tree = self.tree(lessons)
        runs = []
        for i in range(first, first + repeats):
            with self.server.fresh_database() as db:
                seconds = once(self.dsn(db, rtt_ms), rows)
                self._check_rows(db, tree.rows, what)
            self.log(f"  {what} {lessons:,}{_via(rtt_ms)} run {i + 1}: {seconds:.2f}s")
            runs.append(seconds)
        return runs

    def _check_rows(self, db: str, expected: int, what: str) -> None:
        found = self.server.count_rows(db)
        if found != expected:
            raise RuntimeError(f"{what} wrote {found} contents rows, expected {expected}")

    def daemon_memory(self, lessons: int) -> list[DaemonMemory]:
        """Memory samples of daemons run on the ``lessons`` tree (shared by idle_cpu, rss)."""
        return self._memory.setdefault(lessons, [])
