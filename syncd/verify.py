"""The whole truth about the tree against the database. Reads only.

Every file under every course folder is in sync, ignored by a documented rule, or listed
here with its reason: a drift (missing, stale, gone, course-gone) or a file that is not in
the database as it is on disk (rejected, unreadable, link, too-large, refused). Any of
those makes `syncd verify` exit 1. Folders under the root that are not courses are listed
with their file counts (``Report.skipped``), without changing the exit code."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from syncd import layout
from syncd import parser as course_parser
from syncd.course import FileIssue, ParseOptions
from syncd.errors import ParseError, RootUnavailable
from syncd.storage import CourseStorage
from syncd.tree import CourseFiles, count_files, list_courses, read_course, scan_course


@dataclass(frozen=True)
class Drift:
    # missing | stale | gone | course-gone | rejected | unreadable | link | too-large | refused
    # | conflict
    kind: str
    path: str
    detail: str = ""
    fields: tuple[str, ...] = ()  # stale: the syncd-owned fields that differ from the files

    def __str__(self) -> str:
        return f"{self.kind:12} {self.path}" + (f"  ({self.detail})" if self.detail else "")


@dataclass(frozen=True)
class SkippedFolder:
    folder: str
    files: int


@dataclass
class Report:
    drifts: list[Drift] = field(default_factory=list)
    skipped: list[SkippedFolder] = field(default_factory=list)
    # folders the running daemon cannot watch (its health file): not a drift, but said
    unwatched: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return not self.drifts

    def as_json(self) -> dict[str, Any]:
        return {
            "in_sync": self.in_sync,
            "drifts": [asdict(d) for d in self.drifts],
            "skipped_folders": [asdict(s) for s in self.skipped],
            "unwatched_folders": self.unwatched,
        }


def _issue(issue: FileIssue) -> Drift:
    return Drift(issue.kind, issue.path, issue.reason)


def verify(
    root: Path,
    store: CourseStorage,
    options: ParseOptions,
    max_file_bytes: int,
    *,
    follow_symlinks: bool = False,
) -> Report:
    report = Report()
    drifts = report.drifts
    try:
        listing = list_courses(root, follow_symlinks)
    except OSError as exc:
        raise RootUnavailable(f"course root {root} is unavailable: {exc.strerror}") from exc
    held = set(listing.held)
    for course in listing.held:
        scan = scan_course(root, course, follow_symlinks)
        if scan.held is not None:
            drifts.append(_issue(scan.held))
    refused = store.refused_files()
    known = store.fingerprints()
    conflicts = layout.slug_conflicts(listing.courses, known)
    owners_by_slug = {
        seen.slug: seen.source
        for seen in known.values()
        if seen.slug and seen.source not in (None, store.source) and not seen.owner_retired
    }
    for course in listing.courses:
        seen = known.get(course)
        owner = seen.source if seen is not None and not seen.owner_retired else None
        if owner in (None, store.source):
            owner = owners_by_slug.get(layout.course_slug(course))
        if owner is not None:
            drifts.append(Drift("conflict", course, f"synced by source {owner!r}, not this one"))
        elif course in conflicts:
            drifts.append(
                Drift("rejected", course, f"course slug also derived from {conflicts[course]!r}")
            )
        else:
            files = read_course(root, course, max_file_bytes, follow_symlinks)
            drifts.extend(_course_drifts(course, files, store, options, refused))
    present = {*listing.courses, *held}
    for course, seen in sorted(known.items()):
        if course not in present and not seen.archived and seen.source == store.source:
            drifts.append(Drift("course-gone", course, "project not archived but folder is gone"))
    report.skipped = [SkippedFolder(name, count_files(root / name)) for name in listing.skipped]
    return report


def _course_drifts(
    course: str,
    files: CourseFiles,
    store: CourseStorage,
    options: ParseOptions,
    refused: dict[str, str],
) -> list[Drift]:
    """One course folder against its project and rows: the plan a sync would make now,
    with every syncd-owned field (links included) compared, and every file that is not in
    the database as it is on disk."""
    try:
        snapshot = course_parser.parse_course(course, files.files, options, files.unreadable)
    except ParseError as error:
        return [Drift("rejected", error.path, error.reason)]
    drifts = [_issue(issue) for issue in snapshot.rejected]
    plan, project_fields = store.plan_from_reads(snapshot, with_fields=True)
    if project_fields:
        detail = "project: " + ", ".join(project_fields)
        drifts.append(Drift("stale", course, detail, project_fields))
    drifts.extend(_issue(issue) for issue in plan.rejected)
    not_in_db = {issue.path for issue in (*snapshot.rejected, *plan.rejected)}
    describe = {c.key: c.file_path or f"{course}:{c.key}" for c in snapshot.contents}

    def drift(kind: str, key: str, detail: str, fields: tuple[str, ...] = ()) -> Drift:
        path = describe[key]
        if path in refused:  # the database refused this file's row: say so
            return Drift("refused", path, refused[path])
        return Drift(kind, path, detail, fields)

    for write in plan.inserts:
        if write.record.file_path not in not_in_db:
            drifts.append(drift("missing", write.record.key, "no row in the database"))
    # Every row's fields were read: an update or a relink is a real difference, named by
    # field; a row whose only difference is syncd's bookkeeping (plan.remarks) is in sync.
    for write in (*plan.updates, *plan.relinks):
        drifts.append(drift("stale", write.record.key, ", ".join(write.differs), write.differs))
    if plan.deletes:
        for row_id, path in store.file_paths(set(plan.deletes)).items():
            drifts.append(Drift("gone", path or str(row_id), "row whose file is gone"))
    return drifts
