"""The whole-tree pass: every course of the tree once (``syncd --rescan``, the daemon's start,
its safety and recovery reconciles), a few courses per job of the scheduler, then what only a
whole pass can tell: the courses whose folders are gone (archived), the non-course folders,
the courses this source adopts and those other sources own; and its ``Summary``.

``TreePass`` runs on its caller's thread (the writer's, or the CLI's) and starts no thread:
it hands its jobs (``Reconciler.sync_batch``) to the scheduler's workers. At its start it
waits for the jobs of live events to finish, then loads afresh what the database holds
(``KnownCourses``, ``Ownership``, ``Renames``: each guards its own state with its own lock).
Its own findings (``last_results``, the non-course folders and which of them were said) are
written only by the thread running ``run``, while no job of it runs or between its jobs'
results, so they need no lock."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from syncd import source_settings
from syncd.archiving import ArchiveGuard
from syncd.course import FileIssue
from syncd.course_failures import Failure, describe_failure, is_course_level
from syncd.errors import FatalError, RootUnavailable
from syncd.known import KnownCourses
from syncd.ownership import Ownership
from syncd.renames import Renames
from syncd.scheduler import CourseScheduler
from syncd.storage import CourseStorage
from syncd.store import CourseResult
from syncd.tree import count_files, list_courses

# A full reconcile's job: this many courses read, then written in one transaction (two round
# trips for them all; over a far link round trips, not the server, bound a backfill).
BATCH_COURSES = 16


class OnFailure(Protocol):
    def __call__(self, course: str, error: BaseException) -> None: ...


class Progress(Protocol):
    def __call__(self, done: int, total: int, course: str) -> None: ...


@dataclass
class Summary:
    courses: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    skipped: int = 0
    archived: int = 0
    rejected: list[FileIssue] = field(default_factory=list)
    failed: dict[str, Failure] = field(default_factory=dict)  # courses that failed on their own
    skipped_folders: dict[str, int] = field(default_factory=dict)  # not courses: file counts
    ms: float = 0.0

    def add(self, result: CourseResult) -> None:
        self.courses += 1
        self.inserted += result.inserted
        self.updated += result.updated
        self.deleted += result.deleted
        self.unchanged += result.unchanged
        self.skipped += int(result.skipped)
        self.rejected.extend(result.rejected)


def _synced_in(futures: Iterable[Future[list[CourseResult | Exception]]]) -> int:
    """Courses done without failing in the jobs among ``futures`` that finished."""
    return sum(
        1
        for f in futures
        if f.done() and not f.cancelled() and f.exception() is None
        for outcome in f.result()
        if not isinstance(outcome, Exception)
    )


def _course_failed(
    summary: Summary, course: str, error: Exception, told: OnFailure, *, listed: bool = True
) -> None:
    """One course's failure in a full pass is that course's; anything else ends the pass.
    A ``listed`` course (a folder of the tree, not one archived) counts among the courses."""
    if not is_course_level(error):
        raise error
    summary.courses += int(listed)
    summary.failed[course] = describe_failure(error)
    told(course, error)


def course_folders(root: Path, follow_symlinks: bool) -> tuple[list[str], list[str]]:
    """The course folders, and the folders that are there but are not read (unreadable,
    linked): those are handed on too, so that their rows are kept and they are named, never
    archived; and the folders that are not courses."""
    try:
        listing = list_courses(root, follow_symlinks)
    except OSError as exc:
        raise RootUnavailable(
            f"course root {root} is unreadable: {exc.strerror}: check --root"
        ) from exc
    return sorted({*listing.courses, *listing.held}), listing.skipped


class TreePass:
    """The whole-tree pass of one ``Reconciler``: its course jobs are ``sync_batch``; it
    shares the reconciler's ``KnownCourses``, ``Ownership``, ``Renames`` and archive guard,
    and sets them up afresh at each pass (``run``)."""

    def __init__(
        self,
        root: Path,
        store: CourseStorage,
        known: KnownCourses,
        *,
        ownership: Ownership,
        renames: Renames,
        archive: ArchiveGuard,
        sync_batch: Callable[[list[str]], list[CourseResult | Exception]],
        settings: dict[str, Any],
        host: str,
        follow_symlinks: bool,
        batch_courses: int,
        write: bool,
        log: Any,
        clock: Callable[[], float],
    ) -> None:
        self.root = root
        self.store = store
        self.log = log
        self.clock = clock
        self.write = write  # False: dry run / kill switch; plan from reads, write nothing
        self.host = host  # recorded with the source (the store's source name)
        self.settings = settings  # the settings that shape rows, recorded with the source
        self.follow_symlinks = follow_symlinks
        self.batch_courses = batch_courses  # courses per job (and transaction)
        self._known = known
        self._ownership = ownership
        self._renames = renames
        self._archive = archive
        self._sync_batch = sync_batch  # a job: these courses read, then written together
        self.last_results: list[CourseResult] = []  # kept when asked (--dry-run prints them)
        # non-course folders said once per process; their file counts
        self._skipped_logged: set[str] = set()
        self._skipped_folders: dict[str, int] = {}

    def run(
        self,
        scheduler: CourseScheduler,
        progress: Progress | None,
        on_failure: OnFailure,
        after_course: Callable[[str], None] | None,
        *,
        keep_results: bool,
    ) -> Summary:
        """Every course once, a few courses (``batch_courses``) per job of ``scheduler``:
        each course read and parsed, then those to write written in one transaction (or
        each in its own, when one of them cannot be written that way). At most two jobs per
        worker are outstanding, so that memory stays flat. A course that fails on its own
        is in ``Summary.failed`` and told to ``on_failure``; the pass goes on.
        ``after_course`` is told of each course done without failing; with
        ``keep_results``, each course's result is kept in ``last_results``."""
        started = self.clock()
        self.log.info(
            "reconcile started", root=str(self.root), write=self.write, source=self.store.source
        )
        scheduler.wait_idle()  # jobs of live events finish first: the state below is swapped
        courses, skipped_names = course_folders(self.root, self.follow_symlinks)
        if progress is not None:  # before the first database call: a failing one leaves the
            progress(0, len(courses), "")  # count of courses not reached yet
        live_known = self._begin_pass(courses, skipped_names)
        self._register_source()  # after the root checks: a pass that fails on it writes nothing
        summary = Summary()
        pending: deque[tuple[list[str], Future[list[CourseResult | Exception]]]] = deque()
        done = 0

        def job(batch: list[str]) -> list[CourseResult | Exception]:
            outcomes = self._sync_batch(batch)
            if after_course is not None:
                for course, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, CourseResult):
                        after_course(course)
            return outcomes

        def collect(block_until: int) -> None:
            nonlocal done
            while len(pending) > block_until:
                batch, future = pending[0]  # left there until done: an interrupt counts it
                outcomes = future.result()  # the database's trouble ends the pass here
                for course, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, Exception):
                        _course_failed(summary, course, outcome, on_failure)
                    else:
                        if keep_results:
                            self.last_results.append(outcome)
                        summary.add(outcome)
                    done += 1
                    if progress is not None:
                        progress(done, len(courses), course)
                pending.popleft()

        size = max(1, self.batch_courses)
        try:
            for first in range(0, len(courses), size):
                batch = courses[first : first + size]
                pending.append((batch, scheduler.submit_group(batch, partial(job, batch))))
                collect(block_until=2 * scheduler.workers)
            collect(block_until=0)
        except BaseException:
            for _, future in pending:
                future.cancel()
            scheduler.wait_idle()  # no job of this pass outlives it
            if progress is not None:  # the courses that finished meanwhile count as done
                progress(done + _synced_in(f for _, f in pending), len(courses), "")
            raise
        self._save_tree_findings(summary, courses)
        self._archive_vanished(sorted(set(live_known) - set(courses)), summary, on_failure)
        summary.ms = (self.clock() - started) * 1000
        self._log_summary(summary)
        return summary

    def _log_summary(self, summary: Summary) -> None:
        self.log.info(
            "reconcile finished",
            courses=summary.courses,
            inserted=summary.inserted,
            updated=summary.updated,
            deleted=summary.deleted,
            unchanged=summary.unchanged,
            skipped=summary.skipped,
            archived=summary.archived,
            rejected=len(summary.rejected),
            failed=len(summary.failed),
            skipped_folders=summary.skipped_folders,
            ms=round(summary.ms, 1),
        )

    def _archive_vanished(self, vanished: list[str], summary: Summary, failed: OnFailure) -> None:
        """Archive the courses whose folders are gone; a refusal is that course's."""
        for course in vanished:
            try:
                summary.archived += int(self._archive.archive(course))
            except Exception as error:
                _course_failed(summary, course, error, failed, listed=False)

    def _begin_pass(self, courses: list[str], skipped_names: list[str]) -> list[str]:
        """Count non-course folders, load what the database knows; return the courses this
        source has live there."""
        self.last_results = []
        self._renames.begin_pass()  # every course is looked at afresh
        self._count_skipped_folders(skipped_names)
        # Rows someone else changed or deleted since syncd wrote them: their courses are
        # synced even if no file changed, and the sync rewrites those rows from their files.
        known, changed = self.store.pass_state()
        self._known.load(known)
        self._ownership.begin_pass(courses, known, changed)
        # Only what this source synced is archived when its folder is gone from this root.
        live_known = [c for c, k in known.items() if not k.archived and self._ownership.mine(k)]
        self._archive.refuse_empty_root(courses, live_known)
        return live_known

    def _save_tree_findings(self, summary: Summary, courses: list[str]) -> None:
        """After a full pass: touched-but-unchanged stats, the courses this source adopts,
        those other sources own, and non-course folders, for the next rescan, `verify` and
        `report`, in one transaction."""
        owned_elsewhere = self._ownership.end_pass()
        summary.skipped_folders = {k: v for k, v in self._skipped_folders.items() if v}
        touched = self._known.take_touched()
        if not self.write:
            return
        mine = bool(self.store.source)
        try:
            self.store.save_findings(
                touched=touched,
                adopted=[c for c in courses if c not in owned_elsewhere] if mine else None,
                conflicts=owned_elsewhere if mine else None,
                skipped_folders=summary.skipped_folders,
            )
        except Exception as error:  # bookkeeping: the next full reconcile does it again
            if not is_course_level(error):
                raise
            failure = describe_failure(error)
            self.log.error(
                "reconcile step failed",
                step="save findings",
                reason=failure.reason,
                sqlstate=failure.sqlstate,
                retry="at the next full reconcile",
            )

    def _register_source(self) -> None:
        """Record this source as seen (its root and host) with the settings that shape its
        rows, saying which of them changed; a retired source stops here."""
        if not (self.store.source and self.write):
            return
        seen = self.store.touch_source(str(self.root.absolute()), self.host, self.settings)
        if seen.retired:
            raise FatalError(
                f"source {self.store.source!r} was retired: it writes nothing any more"
                " (run with another --source, or hand its courses over again)"
            )
        changed = source_settings.changes(seen.settings_before, self.settings)
        if changed:
            self.log.warning(
                "source settings changed",
                source=self.store.source,
                changed=changed,
                hint="every course is synced again with the new settings",
            )

    def _count_skipped_folders(self, skipped_names: list[str]) -> None:
        """The files of each non-course folder, counted once per full reconcile (not on every
        listing); a folder that holds any is warned about once per process."""
        self._skipped_folders = {n: count_files(self.root / n) for n in skipped_names}
        for name, files in self._skipped_folders.items():
            if name not in self._skipped_logged and files:  # the reconcile's own thread
                self._skipped_logged.add(name)
                self.log.warning(
                    "folder skipped", folder=name, files=files, reason="not a course folder"
                )
