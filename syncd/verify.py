"""Drift between the tree and the database: missing rows, stale content, rows whose file
is gone, live projects whose folder is gone. Reads only."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from syncd import parser as course_parser
from syncd.errors import ParseError
from syncd.parser import ParseOptions
from syncd.store import CourseStore
from syncd.tree import list_courses, read_course


@dataclass(frozen=True)
class Drift:
    kind: str  # missing | stale | gone | course-gone
    path: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind:12} {self.path}" + (f"  ({self.detail})" if self.detail else "")


def verify(
    root: Path, store: CourseStore, options: ParseOptions, max_file_bytes: int
) -> list[Drift]:
    drifts: list[Drift] = []
    courses = list_courses(root).courses
    for course in courses:
        files = read_course(root, course, max_file_bytes)
        try:
            snapshot = course_parser.parse_course(course, files.files, options, files.unreadable)
        except ParseError:
            continue  # a course that cannot be synced has no rows to compare
        plan, md5s = store.plan_for_verify(snapshot)
        rejected = {issue.path for issue in plan.rejected}
        describe = {c.key: c.file_path or f"{course}:{c.key}" for c in snapshot.contents}
        for write in plan.inserts:
            if write.record.file_path not in rejected:
                drifts.append(
                    Drift("missing", describe[write.record.key], "no row in the database")
                )
        for write in plan.updates:
            drifts.append(Drift("stale", describe[write.record.key], "row differs from the file"))
        updated = {w.record.key for w in plan.updates}
        for record in snapshot.contents:
            row_id = plan.ids.get(record.key)
            if record.key in updated or row_id not in md5s or record.content is None:
                continue
            if md5s[row_id] != hashlib.md5(record.content.encode()).hexdigest():  # noqa: S324 - compare with PostgreSQL md5()
                drifts.append(Drift("stale", describe[record.key], "content differs from the file"))
        gone_ids = set(plan.deletes)
        if gone_ids:
            for row_id, path in store.file_paths(gone_ids).items():
                drifts.append(Drift("gone", path or str(row_id), "row whose file is gone"))
    for course, known in sorted(store.fingerprints().items()):
        if course not in courses and not known.archived:
            drifts.append(Drift("course-gone", course, "project not archived but folder is gone"))
    return drifts
