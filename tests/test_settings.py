"""Issue 19, item 2: each setting declared once (config.Settings). Each command offers the
flags of its own settings, each default shown once; a mistyped command lists the commands;
a variable syncd cannot read is named; docs/configuration.md's table is the declaration's."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd import config, settings
from syncd.cli.main import COMMANDS, build_parser
from syncd.exits import ExitCode
from tests.helpers import run_cli

REPO = Path(__file__).resolve().parent.parent
ENV_SETTINGS = [item for item in config.SETTINGS if item.env]

# a value each variable cannot take, and what the error says of it besides the variable
BAD = {
    "DATABASE_URL": ("not a dsn", "neither a URL"),
    "CREATOR_OS_DB_PERSIST": ("maybe", "true or false"),
    "SYNCD_MIGRATE": ("maybe", "true or false"),
    "SYNCD_CREATOR_MIND": ("Not A Slug!", "mind slug"),
    "SYNCD_NO_EMBEDDED": ("maybe", "true or false"),
    "SYNCD_MAX_FILE_BYTES": ("2MB", "whole number"),
    "SYNCD_LOG_FORMAT": ("yaml", "auto, json, console"),
    "SYNCD_CONNECT_TIMEOUT": ("5s", "whole number"),
    "SYNCD_WORKERS": ("abc", "whole number"),
    "SYNCD_HISTORY_KEEP": ("forever", "a number of versions (10) or of days (30d)"),
    "SYNCD_STATEMENT_TIMEOUT_MS": ("30s", "whole number"),
    "SYNCD_QUIET_MS": ("half a second", "whole number"),
    "SYNCD_MAX_DELAY_MS": ("1.5", "whole number"),
    "SYNCD_RECONCILE_INTERVAL": ("10m", "a number"),
    "SYNCD_POLLING": ("sometimes", "true or false"),
    "SYNCD_SHUTDOWN_TIMEOUT": ("soon", "a number"),
    "SYNCD_BREAKER_FAILURES": ("three", "whole number"),
    "SYNCD_BREAKER_RESET": ("5s", "a number"),
    "SYNCD_HEARTBEAT": ("30s", "a number"),
    "SYNCD_AUTH_GRACE": ("5m", "a number"),
    "SYNCD_WATCH_RETRY": ("30s", "a number"),
    "SYNCD_FOLLOW_SYMLINKS": ("maybe", "true or false"),
    "SYNCD_HEALTH_STALLED_AFTER": ("30s", "a number"),
    "SYNCD_HEALTH_UNREACHABLE_AFTER": ("1m", "a number"),
}
ANY_TEXT = {"SYNCD_ROOT", "SYNCD_DATA_DIR", "SYNCD_LOG_LEVEL", "SYNCD_SOURCE", "SYNCD_HEALTH_FILE"}


def test_every_variable_is_either_checked_here_or_takes_any_text() -> None:
    """A new setting gets a bad value below, or is named as one that takes any text."""
    assert {item.env for item in ENV_SETTINGS} == BAD.keys() | ANY_TEXT
    assert not BAD.keys() & ANY_TEXT


@pytest.mark.parametrize("item", [i for i in ENV_SETTINGS if i.env in BAD], ids=lambda i: i.env)
def test_a_variable_syncd_cannot_read_is_named_with_why_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, item: settings.Setting
) -> None:
    assert item.env is not None
    value, why = BAD[item.env]
    command = next(name for name in COMMANDS if name in item.commands)
    env = {item.env: value, "SYNCD_DATA_DIR": str(tmp_path / "pg")}
    run = run_cli(capsys, [command], None, env)
    assert run.code == ExitCode.CONFIG, run.stderr
    (said,) = run.named("configuration error")
    assert item.env in said["reason"] and why in said["reason"], said["reason"]
    assert "argument --" not in run.stderr
    assert not (tmp_path / "pg").exists()  # nothing started


def test_syncd_workers_abc_for_verify_is_not_read_by_verify_but_is_by_the_daemon(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """verify syncs nothing at once: it takes no --workers, and reads no SYNCD_WORKERS."""
    assert "--workers" not in build_parser("verify", {}).format_help()
    run = run_cli(capsys, ["--rescan"], None, {"SYNCD_WORKERS": "abc"})
    assert run.code == 2 and "SYNCD_WORKERS: expected a whole number, got 'abc'" in run.stderr


def test_a_bad_flag_value_names_the_flag() -> None:
    with pytest.raises(SystemExit) as stopped:
        build_parser("run", {}).parse_args(["--workers", "abc"])
    assert stopped.value.code == 2


def test_a_range_error_names_the_flag_and_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = run_cli(capsys, ["--rescan"], None, {"SYNCD_WORKERS": "0"})
    assert run.code == 2
    assert "--workers (SYNCD_WORKERS) must be between 1 and 64" in run.stderr


def test_a_flag_wins_over_its_variable_and_a_variable_over_the_default() -> None:
    env = {"SYNCD_WORKERS": "8", "SYNCD_POLLING": "yes", "SYNCD_MAX_FILE_BYTES": "4096"}
    parsed = vars(build_parser("run", env).parse_args(["--workers", "2"]))
    built = config.build("run", parsed, env)
    assert (built.workers, built.polling, built.max_file_bytes) == (2, True, 4096)
    assert built.explicit == {"max_file_bytes"}  # row settings given (flag or variable)
    default = config.build("run", {}, {})
    assert (default.workers, default.polling, default.explicit) == (4, False, frozenset())
    empty_mind = config.build("run", {}, {"SYNCD_CREATOR_MIND": ""})
    assert empty_mind.creator_mind is None and empty_mind.explicit == {"creator_mind"}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_offers_the_flags_of_its_own_settings_and_no_other(command: str) -> None:
    parser = build_parser(command, {})
    offered = {flag for action in parser._actions for flag in action.option_strings}
    declared = {item.flag for item in config.SETTINGS if item.flag}
    mine = {item.flag for item in config.SETTINGS if item.flag and command in item.commands}
    assert offered & declared == mine


def test_health_offers_neither_migrate_nor_workers_nor_creator_mind() -> None:
    text = build_parser("health", {}).format_help()
    for flag in ("--migrate", "--workers", "--creator-mind", "--root", "--source"):
        assert flag not in text
    assert "--stalled-after" in text and "--health-file" in text


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_lists_the_commands_and_shows_each_default_once(command: str) -> None:
    """`syncd --help` lists the commands; a command's own help says what it does."""
    parser = build_parser(command, {"SYNCD_WORKERS": "8"})
    text = parser.format_help()
    if command == "run":
        assert all(name in text for name in COMMANDS)
    else:
        assert f"syncd {command}: {settings.COMMANDS[command]}" in " ".join(text.split())
        assert "commands:" not in text
    assert "(default: )" not in text
    for action in parser._actions:
        assert (action.help or "").count("(default:") <= 1, action.option_strings
    if command == "run":
        (source,) = [a.help for a in parser._actions if "--source" in a.option_strings]
        assert source is not None and source.count("<host name>:<absolute root>") == 1
        (workers,) = [a.help for a in parser._actions if "--workers" in a.option_strings]
        assert workers is not None and "(default: 4)" in workers and "'8'" in workers


def test_a_mistyped_command_lists_the_commands_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(capsys, ["verfy"], None)
    assert run.code == ExitCode.CONFIG
    assert "'verfy' is not a command (did you mean 'verify'?)" in run.stderr
    assert all(name in run.stderr for name in COMMANDS)


def test_the_configuration_docs_table_is_the_declarations() -> None:
    """Regenerate with `python -m syncd.settings --write docs/configuration.md`."""
    text = (REPO / "docs/configuration.md").read_text(encoding="utf-8")
    assert settings.table_in(text) == settings.markdown(config.DOCUMENTED)


def test_the_commands_help_lists_are_the_commands_dispatched() -> None:
    assert list(COMMANDS) == list(settings.COMMANDS)
    for item in config.DOCUMENTED:
        assert item.commands and item.commands <= COMMANDS.keys(), item.name


def test_every_settings_field_but_explicit_is_declared_as_a_setting() -> None:
    import dataclasses

    fields = {f.name for f in dataclasses.fields(config.Settings)}
    assert fields - {item.name for item in config.SETTINGS} == {"explicit"}
