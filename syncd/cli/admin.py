"""The commands that administer who writes and who owns: ``syncd sources`` (list, retire,
hand over) and ``syncd minds`` (list, link a signed-in user to a mind)."""

from __future__ import annotations

import argparse
from typing import Any

from syncd import logs, source_settings
from syncd.cli.database import database, store
from syncd.config import Settings
from syncd.database import connect
from syncd.driver_errors import translated
from syncd.errors import ConfigError, FatalError
from syncd.exits import ExitCode


def sources_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--retire", metavar="NAME", help="archive every course of source NAME and retire it"
    )
    parser.add_argument(
        "--hand-over",
        metavar="NAME",
        help="give every course of source NAME to the source named by --to, and retire NAME",
    )
    parser.add_argument("--to", metavar="NAME", help="the source that takes the courses")


def minds_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        nargs="?",
        choices=["link"],
        help="link: link the signed-in user --user to the mind --mind (run with the admin"
        " URL); without it: list the minds with their users and courses",
    )
    parser.add_argument("--user", help="the user's e-mail or id (auth.users)")
    parser.add_argument("--mind", help="the mind's slug; created when missing")
    parser.add_argument("--name", help="a mind created by the link: its display name")


def cmd_sources(settings: Settings, args: argparse.Namespace) -> int:
    from syncd import report

    if args.hand_over and not args.to:
        raise ConfigError("--hand-over needs --to, the source that takes the courses")
    writes = bool(args.retire or args.hand_over)
    with database(settings, migrate_now=settings.migrate, writes=writes) as db:
        course_store, close = store(db, source=settings.source_name)
        try:
            if args.retire:
                archived = course_store.retire_source(args.retire)
                logs.get().info("source retired", source=args.retire, archived=len(archived))
            if args.hand_over:
                moved = course_store.hand_over(args.hand_over, args.to)
                logs.get().info(
                    "source handed over", source=args.hand_over, to=args.to, courses=len(moved)
                )
            rows = course_store.sources()
        finally:
            close()
    columns = ["name", "root", "host", "last_seen", "retired_at"]
    headers = ["source", *columns[1:], "settings", "courses"]
    print(
        report.table(
            headers,
            [
                (*(row[c] for c in columns), _settings_text(row["settings"]), row["courses"])
                for row in rows
            ],
        )
    )
    print(f"this syncd: {settings.source_name}")
    return ExitCode.OK


def _settings_text(recorded: Any) -> str:
    if not isinstance(recorded, dict):
        return ""
    return " ".join(f"{k}={source_settings.shown(v)}" for k, v in sorted(recorded.items()))


def cmd_minds(settings: Settings, args: argparse.Namespace) -> int:
    """Who owns what (a listing), or ``link``: a signed-in user linked to their mind."""
    from syncd import minds, report

    if args.action == "link" and not (args.user and args.mind):
        raise ConfigError("syncd minds link needs --user (e-mail or id) and --mind (a slug)")
    with database(settings, migrate_now=settings.migrate, writes=False) as db, connect(db) as conn:
        try:
            with translated("minds"):
                if args.action == "link":
                    with conn.transaction():
                        linked = minds.link(conn, args.user, args.mind, args.name)
                    logs.get().info(
                        "mind linked",
                        user=str(linked.user_id),
                        mind=linked.mind,
                        created=linked.created,
                        before=linked.before,
                    )
                    print(linked)
                    return ExitCode.OK
                with conn.transaction(force_rollback=True):  # reads only
                    rows, unread = minds.listing(conn)
        except FatalError as error:
            if "permission denied" in str(error):
                raise FatalError(
                    f"{error}: `syncd minds` reads auth.users and user_profiles; run it with"
                    " the admin URL (postgres), not syncd_writer's"
                ) from error
            raise
    print(report.table(["mind", "users", "courses", "persona of"], rows))
    if unread:
        print(
            f"{len(unread)} live course(s) no signed-in user reads as its creator: "
            + ", ".join(unread)
        )
    return ExitCode.OK
