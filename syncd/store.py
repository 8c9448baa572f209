"""The course transaction: each course written in one transaction under a per-course
advisory lock, pipelined (named queries in sql/course.sql, rows read by column name).
``CourseStore`` is what Reconciler and verify write and read through: it also hands on to
the course's reads (course_reads.py), bookkeeping.py and sources.py. Connections are
database.py's; driver errors are translated by driver_errors.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg

from syncd import bookkeeping, sources
from syncd.bookkeeping import Known
from syncd.course import CourseSnapshot, FileIssue
from syncd.course_reads import (
    held_audience,
    held_project_issue,
    plan_from_reads,
    plan_rows,
    project_state,
    queue_audience_held,
    queue_existing,
    queue_project_minds,
    queue_project_state,
)
from syncd.course_writes import (
    History,
    queue_app_edits,
    queue_minds,
    queue_plan,
    queue_project,
    queue_tags,
)
from syncd.database import Queries, writing
from syncd.driver_errors import ROW_DATA_CLASSES, message_of, translated
from syncd.errors import RejectedError
from syncd.history import Retention
from syncd.plan import Plan, RowWrite, project_differences
from syncd.sources import SourceSeen


@dataclass
class CourseResult:
    course: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    project_written: bool = False
    skipped: bool = False  # fingerprint unchanged: nothing parsed, nothing written
    transactions: int = 0
    rejected: list[FileIssue] = field(default_factory=list)
    plan: Plan | None = None
    project_id: uuid.UUID | None = None
    owned_by: str | None = None  # another source owns this course (or its project slug)
    retry_at: float | None = None  # nothing done yet: look at the course again then
    # the project's (and its audience's) fields that differed from the files and were written
    project_fields: tuple[str, ...] = ()
    project_repaired: bool = False  # ... and someone else had written them since syncd

    def count(self, plan: Plan) -> None:
        """The plan written, and its counts."""
        self.plan = plan
        self.inserted, self.updated = len(plan.inserts), len(plan.updates) + len(plan.relinks)
        self.deleted, self.unchanged = len(plan.deletes), plan.unchanged
        self.rejected.extend(plan.rejected)


def conflict_issue(course: str, owner: str) -> FileIssue:
    return FileIssue(
        course,
        f"a course folder of this name (or slug) is synced by source {owner!r}, which keeps it:"
        " nothing is written from here (`syncd sources` hands a course over)",
        "conflict",
    )


class ProjectHeld(Exception):
    """The course's project slug is another creator's project, which syncd never takes."""

    def __init__(self, issue: FileIssue) -> None:
        super().__init__(issue.reason)
        self.issue = issue


class OwnedElsewhere(Exception):
    """The course folder's name is owned by another (live) source."""

    def __init__(self, owner: str) -> None:
        super().__init__(owner)
        self.owner = owner


class _Refusal(NamedTuple):
    path: str
    sqlstate: str
    reason: str


class _Reads(NamedTuple):
    """The cursors of a course's first round trip (see ``CourseStore._queue_reads``)."""

    owner: Any
    state: Any
    upsert: Any
    project: Any
    rows: Any
    held: Any  # who holds the brief's audience profile, if another creator does


class SlugTaken(Exception):
    """A new row's slug is held by another row (the unique index refused the insert): plan
    again with a slug check."""

    def __init__(self, course: str = "") -> None:
        super().__init__(course)
        self.course = course


def settled(snapshot: CourseSnapshot, attempt: Callable[[bool], CourseResult]) -> CourseResult:
    """One course's sync as every store ends it: ``attempt(check_slugs)`` once, again with a
    slug check when a new row's slug is taken; a course another source owns, or whose
    project another creator holds, is a result that names it (nothing written)."""
    try:
        try:
            return attempt(False)
        except SlugTaken:
            return attempt(True)
    except OwnedElsewhere as owned:
        return CourseResult(
            snapshot.course,
            rejected=[conflict_issue(snapshot.course, owned.owner)],
            owned_by=owned.owner,
        )
    except ProjectHeld as held:
        return CourseResult(snapshot.course, rejected=[*snapshot.rejected, held.issue])


class CourseStore:
    """Reads and writes courses, each course in one transaction under a per-course
    advisory lock (a full reconcile's few courses share one: ``sync_courses``).
    ``connection`` yields a connection (pool or single).

    A sync costs two round trips in pipeline mode: one that locks the course, upserts
    minds, audience and project and reads the course's rows; one that sends every write
    and the commit. Slugs are checked against other projects only when an insert trips
    the unique index (rare), in a second attempt. The other reads and writes here are one
    round trip each."""

    def __init__(
        self,
        connection: Callable[[], Any],
        clock: Callable[[], float] = time.monotonic,
        source: str | None = None,
        history_keep: Retention = Retention(),
    ):
        self._connection = connection
        self._clock = clock
        self.source = source  # None: no ownership (tools, benchmarks)
        self._history = History(source, history_keep)  # what each version records, kept how long

    # -- handed on: bookkeeping.py, sources.py, course_reads.py ----------------------

    def fingerprints(self) -> dict[str, Known]:
        """See ``bookkeeping.fingerprints``."""
        return bookkeeping.fingerprints(self._connection)

    def pass_state(self) -> tuple[dict[str, Known], set[str]]:
        """See ``bookkeeping.pass_state``."""
        return bookkeeping.pass_state(self._connection, self.source)

    def save_stat_fingerprints(self, items: list[tuple[str, bytes, bytes]]) -> None:
        """See ``bookkeeping.save_stat_fingerprints``."""
        bookkeeping.save_stat_fingerprints(self._connection, items)

    def save_findings(
        self,
        *,
        touched: list[tuple[str, bytes, bytes]],
        adopted: list[str] | None,
        conflicts: dict[str, str] | None,
        skipped_folders: dict[str, int],
    ) -> None:
        """See ``bookkeeping.save_findings``."""
        bookkeeping.save_findings(
            self._connection,
            self.source,
            touched=touched,
            adopted=adopted,
            conflicts=conflicts,
            skipped_folders=skipped_folders,
        )

    def refused_files(self) -> dict[str, str]:
        """See ``bookkeeping.refused_files``."""
        return bookkeeping.refused_files(self._connection)

    def file_paths(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, str | None]:
        """See ``bookkeeping.file_paths``."""
        return bookkeeping.file_paths(self._connection, ids)

    def touch_source(self, root: str, host: str, settings: dict[str, Any]) -> SourceSeen:
        """See ``sources.touch_source``."""
        return sources.touch_source(self._connection, self.source, root, host, settings)

    def source_settings(self) -> dict[str, Any] | None:
        """See ``sources.source_settings``."""
        return sources.source_settings(self._connection, self.source)

    def sources(self) -> list[dict[str, Any]]:
        """See ``sources.list_sources``."""
        return sources.list_sources(self._connection)

    def retire_source(self, name: str) -> list[str]:
        """See ``sources.retire_source``."""
        return sources.retire_source(self._connection, name)

    def hand_over(self, name: str, to: str) -> list[str]:
        """See ``sources.hand_over``."""
        return sources.hand_over(self._connection, name, to)

    def plan_from_reads(
        self, snapshot: CourseSnapshot, *, with_fields: bool = False
    ) -> tuple[Plan, tuple[str, ...]]:
        """See ``course_reads.plan_from_reads``."""
        return plan_from_reads(self._connection, snapshot, with_fields=with_fields)

    # -- the course transaction --------------------------------------------------------

    def rename_course(self, old: str, new: str, slug: str) -> int:
        """Course folder ``old`` is now ``new`` (same files): move its project (slug
        ``slug``), rows and bookkeeping to the new name, keeping every id."""
        with writing(self._connection, f"rename course {old}", "course.sql") as sql:
            for name in sorted((old, new)):  # one lock order
                sql.queue("lock_course", course=name)
            moving = [row["id"] for row in sql.all("course_rows_moving", course=old)]
            if moving:  # the app's edits, at the paths they were made at
                queue_app_edits(sql, moving)
            moved = sql.all("rename_course", old=old, new=new, slug=slug)
            if moving:  # each moving row's new path, in its history
                sql.queue(
                    "record_versions",
                    ids=moving,
                    kinds=["moved"] * len(moving),
                    fields=[""] * len(moving),
                    source=self.source,
                )
        return len(moved)

    def sync_course(
        self, snapshot: CourseSnapshot, stat_fingerprint: bytes | None = None
    ) -> CourseResult:
        """Write one course; ``stat_fingerprint`` (of the files it was read from) lets the
        next rescan skip reading them if they are untouched."""
        try:
            return settled(
                snapshot, lambda check: self._sync(snapshot, stat_fingerprint, check_slugs=check)
            )
        except RejectedError as error:
            if (error.sqlstate or "")[:2] not in ROW_DATA_CLASSES:
                raise
            # One row refused: find it, write the rest (rare: the fast path stays fast).
            return self._sync(snapshot, None, check_slugs=True, row_by_row=True)

    def sync_courses(
        self, courses: list[tuple[CourseSnapshot, bytes | None]]
    ) -> list[CourseResult]:
        """Write several courses (snapshot, stat fingerprint) in one transaction, each as
        ``sync_course`` writes it: a full reconcile's few courses per job, so that a far
        link costs two round trips for them all instead of two each. The first round trip
        takes every course's lock (in name order), inserts the minds and reads each course;
        the second writes them all (the tags they name first, in one sorted statement, so
        that concurrent transactions lock in one order) and commits.

        Anything that is one course's trouble (a row refused, a slug taken, a course owned
        by another source, a lock wait) rolls the whole back and raises: the caller then
        syncs each course alone, where it is handled as usual."""
        results = [CourseResult(s.course, rejected=list(s.rejected)) for s, _ in courses]
        names = ", ".join(s.course for s, _ in courses)
        with translated(f"courses {names}"), self._connection() as conn, conn.work():
            sql = Queries(conn, "course.sql")
            for course in sorted(s.course for s, _ in courses):
                sql.queue("lock_course", course=course)
            queue_minds(sql, [s for s, _ in courses])
            reads = [self._queue_reads(sql, s, locked=True, minds=False) for s, _ in courses]
            plans = [
                self._planned(sql, s, r, result, check_slugs=False)
                for (s, _), r, result in zip(courses, reads, results, strict=True)
            ]
            queue_tags(sql, [p.inserts + p.updates + p.relinks for _, p in plans])
            for (snapshot, stat), (project_id, plan), result in zip(
                courses, plans, results, strict=True
            ):
                self._queue_writes(sql, snapshot, result, project_id, plan, tags_done=True)
                self._queue_course(sql, snapshot, result, stat)
        for result in results:
            result.transactions = 1  # the batch's one transaction
        return results

    def _queue_course(
        self,
        sql: Queries,
        snapshot: CourseSnapshot,
        result: CourseResult,
        stat_fingerprint: bytes | None,
    ) -> None:
        """syncd.courses: what was written of the course (its fingerprints only when it was
        written whole)."""
        complete = not result.rejected
        sql.queue(
            "upsert_course",
            course=snapshot.course,
            source=self.source,
            project_id=result.project_id,
            fingerprint=snapshot.fingerprint if complete else None,
            stat_fingerprint=stat_fingerprint if complete else None,
        )

    def _sync(
        self,
        snapshot: CourseSnapshot,
        stat_fingerprint: bytes | None,
        *,
        check_slugs: bool,
        row_by_row: bool = False,
    ) -> CourseResult:
        """One transaction: pipelined, or (``row_by_row``) each row in a savepoint, so that
        a row the database refuses is rejected alone and the others are written."""
        result = CourseResult(snapshot.course, rejected=list(snapshot.rejected))
        with translated(f"course {snapshot.course}"), self._connection() as conn:
            try:
                with conn.transaction() if row_by_row else conn.work():
                    if row_by_row:
                        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # refusals per row
                    sql = Queries(conn, "course.sql")
                    self._write(
                        sql, snapshot, result, check_slugs=check_slugs, row_by_row=row_by_row
                    )
                    self._queue_course(sql, snapshot, result, stat_fingerprint)
            except psycopg.errors.UniqueViolation as exc:
                if check_slugs:
                    raise
                raise SlugTaken from exc
            result.transactions = 1
        return result

    def dry_run(self, snapshot: CourseSnapshot) -> CourseResult:
        """The plan, computed from reads only."""
        result = CourseResult(snapshot.course, rejected=list(snapshot.rejected))
        plan, _ = self.plan_from_reads(snapshot)
        result.count(plan)
        return result

    def archive_course(self, course: str) -> tuple[bool, int]:
        """Archive the project of a vanished course folder; soft-delete its rows. Returns
        (a project was archived, rows soft-deleted)."""
        with writing(self._connection, f"course {course}", "course.sql") as sql:
            sql.queue("lock_course", course=course)
            row = sql.one("archive_course", course=course)
        return row is not None and row["archived"] is not None, row["deleted"] if row else 0

    def _write(
        self,
        sql: Queries,
        snapshot: CourseSnapshot,
        result: CourseResult,
        *,
        check_slugs: bool,
        row_by_row: bool = False,
    ) -> None:
        reads = self._queue_reads(sql, snapshot)
        project_id, plan = self._planned(sql, snapshot, reads, result, check_slugs=check_slugs)
        self._queue_writes(sql, snapshot, result, project_id, plan, row_by_row=row_by_row)

    def _queue_reads(
        self, sql: Queries, snapshot: CourseSnapshot, *, locked: bool = False, minds: bool = True
    ) -> _Reads:
        """The first round trip of a course's sync, queued: its lock (unless ``locked``
        already), the minds it names (unless inserted already), the project's state and
        upsert, and the course's rows. Nothing is fetched here."""
        p = snapshot.project
        if not locked:
            sql.queue("lock_course", course=snapshot.course)
        owner = (
            sql.queue("course_owner", course=snapshot.course, slug=p.slug) if self.source else None
        )
        if minds:
            queue_minds(sql, [snapshot])
        upsert = state = held = None
        if "project" not in snapshot.protected:
            held = queue_audience_held(sql, snapshot)
            state = queue_project_state(sql, snapshot)
            upsert = queue_project(sql, snapshot)
        project = queue_project_minds(sql, snapshot)
        rows = queue_existing(sql, snapshot, with_fields=False)
        return _Reads(owner, state, upsert, project, rows, held)

    def _planned(
        self,
        sql: Queries,
        snapshot: CourseSnapshot,
        reads: _Reads,
        result: CourseResult,
        *,
        check_slugs: bool,
    ) -> tuple[uuid.UUID, Plan]:
        """The course's project id and plan, from what its first round trip read (the first
        fetch ends that round trip)."""
        p = snapshot.project
        owner, state, upsert, project, rows, held = reads
        found = project.fetchone()  # the first round trip ends here
        if owner is not None:
            for row in owner.fetchall():
                if row["source"] not in (None, self.source) and not row["owner_retired"]:
                    raise OwnedElsewhere(row["source"])  # rolls back whatever was queued
        if found is None:  # a protected (rejected) brief of a course never synced before
            upsert = queue_project(sql, snapshot)
            found = queue_project_minds(sql, snapshot).fetchone()
            rows = queue_existing(sql, snapshot, with_fields=False)
        if found["held"]:  # another creator's: nothing was written to it; roll back the rest
            raise ProjectHeld(held_project_issue(snapshot.course, p.slug, found["holder"]))
        wanted, issue = held_audience(snapshot, held)
        if issue is not None:
            result.rejected.append(issue)
        result.project_written = upsert is not None and upsert.fetchone() is not None
        before = project_state(state.fetchone()) if state is not None else None
        if before is not None:  # an existing project: what differs is written now
            result.project_fields = project_differences(wanted, before)
            result.project_repaired = before.changed and bool(result.project_fields)
        project_id = found["id"]
        mind_ids = (found["creator_mind_id"], found["persona_mind_id"])
        plan = plan_rows(
            sql, snapshot, rows.fetchall(), project_id, mind_ids, check_slugs=check_slugs
        )
        return project_id, plan

    def _queue_writes(
        self,
        sql: Queries,
        snapshot: CourseSnapshot,
        result: CourseResult,
        project_id: uuid.UUID,
        plan: Plan,
        *,
        row_by_row: bool = False,
        tags_done: bool = False,
    ) -> None:
        """Every write of the plan, queued (``row_by_row``: the rows first, each in a
        savepoint of its own); ``tags_done``: the tags it names are inserted already."""
        if plan.reclaims:  # before any insert takes the slugs back
            sql.queue(
                "reclaim_slugs",
                course=snapshot.course,
                ids=[r.holder for r in plan.reclaims],
                slugs=[r.slug for r in plan.reclaims],
                paths=[r.write.record.file_path for r in plan.reclaims],
            )
        refused = (
            self._write_rows_alone(sql, snapshot.course, project_id, plan) if row_by_row else []
        )
        queue_plan(
            sql,
            project_id,
            plan,
            history=self._history,
            rows_done=row_by_row,
            tags_done=tags_done,
        )
        sql.queue(
            "record_refusals",
            project_id=project_id,
            paths=[r.path for r in refused],
            sqlstates=[r.sqlstate for r in refused],
            reasons=[r.reason for r in refused],
        )
        result.count(plan)
        result.rejected.extend(FileIssue(r.path, r.reason, "refused") for r in refused)
        result.project_id = project_id

    def _write_rows_alone(
        self, sql: Queries, course: str, project_id: uuid.UUID, plan: Plan
    ) -> list[_Refusal]:
        """Write each insert and update of ``plan`` in a savepoint of its own (parents
        first, as the plan lists them), and take the ones the database refuses out of the
        plan: they keep their old rows, and so do the rows under them."""
        refused: list[_Refusal] = []
        refused_ids: dict[uuid.UUID, str] = {}  # row id -> the SQLSTATE that kept it out
        for writes in (plan.inserts, plan.updates):
            kept: list[RowWrite] = []
            for write in writes:
                path = write.record.file_path or f"{course}:{write.record.key}"
                if write.parent_id in refused_ids:  # its parent is not written: nor is it
                    state = refused_ids[write.parent_id]
                    refused_ids[write.id] = state
                    if write.record.file_path:  # a file is named; a module row has none
                        reason = "not written: the row it hangs under was refused by the database"
                        refused.append(_Refusal(path, state, f"{reason} (SQLSTATE {state})"))
                    continue
                alone = Plan(
                    inserts=[write] if writes is plan.inserts else [],
                    updates=[write] if writes is plan.updates else [],
                    changes=plan.changes,
                )
                try:
                    with sql.conn.transaction():
                        queue_plan(sql, project_id, alone, history=self._history, rows_only=True)
                except psycopg.Error as exc:
                    state = getattr(exc, "sqlstate", None) or ""
                    if state[:2] not in ROW_DATA_CLASSES:
                        raise
                    refused_ids[write.id] = state
                    reason = f"refused by the database: {message_of(exc)} (SQLSTATE {state})"
                    refused.append(_Refusal(path, state, reason))
                    continue
                kept.append(write)
            writes[:] = kept
        return refused
