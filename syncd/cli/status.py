"""The commands that tell how things stand: ``syncd report`` (monitoring tables),
``syncd health`` (the running daemon's verdict) and ``syncd embedded-stop``."""

from __future__ import annotations

import argparse
import sys

from syncd import embedded, health
from syncd.cli.database import database, one_connection, with_source_settings
from syncd.config import Settings
from syncd.database import connect
from syncd.driver_errors import translated
from syncd.exits import ExitCode


def cmd_report(settings: Settings, _args: argparse.Namespace) -> int:
    from syncd import report

    with database(settings, migrate_now=settings.migrate, writes=False) as db, connect(db) as conn:
        _, differences = with_source_settings(settings, one_connection(conn, settings))
        with translated("report"), conn.transaction(force_rollback=True):  # reads only
            text = report.render(conn)
    print(text)
    for difference in differences:  # the report uses none of them; verify would refuse
        print(
            f"note: {difference} (source {settings.source_name!r}; see the Sources table)",
            file=sys.stderr,
        )
    return ExitCode.OK


def cmd_health(settings: Settings, _args: argparse.Namespace) -> int:
    """Reads the running daemon's state file: no database, no network, nothing written."""
    healthy, why = health.verdict(
        settings.health_path,
        stalled_after_s=settings.stalled_after_s,
        unreachable_after_s=settings.unreachable_after_s,
    )
    print(why)
    return ExitCode.OK if healthy else ExitCode.UNHEALTHY


def cmd_embedded_stop(settings: Settings, _args: argparse.Namespace) -> int:
    stopped = embedded.stop(settings.data_dir)
    print("embedded PostgreSQL stopped" if stopped else "no embedded PostgreSQL running")
    return ExitCode.OK
