"""One source, one set of settings: the settings that shape a source's rows are recorded
with the source (``syncd.sources.settings``) by its writer, and every command of that source
reads the tree with them. Pure: which settings those are, the record a writer makes, and what
a command given some of them makes of the recorded ones.

Those settings: the default creator mind (which mind owns a course whose brief names none),
the file size limit (which files have rows) and following links (which files are read).
Nothing else the parser takes comes from a setting: the persona mind comes from the brief
or the curriculum only."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from syncd.config import SETTINGS, Settings


@dataclass(frozen=True)
class RowSetting:
    name: str  # the Settings field, and the key of the record
    variable: str
    flag: str
    kind: type


ROW_SETTINGS = tuple(  # creator_mind, max_file_bytes, follow_symlinks (config.Settings)
    RowSetting(item.name, item.env or "", item.flag or "", item.kind)
    for item in SETTINGS
    if item.recorded
)
_BY_NAME = {setting.name: setting for setting in ROW_SETTINGS}


def as_record(
    creator_mind: str | None, max_file_bytes: int, follow_symlinks: bool
) -> dict[str, Any]:
    """What a writer records with its source."""
    return {
        "creator_mind": creator_mind,
        "max_file_bytes": max_file_bytes,
        "follow_symlinks": follow_symlinks,
    }


def record(settings: Settings) -> dict[str, Any]:
    return as_record(settings.creator_mind, settings.max_file_bytes, settings.follow_symlinks)


def shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


@dataclass(frozen=True)
class Difference:
    """A setting given to this command that is not the one recorded for its source."""

    setting: RowSetting
    here: Any
    recorded: Any

    def __str__(self) -> str:
        return (
            f"{self.setting.variable} ({self.setting.flag}) is {shown(self.here)} here, but"
            f" {shown(self.recorded)} is recorded for this source"
        )


def _valid(setting: RowSetting, value: Any) -> bool:
    if setting.kind is int:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0
    if setting.kind is str:
        return value is None or isinstance(value, str)
    return isinstance(value, setting.kind)


def resolve(
    settings: Settings, recorded: Mapping[str, Any] | None
) -> tuple[Settings, list[Difference]]:
    """The settings a command of this source runs with: each row setting it was not given
    (``settings.explicit``) is the recorded one; a given one is kept, and where it is not the
    recorded one it is a difference. Nothing recorded (a source no writer has registered
    yet): the settings as they are."""
    if not recorded:
        return settings, []
    taken: dict[str, Any] = {}
    differences: list[Difference] = []
    for setting in ROW_SETTINGS:
        if setting.name not in recorded or not _valid(setting, recorded[setting.name]):
            continue
        value = recorded[setting.name]
        here = getattr(settings, setting.name)
        if setting.name not in settings.explicit:
            taken[setting.name] = value
        elif here != value:
            differences.append(Difference(setting, here, value))
    return dataclasses.replace(settings, **taken), differences


def changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    """``name: old -> new`` of each row setting a writer records otherwise than it was
    recorded (none when nothing was recorded before)."""
    if not before:
        return []
    return [
        f"{name}: {shown(before.get(name))} -> {shown(after.get(name))}"
        for name in _BY_NAME
        if name in before and before.get(name) != after.get(name)
    ]
