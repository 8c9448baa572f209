"""What every measurement shares: sizes and repeats (full or quick), the server, the
generated trees, the 5 ms RTT proxy, and the runs that several comparisons reuse (a
comparison is always between figures measured in this invocation, on this server)."""

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

RTT_DELAY_MS = 2.5  # each direction: a 5 ms round trip


@dataclass(frozen=True)
class Config:
    quick: bool
    cold_sizes: tuple[int, ...]
    compare_size: int  # the tree of items 3, 4, 5 and 7
    rtt_size: int
    repeats: int  # runs of a long figure (seconds)
    short_repeats: int  # runs of a short figure (< 1 s)
    naive_rtt_repeats: int  # the naive load over 5 ms RTT takes a minute or more per run
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
    _trees: dict[tuple[str, int], gen.Tree] = field(default_factory=dict)
    _proxy: DelayProxy | None = None
    _cache: dict[tuple[object, ...], list[float]] = field(default_factory=dict)
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

    def proxy_port(self) -> int:
        """The port of the 2.5 ms-each-way proxy (started on first use)."""
        if self._proxy is None:
            self._proxy = self.stack.enter_context(
                DelayProxy(self.server.socket_path, RTT_DELAY_MS)
            )
        return self._proxy.port

    def dsn(self, dbname: str, rtt: bool = False) -> str:
        return self.server.dsn(dbname, self.proxy_port() if rtt else None)

    def ping_ms(self, rtt: bool, count: int = 100) -> list[float]:
        """``SELECT 1`` round trips on an open connection, in ms."""
        with self.server.fresh_database() as db, psycopg.connect(self.dsn(db, rtt)) as conn:
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

    def syncd_cold(self, lessons: int, rtt: bool = False) -> list[float]:
        """Wall seconds of ``syncd --rescan`` on a fresh database, one per repeat."""
        return self.cached(("syncd", lessons, rtt), lambda: self._syncd_cold(lessons, rtt))

    def _syncd_cold(self, lessons: int, rtt: bool) -> list[float]:
        tree = self.tree(lessons)
        runs = []
        for i in range(self.config.repeats):
            with self.server.fresh_database() as db:
                run = procs.rescan(tree.root, self.dsn(db, rtt))
                self._check_rows(db, tree.rows, "syncd --rescan")
            self.log(
                f"  syncd --rescan {lessons:,}{' via 5 ms RTT' if rtt else ''} run {i + 1}: "
                f"{run.wall_s:.2f}s (reconcile {run.reconcile_ms / 1000:.2f}s)"
            )
            runs.append(run.wall_s)
        return runs

    def naive(self, lessons: int, rtt: bool = False) -> list[float]:
        repeats = self.config.naive_rtt_repeats if rtt else self.config.repeats
        return self.cached(
            ("naive", lessons, rtt),
            lambda: self._timed_loads("naive", lessons, rtt, repeats, self._naive_once),
        )

    def copy(self, lessons: int, rtt: bool = False) -> list[float]:
        return self.cached(
            ("copy", lessons, rtt),
            lambda: self._timed_loads("COPY", lessons, rtt, self.config.repeats, self._copy_once),
        )

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
        rtt: bool,
        repeats: int,
        once: Callable[[str, list[loaders.CourseRows]], float],
    ) -> list[float]:
        rows = self.rows(lessons)
        tree = self.tree(lessons)
        runs = []
        for i in range(repeats):
            with self.server.fresh_database() as db:
                seconds = once(self.dsn(db, rtt), rows)
                self._check_rows(db, tree.rows, what)
            self.log(
                f"  {what} {lessons:,}{' via 5 ms RTT' if rtt else ''} run {i + 1}: {seconds:.2f}s"
            )
            runs.append(seconds)
        return runs

    def _check_rows(self, db: str, expected: int, what: str) -> None:
        found = self.server.count_rows(db)
        if found != expected:
            raise RuntimeError(f"{what} wrote {found} contents rows, expected {expected}")

    def daemon_memory(self, lessons: int) -> list[DaemonMemory]:
        """Memory samples of daemons run on the ``lessons`` tree (shared by idle_cpu, rss)."""
        return self._memory.setdefault(lessons, [])
