"""The command line: which command (``syncd`` alone is ``run``; a mistyped one is named,
with the list), its parser (its settings' flags, from config.Settings, and its own
arguments), its settings (a flag, else the environment variable, else the default), the
checks every command makes before it starts, and each error as an exit code."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from syncd import config, logs, settings
from syncd.cli import admin, history, schema, status, sync
from syncd.config import Settings
from syncd.errors import (
    AuthenticationFailed,
    ConfigError,
    FatalError,
    RootUnavailable,
    SyncdError,
    TransientError,
)
from syncd.exits import ExitCode

Run = Callable[[Settings, argparse.Namespace], int]


@dataclass(frozen=True)
class Command:
    run: Run
    arguments: Callable[[argparse.ArgumentParser], None] | None = None


COMMANDS: dict[str, Command] = {  # in the order of settings.COMMANDS, which says each
    "run": Command(sync.cmd_run, sync.run_arguments),
    "verify": Command(sync.cmd_verify, sync.verify_arguments),
    "migrate": Command(schema.cmd_migrate, schema.migrate_arguments),
    "report": Command(status.cmd_report),
    "sources": Command(admin.cmd_sources, admin.sources_arguments),
    "minds": Command(admin.cmd_minds, admin.minds_arguments),
    "history": Command(history.cmd_history, history.history_arguments),
    "health": Command(status.cmd_health),
    "embedded-stop": Command(status.cmd_embedded_stop),
}
SOURCE_CHECKED = ("run", "verify", "sources")  # a default source must be allowed here
ROOT_CHECKED = ("run", "verify")  # the root must be there before anything starts


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("syncd")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _commands_text() -> str:
    width = max(map(len, settings.COMMANDS))
    return "commands:\n" + "\n".join(
        f"  {name:{width}}  {text}" for name, text in settings.COMMANDS.items()
    )


def build_parser(command: str, env: Mapping[str, str]) -> argparse.ArgumentParser:
    """One command's parser: its settings' flags and its own arguments, no other."""
    overview = (  # `syncd --help` lists the commands; `syncd health --help` says its own
        "Keep a CreatorOS PostgreSQL database in step with the course folders on disk.\n\n"
        f"{_commands_text()}\n\n`syncd COMMAND --help` lists the flags of each."
        if command == "run"
        else f"syncd {command}: {settings.COMMANDS[command]}."
    )
    parser = argparse.ArgumentParser(
        prog="syncd" if command == "run" else f"syncd {command}",
        description=overview,
        epilog="Database: DATABASE_URL (never logged); without it an embedded PostgreSQL is "
        "started in --data-dir, unless --no-embedded. Kill switch: CREATOR_OS_DB_PERSIST=false "
        "writes nothing. Every setting: docs/configuration.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"syncd {_version()}")
    settings.add_flags(parser, config.SETTINGS, command, env)
    arguments = COMMANDS[command].arguments
    if arguments is not None:
        arguments(parser)
    return parser


def _unknown_command(word: str) -> int:
    """``syncd verfy``: said, with the commands (and the likely one), exit 2."""
    close = difflib.get_close_matches(word, list(COMMANDS), n=1)
    guess = f" (did you mean {close[0]!r}?)" if close else ""
    print(f"syncd: {word!r} is not a command{guess}\n\n{_commands_text()}", file=sys.stderr)
    return ExitCode.CONFIG


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    env = config.environ() if env is None else env
    if argv and not argv[0].startswith("-") and argv[0] not in COMMANDS:
        return _unknown_command(argv[0])
    command = argv.pop(0) if argv and argv[0] in COMMANDS else "run"
    secrets: list[str] = []
    try:
        database_url = config.database_url_from_env(env)
        secrets = config.dsn_secrets(database_url.reveal()) if database_url else []
        fmt = env.get("SYNCD_LOG_FORMAT", "auto")
        logs.configure(fmt=fmt if fmt in ("json", "console") else "auto", secrets=secrets)
        args = build_parser(command, env).parse_args(argv)
        found = config.build(command, vars(args), env)
        # DATABASE_URL's secrets, read above: redacted in every command, even one that
        # takes no database (health, embedded-stop)
        logs.configure(fmt=found.log_format, level=found.log_level, secrets=secrets)
        run = COMMANDS[command].run
        if command == "run" and args.rescan:
            run = sync.cmd_rescan
        if command in settings.DATABASE:
            config.check_database(found)
        if command in SOURCE_CHECKED:
            config.check_source(found, env)
        if command in ROOT_CHECKED:
            _check_root(found.root)  # before the database: a failed command writes nothing
        return run(found, args)
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
