"""What syncd keeps about the courses it writes and the passes it makes, beside the
course transaction: each course's fingerprints and owner (``syncd.courses``), what a full
reconcile starts from and what it found (adoptions, conflicts, non-course folders), the
files the database refused, and rows' file paths. ``connection`` yields a connection (pool
or single)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from syncd.course_reads import stored_bytes
from syncd.database import reading, writing


class Known(NamedTuple):
    """What syncd last wrote of a course (syncd.courses)."""

    fingerprint: bytes | None  # of the relevant files' contents; None: not fully synced
    archived: bool  # by syncd, because its folder vanished
    stat_fingerprint: bytes | None  # of their (path, size, mtime, ctime, inode)
    source: str | None = None  # the source that owns it; None: synced before sources
    owner_retired: bool = False
    slug: str | None = None  # its project's slug


def fingerprints(connection: Callable[[], Any]) -> dict[str, Known]:
    """course → what syncd last wrote of it, for every course syncd has written."""
    with reading(connection, "read fingerprints", "course.sql") as sql:
        rows = sql.queue("course_fingerprints")
    return _known(rows.fetchall())


def pass_state(
    connection: Callable[[], Any], source: str | None
) -> tuple[dict[str, Known], set[str]]:
    """What a full reconcile starts from, in one round trip: ``fingerprints``, and this
    source's live courses with a row someone else changed or deleted since syncd wrote
    it (a cheap index-only comparison of write marks, no content read)."""
    with reading(connection, "read fingerprints", "course.sql") as sql:
        known = sql.queue("course_fingerprints")
        changed = sql.queue("changed_courses", source=source)
    return _known(known.fetchall()), {row["course"] for row in changed.fetchall()}


def save_stat_fingerprints(
    connection: Callable[[], Any], items: list[tuple[str, bytes, bytes]]
) -> None:
    """(course, content fingerprint, stat fingerprint) of courses found unchanged."""
    if not items:
        return
    with writing(connection, "save fingerprints", "course.sql") as sql:
        sql.queue(
            "save_stat_fingerprints",
            courses=[c for c, _, _ in items],
            fingerprints=[f for _, f, _ in items],
            stats=[s for _, _, s in items],
        )


def save_findings(
    connection: Callable[[], Any],
    source: str | None,
    *,
    touched: list[tuple[str, bytes, bytes]],
    adopted: list[str] | None,
    conflicts: dict[str, str] | None,
    skipped_folders: dict[str, int],
) -> None:
    """What a full reconcile found, in one transaction (one round trip): the stats of
    courses found ``touched`` but unchanged (as ``save_stat_fingerprints``), the courses
    this source ``adopted`` (found under its root: made its own where no live source
    owns them), the course folders it found owned elsewhere (``conflicts``: course ->
    owning source, replacing its previous list) and the non-course folders with their
    file counts. ``adopted`` and ``conflicts`` are None for no source."""
    with writing(connection, "save the reconcile's findings", "course.sql") as sql:
        if touched:
            sql.queue(
                "save_stat_fingerprints",
                courses=[c for c, _, _ in touched],
                fingerprints=[f for _, f, _ in touched],
                stats=[s for _, _, s in touched],
            )
        if adopted is not None:
            sql.queue("adopt_courses", source=source, courses=adopted)
        if conflicts is not None:
            sql.queue(
                "save_conflicts",
                source=source,
                courses=list(conflicts),
                owners=list(conflicts.values()),
            )
        sql.queue(
            "save_skipped_folders",
            folders=list(skipped_folders),
            files=list(skipped_folders.values()),
        )


def refused_files(connection: Callable[[], Any]) -> dict[str, str]:
    """file_path -> the database's reason, for every file whose row it refused."""
    with reading(connection, "read refused files", "course.sql") as sql:
        rows = sql.queue("refused_files")
    return {r["file_path"]: r["reason"] for r in rows.fetchall()}


def file_paths(connection: Callable[[], Any], ids: set[uuid.UUID]) -> dict[uuid.UUID, str | None]:
    with reading(connection, "read file paths", "course.sql") as sql:
        rows = sql.queue("file_paths", ids=list(ids))
    return {r["id"]: r["file_path"] for r in rows.fetchall()}


def _known(rows: list[Any]) -> dict[str, Known]:
    return {
        r["course"]: Known(
            fingerprint=stored_bytes(r["fingerprint"]),
            archived=r["archived"],
            stat_fingerprint=stored_bytes(r["stat_fingerprint"]),
            source=r["source"],
            owner_retired=r["owner_retired"],
            slug=r["slug"],
        )
        for r in rows
    }
