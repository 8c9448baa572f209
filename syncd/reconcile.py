"""Reconcile: make the database hold what the tree holds, one course at a time.

Shared by ``syncd --rescan`` (every course once) and the daemon (one course per debounced
batch of events). The database's own trouble (transient), fatal refusals and an unreadable
root propagate to the caller; anything that goes wrong in one course (a refusal, a lock wait,
a surprise) is that course's: named, and the pass goes on.

``Reconciler`` is the whole-tree pass and the work on one course (read, parse, commit, the
log lines); its collaborators each have one job: ``KnownCourses`` (known.py) what the
database holds of each course, ``Ownership`` (ownership.py) whose course it is, ``Renames``
(renames.py) a vanished folder's grace and its rename, ``ArchiveGuard`` (archiving.py) what
may be archived. It starts no thread: ``reconcile_all`` runs on its caller's thread (the
writer's, or the CLI's) and hands its jobs to the scheduler's workers; course jobs run on
those workers.

Shared state and its locks: each object that holds state written by one thread and read or
written by another guards it with its own one lock: ``KnownCourses``, ``Ownership``,
``Renames`` (which holds its lock around the ``KnownCourses`` calls that must agree with its
own state), and ``LinkTargets`` (link_targets.py: written by course jobs, read by the
supervisor). The pass's own findings (``last_results``, the non-course folders and which of
them were said) are written only by the thread running ``reconcile_all``, while no job of it
runs or between its jobs' results, so they need none."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from syncd import layout, source_settings
from syncd import parser as course_parser
from syncd.archiving import ArchiveGuard
from syncd.bookkeeping import Known
from syncd.course import CourseSnapshot, FileIssue, ParseOptions
from syncd.course_failures import Failure, describe_failure, is_course_level
from syncd.course_log import CourseLog
from syncd.errors import FatalError, ParseError, RootUnavailable
from syncd.fingerprint import fingerprint as content_fingerprint
from syncd.fingerprint import options_salt
from syncd.known import KnownCourses
from syncd.link_targets import LinkTargets
from syncd.ownership import Ownership
from syncd.renames import Renames
from syncd.scheduler import CourseScheduler
from syncd.storage import CourseStorage
from syncd.store import CourseResult
from syncd.tree import count_files, list_courses, read_scanned, scan_course

# A course read and parsed, to write: (snapshot, content fingerprint, stat fingerprint, the
# time its job began)
Prepared = tuple[CourseSnapshot, bytes, bytes, float]


class OnFailure(Protocol):
    def __call__(self, course: str, error: BaseException) -> None: ...


# A full reconcile's job: this many courses read, then written in one transaction (two round
# trips for them all; over a far link round trips, not the server, bound a backfill).
BATCH_COURSES = 16


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


@dataclass
class Reconciler:
    root: Path
    store: CourseStorage
    options: ParseOptions
    log: Any
    max_file_bytes: int = 2 * 1024 * 1024
    write: bool = True  # False: dry run / kill switch; plan from reads, write nothing
    clock: Callable[[], float] = time.monotonic
    keep_plans: bool = False  # --dry-run prints them; otherwise they are dropped at once
    batch_courses: int = BATCH_COURSES  # courses per job (and transaction) of a full reconcile
    follow_symlinks: bool = False
    host: str = ""  # recorded with the source (the store's source name)
    # Is a file of the course open for writing? (the daemon's close events): then its
    # content is not final, and the course waits for the close instead of being read.
    being_written: Callable[[str], bool] = lambda _course: False
    last_results: list[CourseResult] = field(default_factory=list)  # the pass's thread alone
    # The pass's thread alone: non-course folders said once per process; their file counts
    _skipped_logged: set[str] = field(default_factory=set)
    _skipped_folders: dict[str, int] = field(default_factory=dict)
    # Collaborators (each guards its own state; see the module's docstring)
    _known: KnownCourses = field(init=False)
    _links: LinkTargets = field(init=False)
    _ownership: Ownership = field(init=False)
    _renames: Renames = field(init=False)
    _archive: ArchiveGuard = field(init=False)
    _course_log: CourseLog = field(init=False)  # what the log says of a course; no state

    def __post_init__(self) -> None:
        self._known = KnownCourses()
        self._links = LinkTargets()
        self._course_log = CourseLog(self.log, self.clock, write=self.write)
        self._ownership = Ownership(self.root, self.store, self._known)
        self._renames = Renames(
            self.root,
            self.store,
            self._known,
            mine=self._ownership.mine,
            archive=self.archive,
            log=self.log,
            clock=self.clock,
        )
        self._archive = ArchiveGuard(
            self.root,
            self.store,
            self._known,
            self._renames,
            mine=self._ownership.mine,
            write=self.write,
            log=self.log,
        )

    # -- whole tree -------------------------------------------------------------------

    def reconcile_all(
        self,
        scheduler: CourseScheduler,
        progress: Progress | None = None,
        on_failure: OnFailure | None = None,
        after_course: Callable[[str], None] | None = None,
    ) -> Summary:
        """Every course once, a few courses (``batch_courses``) per job of ``scheduler``:
        each course read and parsed, then those to write written in one transaction (or
        each in its own, when one of them cannot be written that way). At most two jobs per
        worker are outstanding, so that memory stays flat. A course that fails on its own
        is in ``Summary.failed`` and told to ``on_failure`` (by default: logged); the pass
        goes on. ``after_course`` is told of each course done without failing."""
        started = self.clock()
        self.log.info(
            "reconcile started", root=str(self.root), write=self.write, source=self.store.source
        )
        scheduler.wait_idle()  # jobs of live events finish first: the state below is swapped
        courses, skipped_names = self._listing()
        if progress is not None:  # before the first database call: a failing one leaves the
            progress(0, len(courses), "")  # count of courses not reached yet
        live_known = self._begin_pass(courses, skipped_names)
        self._register_source()  # after the root checks: a pass that fails on it writes nothing
        summary = Summary()
        pending: deque[tuple[list[str], Future[list[CourseResult | Exception]]]] = deque()
        done = 0

        failed = on_failure or self.log_failure

        def job(batch: list[str]) -> list[CourseResult | Exception]:
            outcomes = self.sync_batch(batch)
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
                        _course_failed(summary, course, outcome, failed)
                    else:
                        if self.keep_plans:
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
        self._archive_vanished(sorted(set(live_known) - set(courses)), summary, failed)
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
                summary.archived += int(self.archive(course))
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

    def log_failure(self, course: str, error: BaseException) -> None:
        """A course failed on its own (``--rescan``: named; the daemon retries it)."""
        self._course_log.failure(course, error)

    def _register_source(self) -> None:
        """Record this source as seen (its root and host) with the settings that shape its
        rows, saying which of them changed; a retired source stops here."""
        if not (self.store.source and self.write):
            return
        settings = source_settings.as_record(
            self.options.default_creator_mind, self.max_file_bytes, self.follow_symlinks
        )
        seen = self.store.touch_source(str(self.root.absolute()), self.host, settings)
        if seen.retired:
            raise FatalError(
                f"source {self.store.source!r} was retired: it writes nothing any more"
                " (run with another --source, or hand its courses over again)"
            )
        changed = source_settings.changes(seen.settings_before, settings)
        if changed:
            self.log.warning(
                "source settings changed",
                source=self.store.source,
                changed=changed,
                hint="every course is synced again with the new settings",
            )

    def list_courses(self) -> list[str]:
        """The course folders, and the folders that are there but are not read (unreadable,
        linked): those are handed on too, so that their rows are kept and they are named,
        never archived."""
        return self._listing()[0]

    def _listing(self) -> tuple[list[str], list[str]]:
        """``list_courses``, and the folders that are not courses."""
        try:
            listing = list_courses(self.root, self.follow_symlinks)
        except OSError as exc:
            raise RootUnavailable(
                f"course root {self.root} is unreadable: {exc.strerror}: check --root"
            ) from exc
        return sorted({*listing.courses, *listing.held}), listing.skipped

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

    # -- one course ---------------------------------------------------------------------

    def sync_course(self, course: str) -> CourseResult:
        """Sync one course folder; archive its project when the folder is gone."""
        prepared = self.prepare(course)
        if isinstance(prepared, CourseResult):
            self.save_touched()
            return prepared
        return self.commit(*prepared)

    def sync_batch(self, courses: list[str]) -> list[CourseResult | Exception]:
        """Sync these course folders (a full reconcile's job): each read and parsed, then
        the ones to write written together (``commit_many``). Each course's outcome, in
        order: its result, or its own failure; the database's trouble, a fatal refusal and
        an unreadable root are raised. Thread-safe."""
        outcomes: list[CourseResult | Exception | None] = []
        prepared: list[tuple[int, Prepared]] = []
        for course in courses:
            try:
                read = self.prepare(course)
            except Exception as error:
                if not is_course_level(error):
                    raise
                outcomes.append(error)
                continue
            if isinstance(read, CourseResult):
                outcomes.append(read)
            else:
                prepared.append((len(outcomes), read))
                outcomes.append(None)
        written = self.commit_many([p for _, p in prepared])
        for (index, _), done in zip(prepared, written, strict=True):
            outcomes[index] = done
        return [o for o in outcomes if o is not None]

    def commit_many(self, prepared: list[Prepared]) -> list[CourseResult | Exception]:
        """Write parsed courses: several in one transaction (``CourseStore.sync_courses``);
        when one of them cannot be written that way (its own trouble: a refused row, a
        slug taken, a lock), each in its own, as ``commit`` does. Each course's result or
        its own failure, in order; the database's trouble is raised. Thread-safe."""
        if self.write and len(prepared) > 1:
            try:
                results = self.store.sync_courses([(p[0], p[2]) for p in prepared])
            except Exception as error:
                if not is_course_level(error):
                    raise
                self.log.debug(
                    "courses written one by one",
                    courses=[p[0].course for p in prepared],
                    reason=describe_failure(error).reason,
                )
            else:
                return [
                    self._committed(result, *p) for result, p in zip(results, prepared, strict=True)
                ]
        outcomes: list[CourseResult | Exception] = []
        for p in prepared:
            try:
                outcomes.append(self.commit(*p))
            except Exception as error:
                if not is_course_level(error):
                    raise
                outcomes.append(error)
        return outcomes

    def prepare(self, course: str) -> CourseResult | Prepared:
        """Read and parse one course: a finished result when there is nothing to write
        (unchanged, archived, rejected), else (snapshot, fingerprints, start time).

        Unchanged is decided cheaply first: the files' stat hash equal to the one stored
        means nothing is read at all; else the files are read and their content hash
        compared."""
        started = self.clock()
        scan = scan_course(self.root, course, self.follow_symlinks)
        if self.follow_symlinks:
            self._links.scanned(course, scan.link_targets)
        refused = self._ownership.not_ours(course, scan)
        if refused is not None:
            self._course_log.rejected(course, refused.reason)
            return CourseResult(course, rejected=[refused])
        if scan.exists:
            self._renames.seen(course)  # back (git, an editor): a new grace next time
        if not scan.exists or not layout.is_course_folder(scan.top_names):
            self._archive.refuse_lone_vanish(course, self.list_courses)
            return self._renames.vanished(course)
        known = self._known.get(course)
        synced = (
            known is not None
            and known.fingerprint is not None
            and not known.archived
            and not self._ownership.changed_by_others(course)
        )
        # the settings that decide which files are read are in it too: a change of them
        # reads every course again
        stat_fingerprint = scan.stat_fingerprint(
            f"{options_salt(self.options)}|{self.max_file_bytes}|{self.follow_symlinks}"
        )
        if synced and known is not None and known.stat_fingerprint == stat_fingerprint:
            return self._skipped(course, started)
        if self.being_written(course):
            return self._skipped(course, started, "a file is open for writing")
        files = read_scanned(scan, self.max_file_bytes)
        if self.being_written(course):  # a write began while it was read
            return self._skipped(course, started, "a file is open for writing")
        fingerprint = content_fingerprint(files.files, self.options)
        if known is None and self.write:
            self._renames.follow(course, fingerprint)
        # Unchanged content is skipped, unless a file could not be read (or is a link): that
        # must be named now, not when some other file of the course changes.
        if (
            synced
            and known is not None
            and known.fingerprint == fingerprint
            and not files.unreadable
        ):
            self._known.touched(course, known, fingerprint, stat_fingerprint)
            return self._skipped(course, started)
        try:
            snapshot = course_parser.parse_course(
                course, files.files, self.options, files.unreadable
            )
        except ParseError as error:
            self._course_log.rejected(error.path, error.reason)
            return CourseResult(course, rejected=[FileIssue(error.path, error.reason)])
        self._course_log.parsed(snapshot)
        return snapshot, fingerprint, stat_fingerprint, started

    def _skipped(self, course: str, started: float, reason: str = "unchanged") -> CourseResult:
        """Nothing to do now (``CourseLog.skipped`` says why)."""
        self._course_log.skipped(course, started, reason)
        return CourseResult(course, skipped=True)

    def link_targets(self) -> dict[str, str]:
        """Real path -> course of every folder reached through a followed link (the daemon
        watches them: the kernel does not follow links for it). Thread-safe."""
        return self._links.by_target()

    def save_touched(self) -> None:
        """Remember the new stat of courses whose files were touched but not changed."""
        touched = self._known.take_touched()
        if touched and self.write:
            self.store.save_stat_fingerprints(touched)

    def commit(
        self,
        snapshot: CourseSnapshot,
        fingerprint: bytes,
        stat_fingerprint: bytes,
        started: float,
    ) -> CourseResult:
        """Write one parsed course (or plan it, with the kill switch on). Thread-safe."""
        if self.write:
            result = self.store.sync_course(snapshot, stat_fingerprint)
        else:
            result = self.store.dry_run(snapshot)
        return self._committed(result, snapshot, fingerprint, stat_fingerprint, started)

    def _committed(
        self,
        result: CourseResult,
        snapshot: CourseSnapshot,
        fingerprint: bytes,
        stat_fingerprint: bytes,
        started: float,
    ) -> CourseResult:
        """A course written (or planned): its log lines, and what syncd now knows of it."""
        course = snapshot.course
        plan = result.plan
        if plan is not None and self.write:  # rows written: which were repaired, slugs moved
            recreated = self._ownership.changed_by_others(course, forget=True)
            self._course_log.repairs(course, result, plan, recreated=recreated)
            self._course_log.slugs(course, plan)
        if result.owned_by is not None:
            self._ownership.owned_by(course, result.owned_by)
        if not self.keep_plans:
            result.plan = None  # it holds every row's text: memory must not grow with the tree
        for issue in result.rejected:
            self._course_log.rejected(issue.path, issue.reason)
        self._course_log.result(result, started)
        complete = not result.rejected
        self._known[course] = Known(
            fingerprint if complete else None,
            False,
            stat_fingerprint if complete else None,
            source=self.store.source,  # written by this source now: a rename candidate
            slug=snapshot.project.slug,
        )
        return result

    def archive(self, course: str) -> int:
        """Archive a course whose folder is gone from this root (a positive observation):
        only one this source owns, or one without a source (``ArchiveGuard``)."""
        return self._archive.archive(course)
