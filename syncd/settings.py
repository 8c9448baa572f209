"""Each setting declared once. A field of ``config.Settings`` is a setting when it is made
by ``setting()``: its name, type and default are the field's, and the ``Setting`` record
beside it says the rest (its environment variable, its flag, its unit, its help, which
commands take it). From those records come each command's flags (``add_flags``), the values
a command runs with (``given``: a flag, else the variable, else the default) and the table
of docs/configuration.md (``markdown``; ``python -m syncd.settings --write`` rewrites it).

Nothing here reads the environment at import time, and nothing here imports ``config``:
``config`` imports this module to declare its fields."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncd.errors import ConfigError

# The commands, in the order --help lists them; ``run`` is also ``syncd`` alone and
# ``syncd --rescan``.
COMMANDS: dict[str, str] = {
    "run": "the daemon (the default command); with --rescan: reconcile the whole tree once",
    "verify": "compare the tree with the database, file by file (exit 1 on a drift)",
    "migrate": "apply pending migrations, list them (--status) or revert them",
    "report": "monitoring tables: what was synced, rejected, failing",
    "sources": "the sources writing into this database; retire or hand one over",
    "minds": "each mind with its users and courses; `link` a user to a mind",
    "history": "a file's versions in the database; --diff A B compares two, --restore N writes"
    " one back",
    "health": "the running daemon's health, read from its state file (exit 1: unhealthy)",
    "embedded-stop": "stop the embedded PostgreSQL kept in --data-dir",
}
ALL = frozenset(COMMANDS)
DATABASE = frozenset({"run", "verify", "migrate", "report", "sources", "minds", "history"})
# the commands that check the schema at start, so apply migrations first with --migrate
MIGRATING = DATABASE - {"migrate"}
SOURCE = frozenset({"run", "verify", "report", "sources"})  # those that act as a source
ROWS = frozenset({"run", "verify", "report"})  # those that read the tree with row settings
RUN = frozenset({"run"})

FALSE_WORDS = ("false", "0", "no", "off")
TRUE_WORDS = ("true", "1", "yes", "on", "")


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in FALSE_WORDS:
        return False
    if lowered in TRUE_WORDS:
        return True
    raise ConfigError(f"{name}: expected true/false, got {value!r}")


@dataclass(frozen=True)
class Setting:
    """What a setting is besides its field: where it comes from and what it is for."""

    help: str
    commands: frozenset[str]
    env: str | None = None  # its environment variable
    flag: str | None = None  # its flag, on each command of ``commands``
    unit: str = ""  # "seconds", "ms", "bytes"
    shown_default: str | None = None  # a default computed at run time, as people read it
    notes: str = ""  # docs/configuration.md only: said after the help
    recorded: bool = False  # shapes rows: recorded with the source (source_settings)
    choices: tuple[str, ...] = ()
    parse: Callable[[str], Any] | None = None  # text → value (else: from the field's type)
    # from the field (``declared``)
    name: str = ""
    kind: type = str
    optional: bool = False  # None allowed: given empty, it is None
    default: Any = None

    @property
    def label(self) -> str:
        """How a message names it: ``--workers (SYNCD_WORKERS)``."""
        names = [n for n in (self.flag, self.env) if n]
        return f"{names[0]} ({names[1]})" if len(names) == 2 else names[0]

    def convert(self, raw: str) -> Any:
        """A value from its text (a flag's or a variable's), or ValueError saying why."""
        if self.optional and not raw.strip():
            return None
        if self.parse is not None:
            return self.parse(raw)
        if self.choices and raw not in self.choices:
            raise ValueError(f"expected one of {', '.join(self.choices)}, got {raw!r}")
        if self.kind is bool:
            try:
                return parse_bool("", raw)
            except ConfigError:
                raise ValueError(f"expected true or false, got {raw!r}") from None
        if self.kind is int:
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"expected a whole number, got {raw!r}") from None
        if self.kind is float:
            try:
                return float(raw)
            except ValueError:
                raise ValueError(f"expected a number, got {raw!r}") from None
        return self.kind(raw)

    def default_text(self, *, markdown: bool = False) -> str:
        """The default as --help and the docs show it, once (with its unit, and for a
        setting recorded with the source, that the recorded one comes first)."""
        if self.shown_default is not None:
            text = self.shown_default if markdown else self.shown_default.replace("`", "")
        else:
            if self.kind is bool:
                value = "true" if self.default else "false"
            elif self.default is None:
                value = "none"
            elif isinstance(self.default, float):
                value = f"{self.default:g}"
            else:
                value = str(self.default)
            text = f"`{value}`" if markdown and value != "none" else value
            text += f" {self.unit}" if self.unit else ""
        return f"{text}, or the source's recorded one" if self.recorded else text


def setting(default: Any = None, *, factory: Callable[[], Any] | None = None, **record: Any) -> Any:
    """A field of ``Settings`` that is a setting: its default (or a factory of it, for a
    default computed at run time) and the rest of its ``Setting`` record."""
    meta = {"setting": Setting(**record)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def declared(cls: type) -> tuple[Setting, ...]:
    """The settings of a dataclass, in their order, each completed from its field."""
    hints = typing.get_type_hints(cls)
    found = []
    for field in dataclasses.fields(cls):
        record = field.metadata.get("setting")
        if record is None:
            continue
        kind, optional = hints[field.name], False
        if isinstance(kind, types.UnionType):  # X | None
            kinds = [k for k in typing.get_args(kind) if k is not type(None)]
            kind, optional = kinds[0], len(kinds) < len(typing.get_args(kind))
        default = field.default if field.default is not dataclasses.MISSING else None
        found.append(
            dataclasses.replace(
                record, name=field.name, kind=kind, optional=optional, default=default
            )
        )
    return tuple(found)


# ---------------------------------------------------------------- flags and values


def _argparse_type(item: Setting) -> Callable[[str], Any]:
    def convert(raw: str) -> Any:
        try:
            return item.convert(raw)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def add_flags(
    parser: argparse.ArgumentParser,
    table: Iterable[Setting],
    command: str,
    env: Mapping[str, str],
) -> None:
    """The flags of one command: its settings', each with its help, its variable and its
    default shown once. A flag not given is not in the namespace (``given`` tells)."""
    for item in table:
        if item.flag is None or command not in item.commands:
            continue
        text = item.help
        if item.env is not None:
            here = env.get(item.env)
            text += f" [env {item.env}" + (f", set to {here!r} here]" if here is not None else "]")
        if item.kind is not bool or item.default or item.recorded:
            text += f" (default: {item.default_text()})"
        text = text.replace("%", "%%")
        if item.kind is bool:
            parser.add_argument(
                item.flag, dest=item.name, action="store_true", default=argparse.SUPPRESS, help=text
            )
        else:
            parser.add_argument(
                item.flag,
                dest=item.name,
                type=_argparse_type(item),
                default=argparse.SUPPRESS,
                metavar="{" + ",".join(item.choices) + "}"
                if item.choices
                else item.flag.lstrip("-").replace("-", "_").upper(),
                help=text,
            )


def given(
    table: Iterable[Setting],
    command: str,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
) -> dict[str, Any]:
    """The settings a command was given, by name: a flag, else its variable. A variable that
    cannot be read is a ConfigError naming it (exit 2)."""
    found: dict[str, Any] = {}
    for item in table:
        if command not in item.commands:
            continue
        if item.flag is not None and item.name in flags:
            found[item.name] = flags[item.name]
        elif item.env is not None and item.env in env:
            try:
                found[item.name] = item.convert(env[item.env])
            except ValueError as error:
                raise ConfigError(f"{item.env}: {error}") from None
    return found


# ---------------------------------------------------------------- docs/configuration.md

TABLE_START = (
    "<!-- settings table: generated by `python -m syncd.settings --write`; do not edit -->"
)
TABLE_END = "<!-- end of the settings table -->"


def _commands_text(commands: frozenset[str]) -> str:
    if commands == ALL:
        return "all"
    return ", ".join(f"`{name}`" for name in COMMANDS if name in commands)


def _joint(notes: str) -> str:
    """What goes between a setting's help and its notes: they may go on its sentence (a
    bracket, a lower-case word), end it and add another (upper case), or carry on (; or :)."""
    if not notes or notes[0] in ";:,":
        return ""
    return ". " if notes[0].isupper() else " "


def markdown(table: Iterable[Setting]) -> str:
    """The table of docs/configuration.md."""
    lines = [
        "| variable | flag | commands | default | meaning |",
        "|---|---|---|---|---|",
    ]
    for item in table:
        meaning = item.help + _joint(item.notes) + item.notes
        meaning += ". Recorded with the source" if item.recorded else ""
        variable = f"`{item.env}`" if item.env else ""
        flag = f"`{item.flag}`" if item.flag else ""
        lines.append(
            f"| {variable} | {flag} | {_commands_text(item.commands)}"
            f" | {item.default_text(markdown=True)} | {meaning} |"
        )
    return "\n".join(lines) + "\n"


def replace_table(text: str, table: str) -> str:
    """``text`` (docs/configuration.md) with the table between its markers replaced."""
    head, start, rest = text.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not start or not end:
        raise ValueError(f"the markers {TABLE_START!r} and {TABLE_END!r} are missing")
    return f"{head}{TABLE_START}\n{table}{TABLE_END}{tail}"


def table_in(text: str) -> str:
    """The table between the markers of docs/configuration.md."""
    return text.partition(TABLE_START)[2].partition(TABLE_END)[0].lstrip("\n")


def main(argv: Sequence[str]) -> int:
    from syncd.config import DOCUMENTED

    parser = argparse.ArgumentParser(prog="python -m syncd.settings")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--markdown", action="store_true", help="print the settings table")
    what.add_argument("--write", metavar="FILE", type=Path, help="rewrite the table in FILE")
    args = parser.parse_args(argv)
    table = markdown(DOCUMENTED)
    if args.markdown:
        sys.stdout.write(table)
    else:
        args.write.write_text(
            replace_table(args.write.read_text(encoding="utf-8"), table), encoding="utf-8"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
