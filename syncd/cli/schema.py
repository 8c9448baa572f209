"""``syncd migrate``: apply pending migrations, list them, or revert them."""

from __future__ import annotations

import argparse
import sys

from syncd import logs, migrate
from syncd.cli.database import db_settings, dsn_of
from syncd.config import Settings
from syncd.database import connect
from syncd.driver_errors import translated
from syncd.exits import ExitCode


def migrate_arguments(parser: argparse.ArgumentParser) -> None:
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--status",
        action="store_true",
        help="list applied, pending and unknown migrations, and applied ones whose objects"
        " are missing",
    )
    action.add_argument(
        "--rollback",
        action="store_true",
        help="revert the latest applied migration with its rollback script",
    )
    action.add_argument(
        "--rollback-to",
        metavar="VERSION",
        help="revert every applied migration later than VERSION, latest first (0: all)",
    )


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    log = logs.get()
    with connect(db_settings(settings, dsn_of(settings))) as conn, translated("migrations"):
        if args.rollback or args.rollback_to is not None:
            if args.rollback_to is not None:
                reverted = migrate.rollback_to(conn, args.rollback_to)
            else:
                last = migrate.rollback_last(conn)
                reverted = [last] if last is not None else []
            for migration in reverted:
                log.info("migration rolled back", version=migration.version, name=migration.name)
            log.info("rollback done", reverted=len(reverted))
        elif not args.status:
            applied = migrate.apply_pending(conn)
            for migration in applied:
                log.info("migration applied", version=migration.version, name=migration.name)
            log.info("migrations up to date", applied=len(applied))
        from syncd.report import table

        found = migrate.check(conn)
        rows = [
            (
                s.migration.version,
                s.migration.name,
                s.state,
                s.applied_at.isoformat(timespec="seconds") if s.applied_at else "",
            )
            for s in found.statuses
        ] + [
            (
                u.version,
                u.name,
                "unknown: not in this syncd",
                u.applied_at.isoformat(timespec="seconds"),
            )
            for u in found.unknown
        ]
    print(table(["version", "name", "state", "applied_at"], sorted(rows)))
    # Pending migrations are what `migrate` is for (and what a rollback leaves): listed,
    # exit 0. A version this syncd does not know, or objects missing: exit 4, said.
    problems = [] if not (found.unknown or found.broken) else found.problems()
    for problem in problems:
        print(problem, file=sys.stderr)
    return ExitCode.FATAL_DB if problems else ExitCode.OK
