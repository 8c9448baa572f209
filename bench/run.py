"""syncd benchmark: ``python -m bench.run [--quick] [--only NAME ...] [--out FILE]``.

Starts its own PostgreSQL (the pgserver wheel: a default, durable server with fsync on),
generates course trees (bench/gen.py), and measures syncd against its targets. Every
figure is the median of several runs; every comparison is between figures measured in
this invocation, on this server. Prints a markdown table (with the machine) and writes
the JSON of every run. ``--quick`` is a smoke run with smaller sizes and fewer repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import gen, latency, many_sources, outside, procs
from bench.context import RTT5_MS, Config, Context, DaemonMemory
from bench.pg import BenchServer
from bench.report import (
    DOCS,
    Row,
    fmt,
    load_average,
    machine,
    median,
    percentile,
    ratio,
    render,
    render_table,
    source_digest,
    to_json,
    write_docs,
)
from syncd.course import ParseOptions
from syncd.database import DbSettings, connect
from syncd.reconcile import Reconciler
from syncd.store import CourseStore

DEFAULT_OUT = Path("bench/results/latest.json")
LESSON_ROWS_PER_COURSE = 25  # outline + 4 modules + 20 lessons


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ 1. new_course_20


class _NullLog:
    """The in-process reconciler logs nothing (the per-course JSON line is not measured)."""

    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *_args, **_kwargs: None


@contextlib.contextmanager
def _borrow(conn: Any) -> Iterator[Any]:
    yield conn


def new_course_20(ctx: Context) -> list[Row]:
    """A new 20-lesson course: Reconciler.sync_course in process, and a whole process."""
    cfg = ctx.config
    tree = ctx.tree((cfg.in_process_samples + 1) * gen.LESSONS_PER_COURSE, prefix="new")
    samples = _sync_each_course(ctx, tree.root, tree.courses, refused=0)
    in_process = median(samples)
    refused = _refused_course_samples(ctx)
    rows = [
        Row(
            "new_course_20",
            "new 20-lesson course, `Reconciler.sync_course` in process (open connection)",
            "ms",
            samples,
            comparison=f"read+parse+1 transaction, 25 rows; p95 {fmt(percentile(samples, 95))} ms",
            target="< 50 ms",
            met=in_process < 50,
            miss=f"{fmt(in_process - 50)} ms over" if in_process >= 50 else "",
        )
    ]
    rows.append(
        Row(
            "new_course_20",
            "new 20-lesson course plus one lesson the database refuses (too long for the "
            "full-text index), in process",
            "ms",
            refused,
            comparison=f"{ratio(median(refused), in_process):.1f}x the clean course: the failed "
            "fast attempt, then one savepoint per row; 25 rows written, 1 refused",
            target="",
            met=None,
        )
    )
    single = ctx.tree(gen.LESSONS_PER_COURSE, prefix="single")
    walls: list[float] = []
    inner: list[float] = []
    for i in range(cfg.short_repeats):
        with ctx.server.fresh_database() as db:
            run = procs.rescan(single.root, ctx.dsn(db))
        walls.append(run.wall_s * 1000)
        inner.append(run.reconcile_ms)
        log(f"  syncd --rescan (1 new course) run {i + 1}: {run.wall_s * 1000:.0f} ms")
    whole = median(walls)
    rows.append(
        Row(
            "new_course_20",
            "new 20-lesson course, whole `syncd --rescan` process, fresh database",
            "ms",
            walls,
            comparison=f"of which reconcile {fmt(median(inner))} ms (its log); the rest is "
            "interpreter start, imports, connecting, schema check",
            target="< 500 ms",
            met=whole < 500,
            miss=f"{fmt(whole - 500)} ms over" if whole >= 500 else "",
            details={"reconcile_ms": inner},
        )
    )
    return rows


def _refused_course_samples(ctx: Context) -> list[float]:
    """Like a new 20-lesson course, with one more lesson of about 1.3 MB (an inline base64
    image) that PostgreSQL refuses (SQLSTATE 54000): the rare row-by-row path."""
    import base64
    import random

    cfg = ctx.config
    tree = ctx.tree((cfg.in_process_samples + 1) * gen.LESSONS_PER_COURSE, prefix="refused")
    image = base64.encodebytes(random.Random(1).randbytes(950_000)).decode()
    for course in tree.courses:
        (tree.root / course / "lessons" / "1.9-refused.md").write_text(
            f"# Refused\n\n![img](data:image/png;base64,\n{image})\n", encoding="utf-8"
        )
    return _sync_each_course(ctx, tree.root, tree.courses, refused=1)


def _sync_each_course(ctx: Context, root: Path, courses: list[str], *, refused: int) -> list[float]:
    """Milliseconds of Reconciler.sync_course for each new course but the first (a warm-up:
    first statements, caches), in one fresh database on one open connection."""
    samples: list[float] = []
    with ctx.server.fresh_database() as db:
        conn = connect(DbSettings(dsn=ctx.dsn(db)))
        try:
            reconciler = Reconciler(
                root=root,
                store=CourseStore(lambda: _borrow(conn)),
                options=ParseOptions(),
                log=_NullLog(),
            )
            reconciler.sync_course(courses[0])
            for course in courses[1:]:
                started = time.perf_counter()
                result = reconciler.sync_course(course)
                samples.append((time.perf_counter() - started) * 1000)
                assert result.inserted == LESSON_ROWS_PER_COURSE, result
                assert [i.kind for i in result.rejected] == ["refused"] * refused, result.rejected
        finally:
            conn.close()
    return samples


# ------------------------------------------------------------------ 2. cold_backfill


def cold_backfill(ctx: Context) -> list[Row]:
    """``syncd --rescan`` of generated trees on a fresh database, whole process."""
    rows = []
    base: float | None = None
    for size in sorted(ctx.config.cold_sizes):
        runs = ctx.syncd_cold(size)
        seconds = median(runs)
        per_lesson = seconds / size
        base = per_lesson if base is None else base
        rows.append(
            Row(
                "cold_backfill",
                f"cold backfill `syncd --rescan`, {size:,} lessons ({size // 20:,} courses)",
                "s",
                runs,
                comparison=f"{size / seconds:,.0f} lessons/s; per-lesson cost "
                f"{per_lesson / base:.2f}x the {min(ctx.config.cold_sizes):,} tree's",
            )
        )
    return rows


# ------------------------------------------------------------------ 3. naive


def naive(ctx: Context) -> list[Row]:
    """The same rows, one autocommit INSERT per row, vs syncd."""
    size = ctx.config.compare_size
    syncd_s = median(ctx.syncd_cold(size))
    runs = ctx.naive(size)
    naive_s = median(runs)
    return [
        Row(
            "naive",
            f"naive load (one autocommit INSERT per row, ids kept in Python), {size:,} lessons",
            "s",
            runs,
            comparison=f"syncd/naive = {ratio(syncd_s, naive_s):.2f} (syncd {fmt(syncd_s)} s, "
            f"naive {size / naive_s:,.0f} lessons/s)",
        )
    ]


# ------------------------------------------------------------------ 4. copy_ceiling


def copy_ceiling(ctx: Context) -> list[Row]:
    """The same rows in one transaction with COPY, vs syncd."""
    size = ctx.config.compare_size
    syncd_s = median(ctx.syncd_cold(size))
    runs = ctx.copy(size)
    copy_s = median(runs)
    r = ratio(syncd_s, copy_s)
    return [
        Row(
            "copy_ceiling",
            f"COPY ceiling (one transaction, real tables, all indexes), {size:,} lessons",
            "s",
            runs,
            comparison=f"syncd/COPY = {r:.2f} (syncd {fmt(syncd_s)} s)",
            target="syncd <= 1.5x COPY",
            met=r <= 1.5,
            miss=f"{r:.2f}x: {r / 1.5:.2f}x the allowed time" if r > 1.5 else "",
        )
    ]


# ------------------------------------------------------------------ 5. parse_ceiling


def parse_ceiling(ctx: Context) -> list[Row]:
    """Read + parse + hash of the same tree, no database, in process."""
    from bench.loaders import read_and_parse

    size = ctx.config.compare_size
    tree = ctx.tree(size)
    syncd_s = median(ctx.syncd_cold(size))
    runs = []
    for _ in range(ctx.config.short_repeats):
        started = time.perf_counter()
        read_and_parse(tree.root, tree.courses)
        runs.append(time.perf_counter() - started)
    parse_s = median(runs)
    return [
        Row(
            "parse_ceiling",
            f"read + parse + hash, no database, in process, {size:,} lessons",
            "s",
            runs,
            comparison=f"syncd/parse = {ratio(syncd_s, parse_s):.2f}; parsing is "
            f"{parse_s / syncd_s:.0%} of syncd's wall time",
        )
    ]


# ------------------------------------------------------------------ 6. rtt5


def rtt5(ctx: Context) -> list[Row]:
    """Items 2-4 through a proxy adding 2.5 ms each way (a 5 ms RTT link)."""
    size = ctx.config.rtt_size
    direct = ctx.ping_ms(0.0)
    via = ctx.ping_ms(RTT5_MS)
    syncd_local = median(ctx.syncd_cold(size))
    syncd_runs = ctx.syncd_cold(size, RTT5_MS)
    syncd_s = median(syncd_runs)
    naive_runs = ctx.naive(size, RTT5_MS)
    naive_s = median(naive_runs)
    copy_runs = ctx.copy(size, RTT5_MS)
    copy_s = median(copy_runs)
    faster = ratio(naive_s, syncd_s)
    vs_copy = ratio(syncd_s, copy_s)
    courses = size // gen.LESSONS_PER_COURSE
    extra_ms = (syncd_s - syncd_local) / courses * 1000  # wall time the link adds per course
    return [
        Row(
            "rtt5",
            "link: `SELECT 1` round trip via the proxy (2.5 ms each way)",
            "ms",
            via,
            comparison=f"direct unix socket {fmt(median(direct))} ms",
        ),
        Row(
            "rtt5",
            f"`syncd --rescan` via 5 ms RTT, {size:,} lessons",
            "s",
            syncd_runs,
            comparison=f"{ratio(syncd_s, syncd_local):.1f}x the direct run ({fmt(syncd_local)} s)"
            f"; the link adds {fmt(extra_ms)} ms of wall time per course "
            f"(= {extra_ms / median(via):.1f} round trips, workers overlapping)",
        ),
        Row(
            "rtt5",
            f"naive load via 5 ms RTT, {size:,} lessons ({len(naive_runs)} run(s))",
            "s",
            naive_runs,
            comparison=f"naive/syncd = {faster:.2f}: syncd is {faster:.2f}x faster",
            target="syncd >= 20x faster than naive",
            met=faster >= 20,
            miss=f"only {faster:.2f}x" if faster < 20 else "",
        ),
        Row(
            "rtt5",
            f"COPY ceiling via 5 ms RTT, {size:,} lessons",
            "s",
            copy_runs,
            comparison=f"syncd/COPY = {vs_copy:.2f}",
            target="syncd <= 2x COPY",
            met=vs_copy <= 2,
            miss=f"{vs_copy:.2f}x: {vs_copy / 2:.2f}x the allowed time" if vs_copy > 2 else "",
        ),
    ]


# ------------------------------------------------------------------ 6b. far_links


def far_links(ctx: Context) -> list[Row]:
    """Issue 17 item 4, a creator far from the database (Sao Paulo to us-east-1: about
    120 ms). Through the proxy at each of ``far_rtts_ms``: a cold ``syncd --rescan`` of
    ``far_size`` lessons against COPY of the same rows through the same link (round trips
    counted by the proxy), and single saves into a daemon whose link is the proxy, seen
    from outside (the poller process is on the unix socket): 400 ms apart, then a few
    after a quiet spell. With ``--before DIR`` the syncd of DIR is measured too (its
    backfills each beside one of this tree's)."""
    cfg = ctx.config
    size = cfg.far_size
    variants = [("", procs.REPO)] + ([(" (before)", ctx.before)] if ctx.before else [])
    rows: list[Row] = []
    for rtt_ms in cfg.far_rtts_ms:
        ping = ctx.ping_ms(rtt_ms, count=20)
        rows.append(
            Row(
                "far_links",
                f"link: `SELECT 1` round trip via the proxy ({rtt_ms / 2:g} ms each way)",
                "ms",
                ping,
                comparison=f"{rtt_ms:g} ms of delay; the rest is the proxy's own",
            )
        )
        for i in range(cfg.repeats):  # COPY and each syncd in turn, so that load hits all
            ctx.copy(size, rtt_ms, repeat=i)
            for label, sources in variants:
                ctx.cold_runs(size, rtt_ms, sources, label, repeat=i)
        copy_runs = ctx.copy(size, rtt_ms)
        copy_s = median(copy_runs)
        rows.append(
            Row(
                "far_links",
                f"COPY ceiling via {rtt_ms:g} ms RTT, {size:,} lessons",
                "s",
                copy_runs,
                comparison="one transaction, two COPY streams, through the same proxy",
            )
        )
        for label, sources in variants:
            rows.append(_far_cold_row(ctx, rtt_ms, sources, label, copy_s))
        for label, sources in variants:
            rows += _far_saves_rows(ctx, rtt_ms, sources, label, quiet=cfg.far_quiet_saves)
    return rows


def _far_cold_row(ctx: Context, rtt_ms: float, sources: Path, label: str, copy_s: float) -> Row:
    size = ctx.config.far_size
    courses = size // gen.LESSONS_PER_COURSE
    runs = ctx.cold_runs(size, rtt_ms, sources, label)
    seconds = median([r.wall_s for r in runs])
    r = ratio(seconds, copy_s)
    trips = median([float(r.round_trips or 0) for r in runs])
    return Row(
        "far_links",
        f"cold `syncd --rescan`{label} via {rtt_ms:g} ms RTT, {size:,} lessons "
        f"({courses:,} courses)",
        "s",
        [r.wall_s for r in runs],
        comparison=f"syncd/COPY = {r:.2f} (COPY {fmt(copy_s)} s); {trips:,.0f} round trips "
        f"({trips / courses:.2f} per course); reconcile "
        f"{fmt(median([r.reconcile_ms for r in runs]) / 1000)} s (its log)",
        target="syncd <= 1.5x COPY",
        met=r <= 1.5,
        miss=f"{r:.2f}x: {r / 1.5:.2f}x the allowed time" if r > 1.5 else "",
        details={"round_trips": [r.round_trips for r in runs]},
    )


def _far_saves_rows(
    ctx: Context, rtt_ms: float, sources: Path, label: str, *, quiet: int
) -> list[Row]:
    """Single saves in place into a daemon whose database link is the proxy: 400 ms apart
    (no pooled connection sits idle long enough to be checked first), then ``quiet`` saves
    11 s apart (each after a quiet spell: its connection is checked first, one more round
    trip)."""
    cfg = ctx.config
    tree = ctx.tree(5 * gen.LESSONS_PER_COURSE, prefix="far")
    previous = procs.SYNCD_SOURCES["cwd"]
    procs.SYNCD_SOURCES["cwd"] = sources
    runs: list[tuple[str, float, list[outside.Save], dict[str, Any], int]] = []
    try:
        with (
            ctx.server.fresh_database() as db,
            procs.Daemon(tree.root, ctx.dsn(db, rtt_ms)) as daemon,
        ):
            daemon.wait_ready(timeout_s=600)
            time.sleep(1.0)
            first = sorted((tree.root / tree.courses[0] / "lessons").iterdir())
            for what, gap_s, saves in (
                ("400 ms apart", 0.4, cfg.far_saves),
                ("11 s apart, each after a quiet spell", 11.0, quiet),
            ):
                if not saves:
                    continue
                if gap_s > 10:  # the daemon's connections were just used: idle them first
                    time.sleep(gap_s)
                before = ctx.proxy(rtt_ms).stats()["exchanges"]
                seen, poll = outside.outside_saves(
                    tree.root, first, ctx.dsn(db), saves=saves, gap_s=gap_s, poll_s=0.003
                )
                trips = ctx.proxy(rtt_ms).stats()["exchanges"] - before
                runs.append((what, gap_s, seen, poll, trips))
    finally:
        procs.SYNCD_SOURCES["cwd"] = previous
    rows = []
    limit = 150 + 2 * rtt_ms
    for what, _gap_s, seen, poll, trips in runs:
        samples = [s.latency_ms for s in seen]
        p99 = percentile(samples, 99)
        ctx.log(
            f"  saves{label} {what} via {rtt_ms:g} ms RTT: p50 {fmt(median(samples))} ms, "
            f"p99 {fmt(p99)} ms"
        )
        rows.append(
            Row(
                "far_links",
                f"save to row{label} via {rtt_ms:g} ms RTT: single saves in place {what}, into "
                "an idle daemon whose link is the proxy, until a poller process on the unix "
                "socket sees the row (p50)",
                "ms",
                samples,
                comparison=f"p90 {fmt(percentile(samples, 90))} ms, p99 {fmt(p99)} ms, max "
                f"{fmt(max(samples))} ms; {trips / len(samples):.2f} round trips per save; "
                f"poll interval p50 {fmt(poll.get('poll_interval_ms_p50') or 0)} ms",
                target=f"p99 <= {limit:g} ms (150 ms + 2 RTT)",
                met=p99 <= limit,
                miss=f"p99 {fmt(p99)} ms" if p99 > limit else "",
                details={"round_trips": trips},
            )
        )
    return rows


# ------------------------------------------------------------------ 7. no_change_rescan


def no_change_rescan(ctx: Context) -> list[Row]:
    """A second ``syncd --rescan`` after a cold backfill: nothing changed."""
    size = ctx.config.compare_size
    tree = ctx.tree(size)
    runs: list[float] = []
    inner: list[float] = []
    with ctx.server.fresh_database() as db:
        cold = procs.rescan(tree.root, ctx.dsn(db))
        for i in range(ctx.config.short_repeats):
            run = procs.rescan(tree.root, ctx.dsn(db))
            finished = run.event("reconcile finished")
            if finished["skipped"] != len(tree.courses):
                raise RuntimeError(f"no-change rescan did not skip every course: {finished}")
            runs.append(run.wall_s)
            inner.append(run.reconcile_ms)
            log(f"  no-change rescan {size:,} run {i + 1}: {run.wall_s:.2f}s")
    seconds = median(runs)
    return [
        Row(
            "no_change_rescan",
            f"no-change `syncd --rescan`, {size:,} lessons already synced",
            "s",
            runs,
            comparison=f"cold run before it {fmt(cold.wall_s)} s "
            f"({ratio(cold.wall_s, seconds):.0f}x); reconcile {fmt(median(inner))} ms (its log)",
            target="< 1 s",
            met=seconds < 1,
            miss=f"{fmt(seconds - 1)} s over" if seconds >= 1 else "",
            details={"cold_s": cold.wall_s, "reconcile_ms": inner},
        )
    ]


# ------------------------------------------------------------------ 8. latency


def latency_(ctx: Context) -> list[Row]:
    """Change-to-commit latency with the daemon running: steady edits, then bursts."""
    cfg = ctx.config
    tree = ctx.tree(cfg.steady_courses * gen.LESSONS_PER_COURSE, prefix="lat")
    staging = ctx.tmp / "staging"
    staging.mkdir(exist_ok=True)
    limit_ms = cfg.quiet_ms + 200
    with ctx.server.fresh_database() as db:
        dsn = ctx.dsn(db)
        with procs.Daemon(tree.root, dsn, ("--quiet-ms", str(cfg.quiet_ms))) as daemon:
            daemon.wait_ready(timeout_s=600)
            log(
                f"  steady edits: {cfg.steady_rate:.0f}/s over {cfg.steady_courses} courses "
                f"for {cfg.steady_s:.0f}s"
            )
            steady = latency.steady_edits(
                tree, dsn, cfg.steady_courses, cfg.steady_rate, cfg.steady_s
            )
            time.sleep(cfg.quiet_ms / 1000 * 2 + 1)
            bursts = []
            for i in range(cfg.bursts):
                bursts.append(latency.burst(tree.root, staging, i, dsn))
                log(f"  burst {i + 1}: {bursts[-1].after_last_s * 1000:.0f} ms after last rename")
                time.sleep(1.0)
    # the same steady edits with the maximum delay cut to the quiet period: a course that
    # never goes quiet then syncs every quiet period instead of every 5 s (on a fresh tree:
    # the edits above left their tokens in the first one)
    fresh = ctx.tree(cfg.steady_courses * gen.LESSONS_PER_COURSE, prefix="latw")
    with ctx.server.fresh_database() as db:
        dsn = ctx.dsn(db)
        args = ("--quiet-ms", str(cfg.quiet_ms), "--max-delay-ms", str(cfg.quiet_ms))
        with procs.Daemon(fresh.root, dsn, args) as daemon:
            daemon.wait_ready(timeout_s=600)
            log(f"  steady edits again with --max-delay-ms {cfg.quiet_ms}")
            windowed = latency.steady_edits(
                fresh, dsn, cfg.steady_courses, cfg.steady_rate, cfg.steady_s
            )
    windowed_ms = [s * 1000 for s in windowed.latencies_s]
    windowed_p99 = percentile(windowed_ms, 99)
    steady_ms = [s * 1000 for s in steady.latencies_s]
    burst_ms = [b.after_last_s * 1000 for b in bursts]
    p99 = percentile(steady_ms, 99)
    touch_ms = cfg.steady_courses / cfg.steady_rate * 1000
    burst_p99 = percentile(burst_ms, 99)
    return [
        Row(
            "latency",
            f"change→commit, steady {cfg.steady_rate:.0f} edits/s over {cfg.steady_courses} "
            f"courses, {cfg.steady_s:.0f} s (p50)",
            "ms",
            steady_ms,
            comparison=f"p95 {fmt(percentile(steady_ms, 95))} ms, p99 {fmt(p99)} ms; "
            f"{steady.edits} edits at {steady.achieved_rate:.1f}/s, {steady.lost} never seen"
            + (
                f"; each course is edited every {touch_ms:.0f} ms, never quiet for "
                f"{cfg.quiet_ms} ms, so it syncs at the 5 s max delay"
                if touch_ms < cfg.quiet_ms
                else ""
            ),
            target=f"p99 < {limit_ms} ms",
            met=p99 < limit_ms and steady.lost == 0,
            miss=f"p99 {fmt(p99)} ms, {p99 / limit_ms:.1f}x the limit" if p99 >= limit_ms else "",
            details={"mean_poll_query_ms": steady.mean_poll_ms},
        ),
        Row(
            "latency",
            f"change→commit, the same steady edits with --max-delay-ms {cfg.quiet_ms} (p50)",
            "ms",
            windowed_ms,
            comparison=f"p95 {fmt(percentile(windowed_ms, 95))} ms, p99 {fmt(windowed_p99)} ms; "
            f"{windowed.edits} edits, {windowed.lost} never seen",
            target=f"p99 < {limit_ms} ms",
            met=windowed_p99 < limit_ms and windowed.lost == 0,
            miss=f"p99 {fmt(windowed_p99)} ms, {windowed_p99 / limit_ms:.1f}x the limit"
            if windowed_p99 >= limit_ms
            else "",
        ),
        Row(
            "latency",
            f"change→commit, 20-lesson burst into a new course (last rename → committed), "
            f"{cfg.bursts} bursts (p50)",
            "ms",
            burst_ms,
            comparison=f"p95 {fmt(percentile(burst_ms, 95))} ms, p99 {fmt(burst_p99)} ms; "
            f"from the first rename {fmt(median([b.after_first_s * 1000 for b in bursts]))} ms",
            target=f"p99 < {limit_ms} ms",
            met=burst_p99 < limit_ms,
            miss=f"p99 {fmt(burst_p99)} ms" if burst_p99 >= limit_ms else "",
            details={"write_ms": [b.write_s * 1000 for b in bursts]},
        ),
    ]


# ------------------------------------------------------------------ 8b. save_to_row


def save_to_row(ctx: Context) -> list[Row]:
    """Saves into an idle daemon (inotify): single saves land on their close, a burst is
    one transaction, a file written in chunks is never seen half-written."""
    cfg = ctx.config
    tree = ctx.tree(5 * gen.LESSONS_PER_COURSE, prefix="save")
    staging = ctx.tmp / "staging-saves"
    staging.mkdir(exist_ok=True)
    saves = 100 if cfg.quick else 300
    with ctx.server.fresh_database() as db:
        dsn = ctx.dsn(db)
        with procs.Daemon(tree.root, dsn) as daemon:
            daemon.wait_ready(timeout_s=600)
            probe = 20 if cfg.quick else 60
            log(f"  {probe} single saves in place 400 ms apart, seen by a poller process")
            first = sorted((tree.root / tree.courses[0] / "lessons").iterdir())
            seen, poll = outside.outside_saves(
                tree.root, first, dsn, saves=probe, gap_s=0.4, poll_s=0.003
            )
            log(f"  {saves} single saves in place, then {saves} through a rename")
            in_place = [s * 1000 for s in latency.single_saves(tree, dsn, saves, atomic=False)]
            renamed = [s * 1000 for s in latency.single_saves(tree, dsn, saves, atomic=True)]
            log("  5 lessons written in three chunks, 800 ms apart")
            chunked = latency.chunked_saves(tree, dsn, files=5, pause_s=0.8)
            log(f"  {cfg.bursts} bursts of 20 lessons")
            bursts = [
                latency.burst(tree.root, staging, i, dsn, prefix="saveburst")
                for i in range(cfg.bursts)
            ]
            daemon.wait_event("heartbeat", timeout_s=60)
            synced = [
                e
                for e in daemon.events
                if e.get("event") == "course synced"
                and str(e.get("course", "")).startswith("saveburst")
            ]
    limit_ms = 150.0
    from_outside = [s.latency_ms for s in seen]
    outside_p99 = percentile(from_outside, 99)
    rows = [
        Row(
            "save_to_row",
            "save to row from outside: single saves in place (open, write, close) 400 ms apart "
            "into an idle daemon, from just before the open until a poller process (own "
            "connection, every 3 ms) sees the row (p50)",
            "ms",
            from_outside,
            comparison=f"p90 {fmt(percentile(from_outside, 90))} ms, p99 {fmt(outside_p99)} ms, "
            f"max {fmt(max(from_outside))} ms; poll interval achieved p50 "
            f"{fmt(poll.get('poll_interval_ms_p50') or 0)} ms, max "
            f"{fmt(poll.get('poll_interval_ms_max') or 0)} ms",
            target=f"p99 <= {limit_ms:.0f} ms",
            met=outside_p99 <= limit_ms,
            miss=f"p99 {fmt(outside_p99)} ms" if outside_p99 > limit_ms else "",
            details={"close_ms": [(s.closed - s.before_open) * 1000 for s in seen]},
        )
    ]
    for label, samples in (("in place (open, write, close)", in_place), ("by rename", renamed)):
        p99 = percentile(samples, 99)
        rows.append(
            Row(
                "save_to_row",
                f"save to row, single saves {label} into an idle daemon, the bench's own way "
                "(a poller thread in the bench, from after the write, 50 ms after the last) (p50)",
                "ms",
                samples,
                comparison=f"p95 {fmt(percentile(samples, 95))} ms, p99 {fmt(p99)} ms, "
                f"n={len(samples)}",
                target=f"p99 <= {limit_ms:.0f} ms",
                met=p99 <= limit_ms,
                miss=f"p99 {fmt(p99)} ms" if p99 > limit_ms else "",
            )
        )
    burst_ms = [b.after_last_s * 1000 for b in bursts]
    transactions = [int(e.get("transactions", 0)) for e in synced]
    rows.append(
        Row(
            "save_to_row",
            f"20-lesson burst into a new course, last rename to committed, {len(bursts)} bursts"
            " (p50)",
            "ms",
            burst_ms,
            comparison=f"p99 {fmt(percentile(burst_ms, 99))} ms; {len(synced)} course syncs "
            f"for {len(bursts)} bursts, {sum(transactions)} transactions",
            target="one transaction per burst",
            met=len(synced) == len(bursts) and sum(transactions) == len(bursts),
        )
    )
    rows.append(
        Row(
            "save_to_row",
            f"lessons written in 3 chunks 800 ms apart: close to row (p50), {chunked.files} files",
            "ms",
            [s * 1000 for s in chunked.close_to_row_s],
            comparison=f"{chunked.partial_versions_seen} partial versions seen in the database",
            target="0 partial versions",
            met=chunked.partial_versions_seen == 0,
        )
    )
    return rows


# ------------------------------------------------------------------ 9. idle_cpu


def idle_cpu(ctx: Context) -> list[Row]:
    """CPU of an idle daemon watching the 10,000-lesson tree."""
    cfg = ctx.config
    tree = ctx.tree(10_000)
    windows: list[float] = []
    with ctx.server.fresh_database() as db, procs.Daemon(tree.root, ctx.dsn(db)) as daemon:
        ready_s = daemon.wait_ready(timeout_s=1800)
        time.sleep(1.0)
        ctx.daemon_memory(tree.lessons).append(_memory(daemon, ready_s))
        time.sleep(2.0)
        synced = daemon.count("course synced")
        total_cpu = 0.0
        for _ in range(cfg.idle_windows):
            cpu0, t0 = procs.cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(cfg.idle_window_s)
            cpu1, t1 = procs.cpu_seconds(daemon.pid), time.monotonic()
            windows.append((cpu1 - cpu0) / (t1 - t0) * 100)
            total_cpu += cpu1 - cpu0
        if daemon.count("course synced") != synced:
            raise RuntimeError("the idle daemon synced something while measured")
    percent = median(windows)
    seconds = cfg.idle_windows * cfg.idle_window_s
    return [
        Row(
            "idle_cpu",
            f"idle daemon CPU, 10,000 lessons watched, {seconds:.0f} s "
            f"({cfg.idle_windows} windows of {cfg.idle_window_s:.0f} s)",
            "% of a core",
            windows,
            comparison=f"{total_cpu:.2f} CPU s in {seconds:.0f} s = "
            f"{total_cpu / seconds * 100:.2f}% (utime+stime, /proc/pid/stat; "
            f"{1000 / procs.clock_ticks():.0f} ms ticks)",
            target="< 1%",
            met=percent < 1,
            miss=f"{percent:.2f}%" if percent >= 1 else "",
        )
    ]


# ------------------------------------------------------------------ 10. rss


def _memory(daemon: procs.Daemon, ready_s: float) -> DaemonMemory:
    return DaemonMemory(
        peak_mb=procs.status_kb(daemon.pid, "VmHWM") / 1024,
        now_mb=procs.status_kb(daemon.pid, "VmRSS") / 1024,
        ready_s=ready_s,
    )


def rss(ctx: Context) -> list[Row]:
    """Peak RSS (VmHWM) of the daemon after its first reconcile on a cold database (a
    daemon idle_cpu started on the same tree counts as one of the runs)."""
    rows = []
    for size in ctx.config.rss_sizes:
        tree = ctx.tree(size)
        samples = ctx.daemon_memory(size)
        while len(samples) < ctx.config.rss_repeats[size]:
            with (
                ctx.server.fresh_database() as db,
                procs.Daemon(tree.root, ctx.dsn(db)) as daemon,
            ):
                ready_s = daemon.wait_ready(timeout_s=3600)
                time.sleep(1.0)
                samples.append(_memory(daemon, ready_s))
            log(
                f"  daemon {size:,} run {len(samples)}: ready after {ready_s:.1f}s, "
                f"VmHWM {samples[-1].peak_mb:.0f} MB"
            )
        peaks = [m.peak_mb for m in samples]
        peak = median(peaks)
        files = size + len(tree.courses)
        applies = size >= 100_000
        rows.append(
            Row(
                "rss",
                f"daemon peak RSS (VmHWM) after its first reconcile, {size:,} lessons "
                f"({files:,} files, {gen.tree_bytes(tree.root) / 1e6:,.0f} MB, cold database)",
                "MB",
                peaks,
                comparison=f"VmRSS afterwards {fmt(median([m.now_mb for m in samples]))} MB; "
                f"first reconcile {fmt(median([m.ready_s for m in samples]))} s",
                target="< 150 MB at 100,000 files",
                met=(peak < 150) if applies else None,
                miss=f"{fmt(peak - 150)} MB over" if applies and peak >= 150 else "",
            )
        )
    return rows


# ------------------------------------------------------------------ 11. many_sources


def many_sources_(ctx: Context) -> list[Row]:
    """20 daemons, each its own root and source, through one transaction pooler of 5 server
    connections (bench/many_sources.py, which runs alone as ``python -m bench.many_sources``)."""
    opts = many_sources.Options(runs=1 if ctx.config.quick else ctx.config.repeats)
    runs = many_sources.measure(ctx.server, ctx.tmp / "many-sources", opts)
    return many_sources.rows(runs, opts)


MEASUREMENTS: dict[str, Callable[[Context], list[Row]]] = {
    "new_course_20": new_course_20,
    "cold_backfill": cold_backfill,
    "naive": naive,
    "copy_ceiling": copy_ceiling,
    "parse_ceiling": parse_ceiling,
    "rtt5": rtt5,
    "far_links": far_links,
    "no_change_rescan": no_change_rescan,
    "latency": latency_,
    "save_to_row": save_to_row,
    "idle_cpu": idle_cpu,
    "rss": rss,
    "many_sources": many_sources_,
}


# ------------------------------------------------------------------ main


def _notes(cfg: Config) -> list[str]:
    notes = [
        "Every figure is the median of its runs (the JSON has every run); every comparison "
        "is between figures of this invocation on this server.",
        "Server: the pgserver wheel's PostgreSQL with its default configuration, durable "
        "(fsync, synchronous_commit and full_page_writes on), over a unix socket. Each "
        "measured run gets a fresh database cloned from a migrated template, after a "
        "CHECKPOINT. Trees are generated (bench/gen.py: 20-lesson courses, 4 modules of 5, "
        "curriculum.yaml, 3-6 KB lessons) and sit in the page cache.",
        "Whole-process figures time `python -m syncd --rescan --root TREE` from spawn to exit "
        "(DATABASE_URL set, SYNCD_LOG_FORMAT=json).",
        "5 ms RTT: bench/delayproxy.py (own process) delays every chunk 2.5 ms each way, "
        "as latency, not per byte; the measured `SELECT 1` round trip is in its row. The far "
        "links (50 and 150 ms RTT) are the same proxy with 25 and 75 ms each way; it counts "
        "round trips (a client sending after it last heard from the server).",
        "naive: one autocommit INSERT ... RETURNING id per row (project, outline, modules, "
        "lessons), parent ids kept in Python (no lookup SELECT): its best case, one round "
        "trip per row. COPY: content_projects then contents, one transaction, into the real "
        "tables of a fresh database (same columns, indexes incl. the GIN full-text index, "
        "FKs, checks, triggers). Both get rows prepared by syncd's own reader and parser "
        "before the clock starts (syncd's time includes reading and parsing), and neither "
        "writes syncd's bookkeeping (syncd.rows, syncd.courses).",
        f"Latency: daemon with --quiet-ms {cfg.quiet_ms} (max delay 5000 ms, default); an "
        "edit rewrites a lesson's **Revisão:** label with a token via an atomic rename; the "
        f"database is polled every {latency.POLL_S * 1000:.0f} ms, so a latency is an upper "
        "bound, at most one poll interval plus one query late (track_commit_timestamp is "
        "off). Edits go round robin over the courses, so each course is touched every "
        f"{cfg.steady_courses / cfg.steady_rate * 1000:.0f} ms.",
        "In-process new course: the reconciler logs to a no-op logger; one warm-up course "
        "is synced before the measured ones, each a new course in the same database.",
    ]
    if cfg.quick:
        notes.append(
            "--quick: smaller trees, the naive load over 5 ms RTT runs once, the daemon RSS "
            "at 100,000 files is not measured; figures are a smoke test, not the benchmark."
        )
    else:
        notes.append(
            f"The naive load over 5 ms RTT runs {cfg.naive_rtt_repeats} time(s) (a minute or "
            "more each); the daemon RSS at 100,000 files runs "
            f"{cfg.rss_repeats.get(100_000, 0)} time(s) (its first reconcile takes minutes)."
        )
    return notes


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes")
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(MEASUREMENTS),
        help="run only this measurement (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results file")
    parser.add_argument(
        "--cold-sizes",
        type=int,
        nargs="+",
        metavar="LESSONS",
        help="cold_backfill: these tree sizes (multiples of 20) instead of the mode's",
    )
    parser.add_argument(
        "--docs",
        type=Path,
        help="markdown file whose table to replace (default: docs/benchmarks.md after a full "
        "run of every measurement; none after --quick or --only)",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="far_links: also measure the syncd/ of this folder (another commit's sources, "
        "e.g. from `git archive`), each run beside one of this tree's",
    )
    return parser.parse_args(argv)


def _on_sigterm(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt("SIGTERM")


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    cfg = Config.quick_smoke() if args.quick else Config.full()
    if args.cold_sizes:
        cfg = dataclasses.replace(cfg, cold_sizes=tuple(args.cold_sizes))
    names = [n for n in MEASUREMENTS if not args.only or n in args.only]
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    rows: list[Row] = []
    notes = _notes(cfg)
    server = BenchServer()
    ctx: Context | None = None
    try:
        log("starting PostgreSQL (pgserver) and migrating the template...")
        server.__enter__()
        info = machine(server.settings())
        info["mode"] = "quick" if cfg.quick else "full"
        with contextlib.ExitStack() as stack:
            ctx = Context(cfg, server, stack, log=log, before=args.before)
            try:
                for name in names:
                    log(f"[{name}] ({time.monotonic() - started:.0f}s elapsed)")
                    try:
                        rows.extend(MEASUREMENTS[name](ctx))
                    except Exception as error:
                        log(traceback.format_exc())
                        notes.append(f"{name} FAILED: {error!r}")
            finally:
                procs.CHILDREN.kill_all()
    except KeyboardInterrupt:
        log("interrupted: stopping daemons, proxy and PostgreSQL")
        return 130
    finally:
        procs.CHILDREN.kill_all()
        server.close()
        if ctx is not None:
            ctx.close()
    info["elapsed_s"] = round(time.monotonic() - started, 1)
    info["load_average_at_end"] = load_average()
    notes.append(
        f"Total benchmark time {info['elapsed_s']:.0f} s; load average (1/5/15 min) "
        f"{info['load_average_at_start']} at the start, {info['load_average_at_end']} at the end."
    )
    if source_digest() != info["syncd_source_sha256"]:
        notes.append(
            "WARNING: syncd/ or schema/ changed while the benchmark ran "
            f"(sources sha256 {info['syncd_source_sha256']} at the start, "
            f"{source_digest()} at the end): figures may mix two versions."
        )
    print(render(rows, info, notes))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(to_json(rows, info, notes), indent=2, default=str) + "\n")
    log(f"results written to {args.out}")
    docs = args.docs or (DOCS if not cfg.quick and not args.only else None)
    if docs is not None:
        write_docs(render_table(rows, info), docs)
        log(f"table written to {docs}")
    return 1 if any("FAILED:" in note for note in notes) else 0


if __name__ == "__main__":
    sys.exit(main())
