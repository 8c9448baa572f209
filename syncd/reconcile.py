"""Reconcile: make the database hold what the tree holds, one course at a time.

Shared by ``syncd --rescan`` (every course once) and the daemon (one course per debounced
batch of events). The database's own trouble (transient), fatal refusals and an unreadable
root propagate to the caller; anything that goes wrong in one course (a refusal, a lock wait,
a surprise) is that course's: named, and the pass goes on.

``Reconciler`` is the work on one course (or a few, in one job): read, parse, commit, and
what syncd then knows of it. Its collaborators each have one job: ``KnownCourses``
(known.py) what the database holds of each course, ``Ownership`` (ownership.py) whose course
it is, ``Renames`` (renames.py) a vanished folder's grace and its rename, ``ArchiveGuard``
(archiving.py) what may be archived, ``LinkTargets`` (link_targets.py) the folders followed
links reach, ``CourseLog`` (course_log.py) what the log says of a course, and ``TreePass``
(tree_pass.py) the whole-tree pass, which ``reconcile_all`` hands on to. It starts no
thread: ``reconcile_all`` runs on its caller's thread (the writer's, or the CLI's) and hands
its jobs to the scheduler's workers; course jobs run on those workers.

Shared state and its locks: the ``Reconciler`` holds none of its own (its fields are
settings, set before it is shared: ``keep_plans`` by the CLI before its pass). Each
collaborator that holds state written by one thread and read or written by another guards it
with its own one lock: ``KnownCourses``, ``Ownership``, ``Renames`` (which holds its lock
around the ``KnownCourses`` calls that must agree with its own state) and ``LinkTargets``.
The pass's own findings (``last_results``, the non-course folders and which of them were
said) are written only by the thread running ``reconcile_all``, so they need none
(``TreePass``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncd import layout, source_settings
from syncd import parser as course_parser
from syncd.archiving import ArchiveGuard
from syncd.bookkeeping import Known
from syncd.course import CourseSnapshot, FileIssue, ParseOptions
from syncd.course_failures import describe_failure, is_course_level
from syncd.course_log import CourseLog
from syncd.errors import ParseError
from syncd.fingerprint import fingerprint as content_fingerprint
from syncd.fingerprint import options_salt
from syncd.known import KnownCourses
from syncd.link_targets import LinkTargets
from syncd.ownership import Ownership
from syncd.renames import Renames
from syncd.scheduler import CourseScheduler
from syncd.storage import CourseStorage
from syncd.store import CourseResult
from syncd.tree import read_scanned, scan_course
from syncd.tree_pass import BATCH_COURSES, OnFailure, Progress, Summary, TreePass, course_folders

# A course read and parsed, to write: (snapshot, content fingerprint, stat fingerprint, the
# time its job began)
Prepared = tuple[CourseSnapshot, bytes, bytes, float]


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
    # Collaborators (each guards its own state; see the module's docstring)
    _known: KnownCourses = field(init=False)
    _links: LinkTargets = field(init=False)
    _ownership: Ownership = field(init=False)
    _renames: Renames = field(init=False)
    _archive: ArchiveGuard = field(init=False)
    _course_log: CourseLog = field(init=False)  # what the log says of a course; no state
    _pass: TreePass = field(init=False)  # the whole-tree pass (its caller's thread alone)

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
        self._pass = TreePass(
            self.root,
            self.store,
            self._known,
            ownership=self._ownership,
            renames=self._renames,
            archive=self._archive,
            sync_batch=self.sync_batch,
            settings=source_settings.as_record(
                self.options.default_creator_mind, self.max_file_bytes, self.follow_symlinks
            ),
            host=self.host,
            follow_symlinks=self.follow_symlinks,
            batch_courses=self.batch_courses,
            write=self.write,
            log=self.log,
            clock=self.clock,
        )

    # -- whole tree -------------------------------------------------------------------

    def reconcile_all(
        self,
        scheduler: CourseScheduler,
        progress: Progress | None = None,
        on_failure: OnFailure | None = None,
        after_course: Callable[[str], None] | None = None,
    ) -> Summary:
        """Every course once, a few courses (``batch_courses``) per job of ``scheduler``
        (``TreePass.run``). A course that fails on its own is in ``Summary.failed`` and told
        to ``on_failure`` (by default: logged); the pass goes on. ``after_course`` is told of
        each course done without failing."""
        return self._pass.run(
            scheduler,
            progress,
            on_failure or self.log_failure,
            after_course,
            keep_results=self.keep_plans,
        )

    @property
    def last_results(self) -> list[CourseResult]:
        """The last full reconcile's results, with ``keep_plans`` (the pass's thread alone)."""
        return self._pass.last_results

    def log_failure(self, course: str, error: BaseException) -> None:
        """A course failed on its own (``--rescan``: named; the daemon retries it)."""
        self._course_log.failure(course, error)

    def list_courses(self) -> list[str]:
        """The course folders, and the folders that are there but are not read (unreadable,
        linked): those are handed on too, so that their rows are kept and they are named,
        never archived."""
        return course_folders(self.root, self.follow_symlinks)[0]

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
