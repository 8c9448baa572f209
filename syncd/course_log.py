"""What the log says of one course: the canonical line per course job (``course synced``, or
``course planned (nothing written)`` with the kill switch on; ``course skipped``), the files
rejected, repaired or partly ignored, the rows repaired from their files, the slugs taken
back or derived, and a course that failed on its own. Event names and fields are an
interface (docs/monitoring.md): people alert on them.

``CourseLog`` keeps no state (it is handed the log, the clock and whether syncd writes), so
it holds no lock; course jobs on the scheduler's workers and the whole-tree pass call it
alike."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from syncd.course import CourseSnapshot
from syncd.course_failures import describe_failure
from syncd.plan import Plan
from syncd.store import CourseResult


class CourseLog:
    def __init__(self, log: Any, clock: Callable[[], float], *, write: bool) -> None:
        self.log = log
        self.clock = clock
        self.write = write  # False: dry run / kill switch, said as planned, not synced

    def rejected(self, path: str, reason: str) -> None:
        self.log.warning("file rejected", path=path, reason=reason)

    def parsed(self, snapshot: CourseSnapshot) -> None:
        """The files the parser repaired, and the fields it ignored."""
        for issue in snapshot.repaired:
            self.log.warning("file repaired", path=issue.path, reason=issue.reason)
        for issue in snapshot.ignored:
            self.log.warning("field ignored", path=issue.path, reason=issue.reason)

    def skipped(self, course: str, started: float, reason: str = "unchanged") -> None:
        """Nothing to do now: its files are as syncd last wrote them, or one is still being
        written (said as such, not as a sync of nothing)."""
        self.log.info(
            "course skipped",
            course=course,
            reason=reason,
            ms=round((self.clock() - started) * 1000, 1),
        )

    def repairs(self, course: str, result: CourseResult, plan: Plan, *, recreated: bool) -> None:
        """One event per row that someone else had changed (rewritten from its file, same
        id; ``fields`` names what differed) or deleted (re-created from its file: the
        ``recreated`` course's inserts), and for the project when its fields (or its
        audience's) had been changed."""
        repairs = [(w, "rewritten from its file", w.differs) for w in plan.repaired]
        if recreated:
            repairs += [(w, "re-created from its file", ()) for w in plan.inserts]
        for write, action, fields in repairs:
            self.log.info(
                "row repaired",
                course=course,
                path=write.record.file_path,
                id=str(write.id),
                action=action,
                fields=list(fields),
            )
        if result.project_repaired:
            self.log.info(
                "row repaired",
                course=course,
                path=course,
                id=str(result.project_id),
                action="project rewritten from its files",
                fields=list(result.project_fields),
            )

    def slugs(self, course: str, plan: Plan) -> None:
        """One event per new row whose slug another row held: taken back from a row no syncd
        wrote (that row, of another project, got a new slug: ``syncd.reclaimed_slugs``), or
        derived because a row a syncd wrote keeps it (a renamed course's)."""
        for reclaim in plan.reclaims:
            self.log.warning(
                "slug reclaimed",
                course=course,
                path=reclaim.write.record.file_path,
                slug=reclaim.slug,
                from_row=str(reclaim.holder),
            )
        for derived in plan.derived:
            self.log.info(
                "slug derived",
                course=course,
                path=derived.write.record.file_path or f"{course}:{derived.write.record.key}",
                slug=derived.write.slug,
                wanted=derived.wanted,
            )

    def result(self, result: CourseResult, started: float) -> None:
        """The course's one canonical line: what was written (or planned) and how long the
        job took since ``started``."""
        event = "course synced" if self.write else "course planned (nothing written)"
        self.log.info(
            event,
            course=result.course,
            inserted=result.inserted,
            updated=result.updated,
            deleted=result.deleted,
            unchanged=result.unchanged,
            rejected=len(result.rejected),
            skipped=result.skipped,
            transactions=result.transactions,
            ms=round((self.clock() - started) * 1000, 1),
        )

    def failure(self, course: str, error: BaseException) -> None:
        """A course failed on its own (``--rescan``: named; the daemon retries it)."""
        failure = describe_failure(error)
        self.log.error(
            failure.event, course=course, reason=failure.reason, sqlstate=failure.sqlstate
        )
