"""Pure: content history (migration 20251201001500, ``public.content_versions``): how long
versions are kept (``Retention``, SYNCD_HISTORY_KEEP), how ``syncd history`` shows a file's
versions and the difference between two, and whether a version may be written back over the
file. The SQL is in sql/course.sql (written with each course) and sql/history.sql (read)."""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

_KEEP = re.compile(r"^\s*(?:(?P<all>all)|(?P<count>\d+)|(?P<days>\d+)\s*d)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Retention:
    """Versions kept of each row: every one (the default), the last ``versions``, or those
    of the last ``days`` (and always the latest)."""

    versions: int | None = None
    days: int | None = None

    @classmethod
    def parse(cls, text: str) -> Retention:
        """``all``, ``N`` (versions) or ``Nd`` (days); N at least 1. ValueError otherwise."""
        found = _KEEP.match(text)
        if found is None:
            raise ValueError(
                f"expected all, a number of versions (10) or of days (30d), got {text!r}"
            )
        count, days = found["count"], found["days"]
        if (count or days) is not None and int(count or days) < 1:
            raise ValueError(f"keeps at least 1, got {text!r}")
        return cls(versions=int(count) if count else None, days=int(days) if days else None)

    def __str__(self) -> str:
        if self.versions is not None:
            return str(self.versions)
        return f"{self.days}d" if self.days is not None else "all"


@dataclass(frozen=True)
class Version:
    """One version of a row, as ``syncd history`` lists it."""

    content_id: str
    version: int
    recorded_at: datetime
    source: str | None
    kind: str
    size: int
    content_hash: bytes
    title: str | None
    file_path: str | None
    fields: tuple[str, ...] = ()


def shown(path: str) -> str:
    """A path as a terminal may print it: control characters (an ESC, a newline in a file's
    name) escaped, every other character as it is."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)


def content_hash(text: str | None) -> bytes:
    """What the history records of a content: sha256 of its UTF-8 ('' for none)."""
    return hashlib.sha256((text or "").encode("utf-8", "surrogatepass")).digest()


def table(versions: Sequence[Version]) -> str:
    """The list: number, when, source, kind, size, hash (first 12 hex digits)."""
    header = ("version", "when (UTC)", "source", "kind", "bytes", "sha256")
    rows = [
        (
            str(v.version),
            v.recorded_at.strftime("%Y-%m-%d %H:%M:%S"),
            v.source or "(the app)",
            v.kind + (f" ({', '.join(v.fields)})" if v.fields else ""),
            str(v.size),
            v.content_hash.hex()[:12],
        )
        for v in versions
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {0, 4}
    lines = [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def diff(path: str, a: Version, a_text: str | None, b: Version, b_text: str | None) -> str:
    """A unified diff of version ``a``'s content to version ``b``'s (titles included when
    they differ)."""
    out = []
    if a.title != b.title:
        out.append(f"title: {a.title!r} -> {b.title!r}\n")
    out.extend(
        difflib.unified_diff(
            (a_text or "").splitlines(keepends=True),
            (b_text or "").splitlines(keepends=True),
            fromfile=f"{shown(path)} (version {a.version}, {a.kind})",
            tofile=f"{shown(path)} (version {b.version}, {b.kind})",
        )
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in out)


def restore_refusal(
    on_disk: str | None, versions: Sequence[Version], living_at: str | None, path: str
) -> str | None:
    """Why a version may not be written over the file at ``path`` (None: it may).

    The file is the source of truth: what it holds that no version holds (edits the daemon
    has not synced yet, or made while it was stopped) would be lost, so that needs
    ``--force``. And a row that lives at another path now (its file moved, or its course
    folder renamed) is restored there: written at the old path, it would become a second
    row."""
    if living_at is not None and living_at != path:
        return (
            f"this row's file is {shown(living_at)} now (moved or renamed): restore it there,"
            f" `syncd history {shown(living_at)} --restore N`"
        )
    if on_disk is None:
        return None  # gone: nothing to lose
    if content_hash(on_disk) not in {v.content_hash for v in versions}:
        return (
            "the file holds text no version holds (edits not synced yet would be lost):"
            " use --force to overwrite them"
        )
    return None
