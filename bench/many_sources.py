"""Dozens of sources on one project (issue 17, item 3), measured: ``python -m bench.many_sources
[--daemons 20] [--courses 2] [--edits 6] [--rounds 5] [--workers 2] [--pool-size 5] [--runs 3]
[--no-direct] [--out FILE]``; ``python -m bench.run --only many_sources`` runs the same with the
defaults.

Starts a PostgreSQL (the pgserver wheel, as bench/pg.py) with PgBouncer (Debian's package,
started as the suite's tests/pgbouncer.py does) in front of it in transaction mode, with a
server pool of ``--pool-size`` connections. Each run gets a fresh database and starts
``--daemons`` daemons at once (``python -m syncd``, role syncd_writer, ``--workers``), each on
a root of its own (``--courses`` generated 20-lesson courses) with a source of its own. Then:

1. start: from spawning the daemons until the last one says "daemon ready" (each has synced
   its courses into the empty database, all of them through the pooler at once);
2. converge, ``--rounds`` times: every root gets ``--edits`` edits written at once (each a
   lesson of its own, whose **Revisão:** label becomes a new token, by an atomic rename), the
   roots one after the other, round robin (a round's writes take a few ms); the time from
   before the first write until the database holds every token, polled every 10 ms over a
   direct connection (an upper bound by at most one poll);
3. connections, sampled every 20 ms for the whole run: syncd's server connections from
   pg_stat_activity (open; in use: not idle), and from PgBouncer's SHOW POOLS its client
   connections (active + waiting for a server) and those waiting.

Each run is repeated with the daemons connected to PostgreSQL directly (no pooler), unless
``--no-direct``. Figures are medians over the runs (over every round of every run for the
convergence); the connection counts are the most seen in any run. A daemon that exits, a
course that fails or is archived, or a log line naming a deadlock or a connection limit
fails the run."""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bench import gen, latency, procs
from bench.pg import BenchServer
from bench.report import Row, fmt, load_average, machine, median, render
from tests.pgbouncer import TROUBLE, Bouncer, ServerConnections

WRITER = "syncd_writer"
POLL_S = 0.01
LANDED_QUERY = (
    "SELECT count(*) FROM public.contents WHERE deleted_at IS NULL"
    " AND metadata->'labels'->>%(label)s = ANY(%(tokens)s::text[])"
)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Options:
    daemons: int = 20
    courses: int = 2
    edits: int = 6
    rounds: int = 5
    workers: int = 2
    pool_size: int = 5
    runs: int = 3
    direct: bool = True


@dataclass
class Run:
    """One run: ``daemons`` daemons started on a fresh database, then the edit rounds."""

    path: str  # "pooler" or "direct"
    start_s: float
    converge_s: list[float]
    most_open: int
    most_busy: int
    most_clients: int
    most_waiting: int
    samples: int
    failed_courses: int
    exit_codes: list[int] = field(default_factory=list)


def _roots(workdir: Path, opts: Options) -> list[gen.Tree]:
    lessons = opts.courses * gen.LESSONS_PER_COURSE
    return [
        gen.generate(workdir / f"m{i:02d}", lessons, prefix=f"m{i:02d}")
        for i in range(opts.daemons)
    ]


def _edit_round(trees: list[gen.Tree], opts: Options, round_no: int) -> list[str]:
    """``opts.edits`` lessons of every root rewritten with a token each, round robin over
    the roots, so that every root is being edited at the same moment."""
    label = f"**{gen.REVISION_LABEL}:** "
    tokens = []
    for k in range(opts.edits):
        for i, tree in enumerate(trees):
            files = sorted(tree.root.glob("*/lessons/*.md"))
            path = files[(round_no * opts.edits + k) % len(files)]
            token = f"m{i:02d}-r{round_no}-e{k}-{time.monotonic_ns()}"
            text = re.sub(
                re.escape(label) + r"\S+", label + token, path.read_text(encoding="utf-8")
            )
            latency.write_atomic(path, text)
            tokens.append(token)
    return tokens


def _wait_landed(
    admin: str, tokens: list[str], daemons: list[procs.Daemon], timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(admin, autocommit=True) as conn:
        while True:
            row = conn.execute(
                LANDED_QUERY, {"label": gen.REVISION_LABEL, "tokens": tokens}
            ).fetchone()
            if row is not None and row[0] == len(tokens):
                return
            for daemon in daemons:
                if daemon.proc.poll() is not None:
                    tail = "".join(daemon.lines[-30:])
                    raise RuntimeError(f"a daemon exited ({daemon.proc.returncode}):\n{tail}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(tokens) - (row or (0,))[0]} edit(s) never landed")
            time.sleep(POLL_S)


def one_run(
    server: BenchServer,
    bouncer: Bouncer | None,
    trees: list[gen.Tree],
    workdir: Path,
    opts: Options,
) -> Run:
    path = "pooler" if bouncer is not None else "direct"
    with server.fresh_database() as db:
        admin = server.dsn(db)
        dsn = bouncer.dsn(db, WRITER) if bouncer else make_conninfo(admin, user=WRITER)
        daemons: list[procs.Daemon] = []
        try:
            with ServerConnections(admin, db, WRITER, bouncer) as sampled:
                started = time.monotonic()
                for i, tree in enumerate(trees):
                    health = workdir / f"health-{i:02d}.json"
                    args = (
                        *("--workers", str(opts.workers), "--source", f"bench-{i:02d}"),
                        *("--health-file", str(health)),
                    )
                    daemons.append(procs.Daemon(tree.root, dsn, args))
                for daemon in daemons:
                    daemon.wait_ready(timeout_s=600)
                start_s = time.monotonic() - started
                log(f"  {path}: {len(daemons)} daemons ready after {start_s:.1f} s")
                converge = []
                for r in range(opts.rounds):
                    time.sleep(0.5)  # every daemon idle again
                    began = time.monotonic()
                    tokens = _edit_round(trees, opts, r)
                    _wait_landed(admin, tokens, daemons, timeout_s=300)
                    converge.append(time.monotonic() - began)
                    log(f"    round {r + 1}: {len(tokens)} edits in {converge[-1] * 1000:.0f} ms")
            for daemon in daemons:  # one SIGTERM each, all at once
                daemon.proc.terminate()
            codes = [daemon.proc.wait(timeout=60) for daemon in daemons]
        finally:
            for daemon in daemons:
                daemon.stop(timeout_s=5)
    failed = sum(daemon.count("course failed") for daemon in daemons)
    archived = sum(daemon.count("course archived") for daemon in daemons)
    trouble = [line for daemon in daemons for line in daemon.lines if TROUBLE.search(line)]
    if trouble or any(codes) or failed or archived:
        raise RuntimeError(
            f"{path}: exit codes {codes}, {failed} failed course(s), {archived} archived, "
            f"trouble: {trouble[:5]}"
        )
    return Run(
        path,
        start_s,
        converge,
        sampled.most_open,
        sampled.most_busy,
        sampled.most_clients,
        sampled.most_waiting,
        sampled.samples,
        failed,
        codes,
    )


def measure(server: BenchServer, workdir: Path, opts: Options) -> list[Run]:
    """Every run of both paths, interleaved (pooler, direct, pooler, ...) on ``server``."""
    with psycopg.connect(server.admin_dsn, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE {WRITER} LOGIN")  # the role syncd runs as on Supabase
    trees = _roots(workdir / "roots", opts)
    params = conninfo_to_dict(server.admin_dsn)
    bouncer = Bouncer(
        Path(str(params["host"])),
        "transaction",
        pool_size=opts.pool_size,
        upstream_port=int(params.get("port") or 5432),
    )
    bouncer.start()
    runs = []
    try:
        for i in range(opts.runs):
            log(f"  run {i + 1} of {opts.runs}")
            runs.append(one_run(server, bouncer, trees, workdir, opts))
            if opts.direct:
                runs.append(one_run(server, None, trees, workdir, opts))
    finally:
        bouncer.close()
    return runs


def rows(runs: list[Run], opts: Options) -> list[Row]:
    pooled = [r for r in runs if r.path == "pooler"]
    direct = [r for r in runs if r.path == "direct"]
    shape = (
        f"{opts.daemons} daemons (--workers {opts.workers}), each its own root "
        f"({opts.courses} courses of 20 lessons) and source"
    )
    edits = opts.daemons * opts.edits

    def most(group: list[Run], name: str) -> int:
        return max(int(getattr(r, name)) for r in group)

    def converge_ms(group: list[Run]) -> list[float]:
        return [s * 1000 for r in group for s in r.converge_s]

    direct_start = (
        f"direct (no pooler): {fmt(median([r.start_s for r in direct]))} s" if direct else ""
    )
    direct_converge = (
        f"; direct (no pooler): {fmt(median(converge_ms(direct)))} ms" if direct else ""
    )

    return [
        Row(
            "many_sources",
            f"{shape}, through a transaction pooler of {opts.pool_size} server connections: "
            "all started at once on an empty database, until the last is ready",
            "s",
            [r.start_s for r in pooled],
            comparison=direct_start,
        ),
        Row(
            "many_sources",
            f"the same: {edits} edits ({opts.edits} per root) written at once, until every "
            "one is in the database (time to converge)",
            "ms",
            converge_ms(pooled),
            comparison=f"max {fmt(max(converge_ms(pooled)))} ms{direct_converge}",
        ),
        Row(
            "many_sources",
            "the same: the most server connections of syncd's (pg_stat_activity every 20 ms)",
            "",
            [float(r.most_open) for r in pooled],
            comparison=f"in use (not idle) at most {most(pooled, 'most_busy')}; PgBouncer's "
            f"clients at most {most(pooled, 'most_clients')}, waiting at most "
            f"{most(pooled, 'most_waiting')}"
            + (
                f"; direct: {most(direct, 'most_open')} server connections, "
                f"{most(direct, 'most_busy')} in use"
                if direct
                else ""
            ),
            target=f"<= {opts.pool_size}",
            met=most(pooled, "most_open") <= opts.pool_size,
            miss=f"{most(pooled, 'most_open')} seen",
        ),
    ]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    d = Options()
    parser = argparse.ArgumentParser(prog="python -m bench.many_sources", description=__doc__)
    parser.add_argument("--daemons", type=int, default=d.daemons)
    parser.add_argument("--courses", type=int, default=d.courses, help="20-lesson courses each")
    parser.add_argument("--edits", type=int, default=d.edits, help="edits per root per round")
    parser.add_argument("--rounds", type=int, default=d.rounds)
    parser.add_argument("--workers", type=int, default=d.workers, help="each daemon's --workers")
    parser.add_argument("--pool-size", type=int, default=d.pool_size)
    parser.add_argument("--runs", type=int, default=d.runs)
    parser.add_argument("--no-direct", action="store_true", help="through the pooler only")
    parser.add_argument("--out", type=Path, help="JSON results file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    opts = Options(
        daemons=args.daemons,
        courses=args.courses,
        edits=args.edits,
        rounds=args.rounds,
        workers=args.workers,
        pool_size=args.pool_size,
        runs=args.runs,
        direct=not args.no_direct,
    )
    workdir = Path(tempfile.mkdtemp(prefix="syncd-bench-many-"))
    try:
        with BenchServer() as server:
            info = machine(server.settings())
            info["mode"] = "many_sources"
            runs = measure(server, workdir, opts)
    finally:
        procs.CHILDREN.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    notes = [
        f"load average {info['load_average_at_start']} at the start, {load_average()} at the end"
    ]
    print(render(rows(runs, opts), info, notes))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = {"options": asdict(opts), "machine": info, "runs": [asdict(r) for r in runs]}
        args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
