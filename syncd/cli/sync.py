"""The commands that hold the tree against the database: ``syncd`` (the daemon),
``syncd --rescan`` (the whole tree once) and ``syncd verify`` (the whole truth)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from syncd import config, console, health, logs
from syncd.cli.database import database, label, one_connection, store, with_source_settings
from syncd.config import Settings
from syncd.course import ParseOptions
from syncd.database import connect
from syncd.exits import ExitCode
from syncd.reconcile import Reconciler
from syncd.scheduler import CourseScheduler
from syncd.store import CourseStore


def run_arguments(parser: argparse.ArgumentParser) -> None:
    """``syncd``'s own arguments besides its settings."""
    parser.add_argument(
        "--rescan", action="store_true", help="reconcile the whole tree once and exit"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --rescan: print the plan, write nothing"
    )
    parser.add_argument(
        "--change-settings",
        action="store_true",
        help="with --rescan: write with this run's --creator-mind, --max-file-bytes and"
        " --follow-symlinks where they differ from the ones recorded for the source, and"
        " record them (without it such a rescan exits 2; the daemon always records its own)",
    )


def verify_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the findings as one JSON object")


def _reconciler(settings: Settings, store: CourseStore, *, write: bool) -> Reconciler:
    return Reconciler(
        root=settings.root,
        store=store,
        log=logs.get(),
        options=ParseOptions(default_creator_mind=settings.creator_mind),
        max_file_bytes=settings.max_file_bytes,
        write=write,
        follow_symlinks=settings.follow_symlinks,
        host=config.host_name(),
    )


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from syncd import daemon

    with database(settings, migrate_now=settings.migrate, writes=settings.persist) as db:
        # what it was not given is the source's; what it was given is the source's from now
        # on (its reconciler records it, logging `source settings changed`)
        with connect(db) as conn:
            settings, _ = with_source_settings(settings, one_connection(conn, settings))
        code: int = daemon.run(settings, db)
    return code


def cmd_rescan(settings: Settings, args: argparse.Namespace) -> int:
    write = settings.persist and not args.dry_run
    log = logs.get()
    if not settings.persist:
        log.warning("kill switch on: CREATOR_OS_DB_PERSIST is false, nothing is written")
    with database(settings, migrate_now=settings.migrate, writes=write) as db:
        course_store, close = store(
            db, settings.workers, settings.source_name, settings.history_retention
        )
        scheduler = CourseScheduler(settings.workers)
        try:
            settings, _ = with_source_settings(
                settings,
                course_store,
                refuse=None
                if args.change_settings
                else "run without it to write with the recorded value, or with --change-settings"
                " to write with this one and record it (and give it to this source's daemon too)",
            )
            reconciler = _reconciler(settings, course_store, write=write)
            reconciler.keep_plans = bool(args.dry_run)
            with console.rescan_progress() as progress:
                try:
                    summary = reconciler.reconcile_all(scheduler, progress=progress)
                except KeyboardInterrupt:
                    log.warning(
                        "rescan interrupted",
                        done=progress.done,
                        total=progress.total,
                        hint="rerun `syncd --rescan`: it resumes, skipping courses already synced",
                    )
                    return ExitCode.INTERRUPTED
            if args.dry_run:
                for result in reconciler.last_results:
                    _print_plan(result)
        finally:
            scheduler.shutdown()
            close()
    console.print_summary(summary, write=write)
    secrets = settings.secrets()  # a reason may quote the server's message: never a secret
    if summary.rejected:
        print(f"{len(summary.rejected)} file(s) rejected:", file=sys.stderr)
        for issue in summary.rejected:
            print(f"  {issue.path}: {config.redact(issue.reason, secrets)}", file=sys.stderr)
    if summary.failed:  # whole courses refused or failed: not everything reached it
        print(f"{len(summary.failed)} course(s) failed:", file=sys.stderr)
        for course, failure in summary.failed.items():
            print(f"  {course}: {config.redact(failure.reason, secrets)}", file=sys.stderr)
        return ExitCode.DRIFT
    return ExitCode.OK


def _print_plan(result: Any) -> None:
    plan = result.plan
    if plan is None:
        return
    print(
        f"{result.course}: insert {len(plan.inserts)}, update {len(plan.updates)}, "
        f"soft-delete {len(plan.deletes)}, unchanged {plan.unchanged}"
    )
    for write in plan.inserts:
        print(f"  + {write.record.file_path or write.record.key}  [{write.record.content_type}]")
    for write in plan.updates:
        print(f"  ~ {write.record.file_path or write.record.key}  [{write.record.content_type}]")


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from syncd.verify import verify

    with database(settings, migrate_now=settings.migrate, writes=False) as db:
        where = label(settings, db)
        course_store, close = store(db, source=settings.source_name)
        try:
            settings, _ = with_source_settings(
                settings,
                course_store,
                refuse="the source's rows were written with the recorded value: run without the"
                " setting to verify with it, or change it where the source's writer runs (its"
                " daemon's environment, or `syncd --rescan --change-settings`)",
            )
            report = verify(
                settings.root,
                course_store,
                ParseOptions(default_creator_mind=settings.creator_mind),
                settings.max_file_bytes,
                follow_symlinks=settings.follow_symlinks,
            )
        finally:
            close()
    report.unwatched = health.unwatched(
        settings.health_path, stalled_after_s=settings.stalled_after_s
    )
    if args.json:
        print(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        for drift in report.drifts:
            print(drift)
        for folder in report.skipped:
            print(f"{'not-a-course':12} {folder.folder}  ({folder.files} file(s), skipped)")
        for unwatched in report.unwatched:
            print(
                f"{'unwatched':12} {unwatched}  (the running daemon cannot watch it: inotify"
                " watch limit, fs.inotify.max_user_watches; it polls it meanwhile)"
            )
    if report.unwatched:
        print(
            f"{len(report.unwatched)} folder(s) not watched by the running daemon (polled"
            " instead, not a drift): raise fs.inotify.max_user_watches",
            file=sys.stderr,
        )
    if not report.in_sync:
        print(
            f"{len(report.drifts)} file(s) or row(s) differ between {settings.root} and {where}",
            file=sys.stderr,
        )
        return ExitCode.DRIFT
    print(f"in sync: {settings.root} and {where} agree", file=sys.stderr)
    return ExitCode.OK
