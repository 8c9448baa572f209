"""``syncd history PATH``: the versions the database holds of a file's row (number, when,
source, kind, size, hash); ``--diff A B`` a unified diff of two; ``--restore N`` version N
written back to the file, which stays the source of truth: the daemon then syncs it as a new
version. A restore that would lose edits no version holds is refused without ``--force``."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

from syncd import history
from syncd.cli.database import database
from syncd.config import Settings
from syncd.database import Queries, connect
from syncd.driver_errors import translated
from syncd.errors import ConfigError, ParseError
from syncd.exits import ExitCode
from syncd.history import Version
from syncd.text import decode


def history_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a file under --root (it may be gone)")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--diff", nargs=2, type=int, metavar=("A", "B"), help="a unified diff of two versions"
    )
    action.add_argument("--restore", type=int, metavar="N", help="write version N to the file")
    parser.add_argument(
        "--force", action="store_true", help="--restore even over edits no version holds"
    )


def cmd_history(settings: Settings, args: argparse.Namespace) -> int:
    if args.force and args.restore is None:
        raise ConfigError("--force goes with --restore N")
    path = Path(args.path)
    rel = _row_path(path, settings.root)
    said = history.shown(rel)  # as printed
    texts: dict[int, str | None] = {}
    with (
        database(settings, migrate_now=settings.migrate, writes=False) as db,
        connect(db) as conn,
        translated("history"),
        conn.transaction(force_rollback=True),  # reads only
    ):
        sql = Queries(conn, "history.sql")
        rows = sql.all("versions_of_path", path=rel)
        versions = [_version(r) for r in rows]
        for number in args.diff or ([args.restore] if args.restore is not None else []):
            texts[number] = _text(sql, _pick(versions, number)) if versions else None
    if not versions:
        print(f"no history for {said}")
        return ExitCode.DRIFT
    living_at = rows[-1]["living_at"]
    if args.diff:
        a, b = (_pick(versions, n) for n in args.diff)
        print(
            history.diff(rel, a, texts[a.version], b, texts[b.version]) or "(no difference)\n",
            end="",
        )
        return ExitCode.OK
    if args.restore is not None:
        wanted = _pick(versions, args.restore)
        return _restore(
            path,
            rel,
            versions,
            wanted,
            texts[wanted.version],
            living_at=living_at,
            force=args.force,
        )
    moved = f" (its file is {history.shown(living_at)} now)" if living_at not in (None, rel) else ""
    print(f"{said}: {len(versions)} version(s) of row {versions[-1].content_id}{moved}")
    print(history.table(versions))
    return ExitCode.OK


def _row_path(path: Path, root: Path) -> str:
    """The path a row records: relative to the root, with "/" (the file may be gone)."""
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    if rel == "." or rel.startswith(".."):
        raise ConfigError(f"{path} is not a file under the course root {root} (--root)")
    return Path(rel).as_posix()


def _version(row: dict[str, Any]) -> Version:
    return Version(
        content_id=str(row["content_id"]),
        version=row["version"],
        recorded_at=row["recorded_at"],
        source=row["source"],
        kind=row["kind"],
        size=row["size"],
        content_hash=bytes(row["content_hash"]),
        title=row["title"],
        file_path=row["file_path"],
        fields=tuple(row["fields"] or ()),
    )


def _pick(versions: list[Version], number: int) -> Version:
    for v in versions:
        if v.version == number:
            return v
    kept = ", ".join(str(v.version) for v in versions)
    raise ConfigError(f"no version {number} (kept: {kept})")


def _text(sql: Queries, version: Version) -> str | None:
    row = sql.one("version_content", content_id=version.content_id, version=version.version)
    return None if row is None else row["content"]


def _restore(
    path: Path,
    rel: str,
    versions: list[Version],
    wanted: Version,
    text: str | None,
    *,
    living_at: str | None,
    force: bool,
) -> int:
    try:
        on_disk = _read(path)
    except OSError as exc:
        print(f"not restored: cannot read {history.shown(rel)}: {exc.strerror or exc}")
        return ExitCode.DRIFT
    if on_disk is not None and history.content_hash(on_disk) == wanted.content_hash:
        print(f"{history.shown(rel)} already holds version {wanted.version}: nothing written")
        return ExitCode.OK
    refusal = history.restore_refusal(on_disk, versions, living_at, rel)
    moved_away = living_at is not None and living_at != rel
    if refusal and (moved_away or not force):  # --force overwrites edits, never makes a row
        print(f"not restored: {refusal}")
        return ExitCode.DRIFT
    try:
        _write_atomically(path, text or "")
    except OSError as exc:
        print(f"not restored: cannot write {history.shown(rel)}: {exc.strerror or exc}")
        return ExitCode.DRIFT
    when = wanted.recorded_at.strftime("%Y-%m-%d %H:%M:%S")
    print(
        f"restored version {wanted.version} of {history.shown(rel)} ({wanted.kind}, {when} UTC);"
        " the daemon syncs it as a new version"
    )
    return ExitCode.OK


def _read(path: Path) -> str | None:
    """The file's text as syncd reads it (None: gone)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return decode(str(path), data).text.replace("\x00", "")
    except ParseError:
        return data.decode("utf-8", "replace")  # not text: surely not a version


def _write_atomically(path: Path, text: str) -> None:
    """One rename: the daemon (and an editor) sees the whole file at once, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the file's own mode and owner (a new one: an editor's mode, its folder's owner), so
    # that `sudo syncd history --restore` leaves the file to its generator and the daemon
    held = path.stat() if path.exists() else None
    owner = held or path.parent.stat()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".restore")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(tmp, held.st_mode & 0o777 if held else _new_file_mode())  # mkstemp: 0600
        if os.geteuid() == 0:
            os.chown(tmp, owner.st_uid, owner.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_file_mode() -> int:
    """What an editor's new file gets: 0666 less the umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask
