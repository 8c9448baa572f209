"""What the content history costs in storage: ``python -m bench.history_storage [--lessons N]
[--versions V]``.

Generates a tree of N lessons (bench/gen.py: 3-6 KB each), syncs it with ``syncd --rescan``
on a fresh database (version 1 of every row), then V-1 times rewrites every lesson (a new
paragraph; the rest of the text stays, as a regeneration or an edit mostly does) and syncs
again, so that each lesson row has V versions. Prints the sizes PostgreSQL reports for
``content_versions`` (heap, TOAST, indexes) beside ``contents`` and the tree on disk.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench import gen, procs
from bench.pg import BenchServer


def _sizes(dsn: str, table: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select pg_total_relation_size(c.oid), pg_relation_size(c.oid),"
            " coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),"
            " pg_indexes_size(c.oid), (select count(*) from " + table + ")"
            " from pg_class c where c.oid = %s::regclass",
            (table,),
        ).fetchone()
    assert row is not None
    return dict(zip(("total", "heap", "toast", "indexes", "rows"), row, strict=True))


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:,.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history_storage", description=__doc__)
    parser.add_argument("--lessons", type=int, default=10_000, help="a multiple of 20")
    parser.add_argument("--versions", type=int, default=10, help="versions of each lesson")
    args = parser.parse_args(argv)
    with BenchServer() as server, tempfile.TemporaryDirectory() as tmp:
        tree = gen.generate(Path(tmp) / "courses", args.lessons)
        db = server.create_database()
        dsn = server.dsn(db)
        lessons = sorted(tree.root.glob("*/lessons/*.md"))
        started = time.monotonic()
        for version in range(1, args.versions + 1):
            if version > 1:
                for path in lessons:
                    with path.open("a", encoding="utf-8") as out:
                        out.write(f"\nRevision {version}: one more paragraph of the lesson.\n")
            run = procs.rescan(tree.root, dsn)
            print(f"version {version}: rescan {run.wall_s:.1f} s", file=sys.stderr, flush=True)
        history = _sizes(dsn, "public.content_versions")
        contents = _sizes(dsn, "public.contents")
        on_disk = gen.tree_bytes(tree.root)
        print(
            f"{args.lessons:,} lessons x {args.versions} versions "
            f"({history['rows']:,} versions of {contents['rows']:,} rows; "
            f"{time.monotonic() - started:.0f} s)\n"
        )
        print("| table | total | heap | TOAST | indexes |")
        print("|---|---|---|---|---|")
        for name, s in (("content_versions", history), ("contents", contents)):
            print(
                f"| {name} | {_mb(s['total'])} | {_mb(s['heap'])} | {_mb(s['toast'])} |"
                f" {_mb(s['indexes'])} |"
            )
        print(f"\nThe tree on disk (latest versions): {_mb(on_disk)}.")
        print(
            f"Per version: {history['total'] / max(history['rows'], 1):,.0f} bytes "
            f"(the lessons average {on_disk / args.lessons:,.0f} bytes)."
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
