"""Round trips, which a far link charges for: a creator in São Paulo syncing into a project
in us-east-1 waits about 120 ms for each (issue 17 item 4). Counted by the proxy of
tests/proxy.py in front of the server: a round trip is a client sending after it last heard
from the server."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from syncd.tree_pass import BATCH_COURSES
from tests.helpers import make_course, run_cli
from tests.proxy import proxy_in_front_of


def test_a_cold_backfill_pays_two_round_trips_per_batch_of_courses_and_four_besides(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """`syncd --rescan` of 33 new courses: the start-up checks (pending migrations, every
    privilege the writer needs) are one round trip; the source's recorded settings one; the
    pass reads what syncd wrote in one and registers its source in one; each batch of up to 16 courses costs two (lock and
    read them all; write them all and commit); the pass's findings one. Beyond that only
    opening connections. (It was about 80 round trips of checks, and two per course.)"""
    root = tmp_path / "courses"
    for i in range(2 * BATCH_COURSES + 1):
        make_course(root, f"c{i:02d}", lessons=2)
    proxy, dsn = proxy_in_front_of(db_dsn)
    try:
        with psycopg.connect(dsn):
            pass  # what a connection costs on its own: negotiation, startup, goodbye
        assert proxy.wait_closed()
        per_connection, connections = proxy.turns, proxy.connections
        run = run_cli(capsys, ["--rescan", "--root", str(root), "--workers", "1"], dsn)
        assert proxy.wait_closed()
        turns = proxy.turns - per_connection
        opened = proxy.connections - connections
    finally:
        proxy.close()
    assert run.code == 0, run.stderr
    assert len(run.named("course synced")) == 2 * BATCH_COURSES + 1
    batches = 3  # 16 + 16 + 1
    expected = 1 + 1 + 1 + 1 + 2 * batches + 1
    # A server answer that reaches the proxy while a pipeline is still being sent makes the
    # rest of it count as another turn now and then: one or two more, never one per course.
    assert expected <= turns - opened * per_connection <= expected + 2, (turns, opened)
