"""Command line: ``syncd`` (daemon), ``syncd --rescan``, ``syncd verify``, ``syncd migrate``,
``syncd report``, ``syncd embedded-stop``. Every flag can also come from the environment
variable shown in ``--help``. Maps errors to exit codes; the only module that prints."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from syncd import config, console, embedded, health, logs, migrate, source_settings
from syncd.config import Secret, Settings
from syncd.errors import (
    AuthenticationFailed,
    ConfigError,
    FatalError,
    RootUnavailable,
    SyncdError,
    TransientError,
)
from syncd.exits import ExitCode
from syncd.parser import ParseOptions
from syncd.reconcile import Reconciler
from syncd.scheduler import CourseScheduler
from syncd.store import CourseStore, DbSettings, connect, make_pool, translated, where_to

COMMANDS = (
    "run",
    "verify",
    "migrate",
    "report",
    "sources",
    "minds",
    "health",
    "embedded-stop",
)
# The commands that use a database (DATABASE_URL, else the embedded server)
DATABASE_COMMANDS = ("run", "rescan", "verify", "migrate", "report", "sources", "minds")


def _flag(
    parser: argparse.ArgumentParser,
    env: Mapping[str, str],
    flag: str,
    var: str | None,
    help_text: str,
    **kwargs: Any,
) -> None:
    if var is not None:
        raw = env.get(var)
        if raw is not None and kwargs.get("action") == "store_true":
            kwargs["default"] = config.parse_bool(var, raw)
        elif raw is not None:
            kwargs["default"] = raw
        help_text += f" [env {var}]"
    if "default" in kwargs and kwargs.get("action") != "store_true":
        help_text += " (default: %(default)s)"
    parser.add_argument(flag, help=help_text, **kwargs)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("syncd")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _build_parser(command: str, env: Mapping[str, str]) -> argparse.ArgumentParser:
    prog = "syncd" if command in ("run", "rescan") else f"syncd {command}"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Keep a CreatorOS PostgreSQL database in step with the course folders on disk. "
        "Commands: run (default), verify, migrate, report, sources, minds, health,"
        " embedded-stop.",
        epilog="Database: DATABASE_URL (never logged); without it an embedded PostgreSQL is "
        "started in --data-dir, unless --no-embedded. Kill switch: CREATOR_OS_DB_PERSIST=false "
        "writes nothing.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {_version()}")
    f = _flag
    d = Settings()  # every default comes from Settings: one source
    f(parser, env, "--root", "SYNCD_ROOT", "course tree to sync", default=str(d.root))
    f(
        parser,
        env,
        "--data-dir",
        "SYNCD_DATA_DIR",
        "embedded PostgreSQL data directory",
        default=str(d.data_dir),
    )
    f(
        parser,
        env,
        "--no-embedded",
        "SYNCD_NO_EMBEDDED",
        "never start the embedded PostgreSQL: without DATABASE_URL in the environment, exit 2",
        action="store_true",
    )
    f(
        parser,
        env,
        "--migrate",
        "SYNCD_MIGRATE",
        "apply pending migrations first (always on for the embedded database)",
        action="store_true",
    )
    f(
        parser,
        env,
        "--creator-mind",
        "SYNCD_CREATOR_MIND",
        "slug of the mind that owns synced courses (a brief's creator_mind: overrides it; empty:"
        " none). Unset: the one recorded for the source by its writer",
        default=None,
    )
    f(
        parser,
        env,
        "--max-file-bytes",
        "SYNCD_MAX_FILE_BYTES",
        f"files larger than this are rejected (default: {d.max_file_bytes}, or the one recorded"
        " for the source by its writer)",
        type=int,
    )
    f(
        parser,
        env,
        "--log-format",
        "SYNCD_LOG_FORMAT",
        "auto, json or console",
        default=d.log_format,
        choices=("auto", "json", "console"),
    )
    f(
        parser,
        env,
        "--log-level",
        "SYNCD_LOG_LEVEL",
        "debug, info, warning or error",
        default=d.log_level,
    )
    f(
        parser,
        env,
        "--connect-timeout",
        "SYNCD_CONNECT_TIMEOUT",
        "seconds to wait for a connection",
        type=int,
        default=d.connect_timeout_s,
    )
    f(
        parser,
        env,
        "--source",
        "SYNCD_SOURCE",
        "this syncd's name in the database (default: <host name>:<absolute root>); a"
        " reconcile archives only what its own source synced",
        default=d.source,
    )
    f(
        parser,
        env,
        "--follow-symlinks",
        "SYNCD_FOLLOW_SYMLINKS",
        "follow symbolic links under the root (course folders, folders and files), wherever"
        " they point; by default (or as recorded for the source by its writer) a link is named"
        " and its rows kept, but nothing is read through it",
        action="store_true",
        default=None,
    )
    f(
        parser,
        env,
        "--workers",
        "SYNCD_WORKERS",
        "courses synced at once, by live events and full reconciles alike (one database"
        " connection each)",
        type=int,
        default=d.workers,
    )
    f(
        parser,
        env,
        "--statement-timeout-ms",
        "SYNCD_STATEMENT_TIMEOUT_MS",
        "server-side statement timeout",
        type=int,
        default=d.statement_timeout_ms,
    )
    if command in ("run", "rescan"):
        f(
            parser,
            {},
            "--rescan",
            None,
            "reconcile the whole tree once and exit",
            action="store_true",
        )
        f(
            parser,
            {},
            "--dry-run",
            None,
            "with --rescan: print the plan, write nothing",
            action="store_true",
        )
        f(
            parser,
            {},
            "--change-settings",
            None,
            "with --rescan: write with this run's --creator-mind, --max-file-bytes and"
            " --follow-symlinks where they differ from the ones recorded for the source, and"
            " record them (without it such a rescan exits 2; the daemon always records its own)",
            action="store_true",
        )
        f(
            parser,
            env,
            "--quiet-ms",
            "SYNCD_QUIET_MS",
            "debounce quiet period with --polling (inotify syncs a file when its writer closes it)",
            type=int,
            default=d.quiet_ms,
        )
        f(
            parser,
            env,
            "--max-delay-ms",
            "SYNCD_MAX_DELAY_MS",
            "debounce maximum delay",
            type=int,
            default=d.max_delay_ms,
        )
        f(
            parser,
            env,
            "--reconcile-interval",
            "SYNCD_RECONCILE_INTERVAL",
            "seconds between safety reconciles, 0 = off",
            type=float,
            default=d.reconcile_interval_s,
        )
        f(
            parser,
            env,
            "--polling",
            "SYNCD_POLLING",
            "use the polling observer (network and Docker Desktop mounts)",
            action="store_true",
        )
        f(
            parser,
            env,
            "--shutdown-timeout",
            "SYNCD_SHUTDOWN_TIMEOUT",
            "seconds to flush pending courses on SIGTERM",
            type=float,
            default=d.shutdown_timeout_s,
        )
        f(
            parser,
            env,
            "--breaker-failures",
            "SYNCD_BREAKER_FAILURES",
            "consecutive failures that open the circuit breaker",
            type=int,
            default=d.breaker_failures,
        )
        f(
            parser,
            env,
            "--breaker-reset",
            "SYNCD_BREAKER_RESET",
            "seconds the breaker stays open before a trial call",
            type=float,
            default=d.breaker_reset_s,
        )
        f(
            parser,
            env,
            "--heartbeat",
            "SYNCD_HEARTBEAT",
            "seconds between heartbeat log lines",
            type=float,
            default=d.heartbeat_s,
        )
        f(
            parser,
            env,
            "--auth-grace",
            "SYNCD_AUTH_GRACE",
            "seconds the database may reject the password (rotated while running) before the"
            " daemon exits 4",
            type=float,
            default=d.auth_grace_s,
        )
        f(
            parser,
            env,
            "--watch-retry",
            "SYNCD_WATCH_RETRY",
            "seconds between tries to watch a folder the inotify watch limit left unwatched"
            " (it is polled meanwhile)",
            type=float,
            default=d.watch_retry_s,
        )
    if command in ("run", "rescan", "health", "verify"):
        f(
            parser,
            env,
            "--health-file",
            "SYNCD_HEALTH_FILE",
            "where the daemon keeps its state for `syncd health` (default: health.json beside"
            " --data-dir)",
            default=None,
        )
    if command == "health":
        f(
            parser,
            env,
            "--stalled-after",
            "SYNCD_HEALTH_STALLED_AFTER",
            "unhealthy when the daemon's state is older than this, or its writer or watcher is"
            " stuck (seconds)",
            type=float,
            default=d.stalled_after_s,
        )
        f(
            parser,
            env,
            "--unreachable-after",
            "SYNCD_HEALTH_UNREACHABLE_AFTER",
            "unhealthy when the database has been unreachable (breaker open) this long (seconds)",
            type=float,
            default=d.unreachable_after_s,
        )
    _command_arguments(parser, command)
    return parser


def _command_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """The arguments of one command alone (migrate, sources, verify, minds)."""
    if command == "migrate":
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
    if command == "sources":
        parser.add_argument(
            "--retire", metavar="NAME", help="archive every course of source NAME and retire it"
        )
        parser.add_argument(
            "--hand-over",
            metavar="NAME",
            help="give every course of source NAME to the source named by --to, and retire NAME",
        )
        parser.add_argument("--to", metavar="NAME", help="the source that takes the courses")
    if command == "verify":
        parser.add_argument(
            "--json", action="store_true", help="print the findings as one JSON object"
        )
    if command == "minds":
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


def _opt(args: argparse.Namespace, name: str, setting: str) -> Any:
    """A daemon option, or the ``Settings`` default for commands that do not take it."""
    value = getattr(args, name, None)
    return getattr(Settings, setting) if value is None else value


def _settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    given = {  # the settings that shape rows, given by a flag or a variable (even empty)
        "creator_mind": args.creator_mind is not None,
        "max_file_bytes": args.max_file_bytes is not None,
        "follow_symlinks": args.follow_symlinks is not None,
    }
    return config.check(
        Settings(
            root=Path(args.root),
            database_url=config.database_url_from_env(env),
            data_dir=Path(args.data_dir),
            creator_mind=args.creator_mind or None,
            persist=config.persist_from_env(env),
            migrate=bool(args.migrate),
            max_file_bytes=int(_opt(args, "max_file_bytes", "max_file_bytes")),
            log_format=args.log_format,
            log_level=args.log_level,
            connect_timeout_s=int(args.connect_timeout),
            workers=int(args.workers),
            statement_timeout_ms=int(args.statement_timeout_ms),
            follow_symlinks=bool(args.follow_symlinks),
            source=str(args.source or ""),
            no_embedded=bool(args.no_embedded),
            explicit=frozenset(name for name, yes in given.items() if yes),
            quiet_ms=int(_opt(args, "quiet_ms", "quiet_ms")),
            max_delay_ms=int(_opt(args, "max_delay_ms", "max_delay_ms")),
            reconcile_interval_s=float(_opt(args, "reconcile_interval", "reconcile_interval_s")),
            polling=bool(_opt(args, "polling", "polling")),
            shutdown_timeout_s=float(_opt(args, "shutdown_timeout", "shutdown_timeout_s")),
            breaker_failures=int(_opt(args, "breaker_failures", "breaker_failures")),
            breaker_reset_s=float(_opt(args, "breaker_reset", "breaker_reset_s")),
            heartbeat_s=float(_opt(args, "heartbeat", "heartbeat_s")),
            auth_grace_s=float(_opt(args, "auth_grace", "auth_grace_s")),
            watch_retry_s=float(_opt(args, "watch_retry", "watch_retry_s")),
            health_file=Path(args.health_file) if getattr(args, "health_file", None) else None,
            stalled_after_s=float(_opt(args, "stalled_after", "stalled_after_s")),
            unreachable_after_s=float(_opt(args, "unreachable_after", "unreachable_after_s")),
        )
    )


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    env = config.environ() if env is None else env
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    secrets: list[str] = []
    try:
        database_url = config.database_url_from_env(env)
        secrets = config.dsn_secrets(database_url.reveal()) if database_url else []
        fmt = env.get("SYNCD_LOG_FORMAT", "auto")
        logs.configure(fmt=fmt if fmt in ("json", "console") else "auto", secrets=secrets)
        args = _build_parser(command, env).parse_args(argv)
        settings = _settings(args, env)
        logs.configure(
            fmt=settings.log_format, level=settings.log_level, secrets=settings.secrets()
        )
        if command == "run" and args.rescan:
            command = "rescan"
        if command in DATABASE_COMMANDS:
            config.check_database(settings)
        if command in ("run", "rescan", "verify", "sources"):
            config.check_source(settings, env)
        if command in ("run", "rescan", "verify"):
            _check_root(settings.root)  # before the database: a failed command writes nothing
        return _COMMANDS[command](settings, args)
    except ConfigError as error:
        return _fail(ExitCode.CONFIG, "configuration error", error, secrets)
    except RootUnavailable as error:
        return _fail(ExitCode.ROOT_UNAVAILABLE, "course root unavailable", error, secrets)
    except TransientError as error:
        return _fail(ExitCode.UNREACHABLE, "database unavailable", error, secrets)
    except AuthenticationFailed as error:
        return _fail(ExitCode.FATAL_DB, "database authentication failed", error, secrets)
    except FatalError as error:
        return _fail(ExitCode.FATAL_DB, "database refused syncd", error, secrets)
    except SyncdError as error:
        return _fail(ExitCode.FATAL_DB, "error", error, secrets)
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


def _check_root(root: Path) -> None:
    """The course root is there and readable, or RootUnavailable (exit 5) before anything is
    started, migrated or registered. (A root that is there but empty while the database has
    courses is found by the reconcile, before it writes.)"""
    try:
        with os.scandir(root):
            pass
    except (FileNotFoundError, NotADirectoryError):
        raise RootUnavailable(
            f"course root {root} is missing or not a folder: set --root (SYNCD_ROOT)"
        ) from None
    except OSError as exc:
        raise RootUnavailable(
            f"course root {root} is unreadable: {exc.strerror}: check --root (SYNCD_ROOT)"
        ) from None


def _fail(code: int, what: str, error: Exception, secrets: list[str]) -> int:
    logs.get().error(what, reason=config.redact(str(error), secrets), exit_code=code)
    return code


# ---------------------------------------------------------------- database access


def _db_settings(settings: Settings, dsn: str) -> DbSettings:
    return DbSettings(
        dsn=dsn,
        connect_timeout_s=settings.connect_timeout_s,
        statement_timeout_ms=settings.statement_timeout_ms,
    )


@contextmanager
def _database(
    settings: Settings, *, migrate_now: bool, writes: bool = True
) -> Iterator[DbSettings]:
    """Where to connect, migrations applied when asked (always for the embedded server)."""
    log = logs.get()
    if settings.database_url is not None:
        dsn = settings.database_url.reveal()
        log.info("database", dsn=config.redact_dsn(dsn))
    else:
        server = embedded.start(settings.data_dir)
        dsn = server.dsn
        migrate_now = True
        log.info("embedded database ready", data_dir=str(server.data_dir), psql=server.psql_command)
    db = _db_settings(settings, dsn)
    with connect(db) as conn, translated("migrations"):
        if migrate_now:
            for migration in migrate.apply_pending(conn):
                log.info("migration applied", version=migration.version, name=migration.name)
        schema, missing = migrate.preflight(conn, writes=writes)
        problems = schema.problems()
        if problems:
            raise FatalError("; ".join(problems))
        if missing:
            raise FatalError(
                "the database role lacks what syncd needs: "
                + "; ".join(missing)
                + " (grant the syncd_writer role, see README: Security)"
            )
    yield db


def _store(
    db: DbSettings, workers: int = 1, source: str | None = None
) -> tuple[CourseStore, Callable[[], None]]:
    """A store on a pool of ``workers`` connections (no per-checkout health check: a
    one-shot command that loses its database fails with exit 3 and is simply rerun)."""
    pool = make_pool(db, workers=workers, check=_no_check)
    with translated(where_to(db)):
        pool.open(wait=True, timeout=db.connect_timeout_s * 2)
    return CourseStore(pool.connection, source=source), pool.close


def _no_check(_conn: Any) -> None:
    return None


def _source_settings(
    settings: Settings, store: CourseStore, *, refuse: str | None = None
) -> tuple[Settings, list[source_settings.Difference]]:
    """The settings this command runs with: those that shape rows and were not given are
    the ones recorded for the source (read through ``store``, on a connection the command
    has anyway). Given ones unlike the recorded ones are returned; with ``refuse`` (what to
    do instead), they are a configuration error naming each."""
    resolved, differences = source_settings.resolve(settings, store.source_settings())
    if differences and refuse is not None:
        raise ConfigError(
            "; ".join(str(d) for d in differences)
            + f" (source {settings.source_name!r}, syncd.sources.settings): {refuse}"
        )
    return resolved, differences


def _one_connection(conn: Any, settings: Settings) -> CourseStore:
    """A store of this source on one open connection."""
    return CourseStore(lambda: nullcontext(conn), source=settings.source_name)


def _database_label(settings: Settings, db: DbSettings) -> str:
    """Which database a command answered for, without its password."""
    if settings.database_url is None:
        return f"the embedded database in {settings.data_dir}"
    return f"the database {config.database_label(db.dsn)}"


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


# ---------------------------------------------------------------- commands


def cmd_rescan(settings: Settings, args: argparse.Namespace) -> int:
    write = settings.persist and not args.dry_run
    log = logs.get()
    if not settings.persist:
        log.warning("kill switch on: CREATOR_OS_DB_PERSIST is false, nothing is written")
    with _database(settings, migrate_now=settings.migrate, writes=write) as db:
        store, close = _store(db, settings.workers, settings.source_name)
        scheduler = CourseScheduler(settings.workers)
        try:
            settings, _ = _source_settings(
                settings,
                store,
                refuse=None
                if args.change_settings
                else "run without it to write with the recorded value, or with --change-settings"
                " to write with this one and record it (and give it to this source's daemon too)",
            )
            reconciler = _reconciler(settings, store, write=write)
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

    with _database(settings, migrate_now=settings.migrate, writes=False) as db:
        where = _database_label(settings, db)
        store, close = _store(db, source=settings.source_name)
        try:
            settings, _ = _source_settings(
                settings,
                store,
                refuse="the source's rows were written with the recorded value: run without the"
                " setting to verify with it, or change it where the source's writer runs (its"
                " daemon's environment, or `syncd --rescan --change-settings`)",
            )
            report = verify(
                settings.root,
                store,
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


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    log = logs.get()
    if settings.database_url is not None:
        dsn = settings.database_url.reveal()
    else:
        dsn = embedded.start(settings.data_dir).dsn
    with connect(_db_settings(settings, dsn)) as conn, translated("migrations"):
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


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from syncd import daemon

    with _database(settings, migrate_now=settings.migrate, writes=settings.persist) as db:
        # what it was not given is the source's; what it was given is the source's from now
        # on (its reconciler records it, logging `source settings changed`)
        with connect(db) as conn:
            settings, _ = _source_settings(settings, _one_connection(conn, settings))
        code: int = daemon.run(settings, db)
    return code


def cmd_report(settings: Settings, _args: argparse.Namespace) -> int:
    from syncd import report

    with _database(settings, migrate_now=settings.migrate, writes=False) as db, connect(db) as conn:
        _, differences = _source_settings(settings, _one_connection(conn, settings))
        with translated("report"), conn.transaction(force_rollback=True):  # reads only
            text = report.render(conn)
    print(text)
    for difference in differences:  # the report uses none of them; verify would refuse
        print(
            f"note: {difference} (source {settings.source_name!r}; see the Sources table)",
            file=sys.stderr,
        )
    return ExitCode.OK


def cmd_sources(settings: Settings, args: argparse.Namespace) -> int:
    from syncd import report

    if args.hand_over and not args.to:
        raise ConfigError("--hand-over needs --to, the source that takes the courses")
    writes = bool(args.retire or args.hand_over)
    with _database(settings, migrate_now=settings.migrate, writes=writes) as db:
        store, close = _store(db, source=settings.source_name)
        try:
            if args.retire:
                archived = store.retire_source(args.retire)
                logs.get().info("source retired", source=args.retire, archived=len(archived))
            if args.hand_over:
                moved = store.hand_over(args.hand_over, args.to)
                logs.get().info(
                    "source handed over", source=args.hand_over, to=args.to, courses=len(moved)
                )
            rows = store.sources()
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


def cmd_minds(settings: Settings, args: argparse.Namespace) -> int:
    """Who owns what (a listing), or ``link``: a signed-in user linked to their mind."""
    from syncd import minds, report

    if args.action == "link" and not (args.user and args.mind):
        raise ConfigError("syncd minds link needs --user (e-mail or id) and --mind (a slug)")
    with _database(settings, migrate_now=settings.migrate, writes=False) as db, connect(db) as conn:
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


def _settings_text(recorded: Any) -> str:
    if not isinstance(recorded, dict):
        return ""
    return " ".join(f"{k}={source_settings.shown(v)}" for k, v in sorted(recorded.items()))


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


_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "run": cmd_run,
    "rescan": cmd_rescan,
    "verify": cmd_verify,
    "migrate": cmd_migrate,
    "report": cmd_report,
    "sources": cmd_sources,
    "minds": cmd_minds,
    "health": cmd_health,
    "embedded-stop": cmd_embedded_stop,
}

__all__ = ["Secret", "main"]
