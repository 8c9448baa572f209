"""The one owner of concurrency: course jobs run on ``workers`` threads, and the jobs of one
course run one after another, never two at once.

Live events (the writer's due courses) and full reconciles (every course once, a few
courses per job) submit their jobs here, so ``--workers`` is both the number of jobs run at
once and the number of database connections. A job of several courses starts once no job
of any of them runs and every job submitted before it for one of them has finished. The
executor is passed in so that tests can run jobs inline.

Threads: the executor's (by default a ThreadPoolExecutor of ``workers`` threads named
``syncd-course_N``, started as jobs come), owned here and ended by ``shutdown``. One lock,
``_cond``, guards all of the scheduler's state: the jobs of each course, whether it is shut
down, and the courses with a job submitted by ``submit_unless_waiting`` that has not begun
to run."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(eq=False)
class _Job:
    courses: tuple[str, ...]
    run: Callable[[], Any]
    future: Future[Any] = field(default_factory=Future)
    started: bool = False
    waiting: bool = False  # submitted by ``submit_unless_waiting`` and not yet running


class CourseScheduler:
    def __init__(self, workers: int, executor: Executor | None = None) -> None:
        self.workers = workers
        self._executor = executor or ThreadPoolExecutor(workers, thread_name_prefix="syncd-course")
        self._cond = threading.Condition()
        # course -> its jobs not finished, in submission order (present while there is one):
        # the head runs, or waits for a course of its own that another job still holds
        self._jobs: dict[str, deque[_Job]] = {}
        self._closed = False
        self._waiting: set[str] = set()  # courses of a ``waiting`` job (one each at most)

    def submit(self, course: str, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` once no other job of ``course`` runs, in submission order."""
        return self.submit_group((course,), job)

    def submit_group(self, courses: Iterable[str], job: Callable[[], T]) -> Future[T]:
        """Run ``job`` (one job for all of ``courses``) once every job submitted before it
        for any of them has finished; meanwhile no other job of them runs."""
        entry = _Job(tuple(dict.fromkeys(courses)), job)
        self._submit(entry)
        future: Future[T] = entry.future
        return future

    def submit_unless_waiting(self, course: str, job: Callable[[], T]) -> Future[T] | None:
        """As ``submit``, unless a job of ``course`` submitted this way has not begun to run
        yet: that one reads the newest files anyway, so nothing is submitted (None)."""
        entry = _Job((course,), job, waiting=True)
        future: Future[T] = entry.future
        return future if self._submit(entry) else None

    def _submit(self, entry: _Job) -> bool:
        """Queue ``entry`` (started at once if it may run); False: left out, a ``waiting``
        job of its course being there already."""
        with self._cond:
            if entry.waiting and self._waiting.intersection(entry.courses):
                return False
            if self._closed:
                raise RuntimeError("scheduler is shut down")
            if entry.waiting:
                self._waiting.update(entry.courses)
            for course in entry.courses:
                self._jobs.setdefault(course, deque()).append(entry)
            ready = self._take_if_ready(entry)
        if ready:
            self._start(entry)
        return True

    def queued(self, course: str) -> int:
        """Jobs of ``course`` submitted and not started yet."""
        with self._cond:
            return sum(1 for job in self._jobs.get(course, ()) if not job.started)

    def busy(self) -> int:
        """Courses with a job running or waiting."""
        with self._cond:
            return len(self._jobs)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job runs or waits; False when ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs, timeout)

    def shutdown(self, wait: bool = True) -> None:
        """No new jobs; with ``wait``, the ones submitted finish first."""
        with self._cond:
            self._closed = True
        if wait:
            self.wait_idle()
        self._executor.shutdown(wait=wait)

    def _take_if_ready(self, job: _Job) -> bool:
        """Under the lock: mark ``job`` started if it heads the queue of each of its courses."""
        if job.started or any(self._jobs[c][0] is not job for c in job.courses):
            return False
        job.started = True
        return True

    def _start(self, job: _Job) -> None:
        try:
            self._executor.submit(self._run, job)
        except RuntimeError as error:  # the executor is shut down: nothing more runs
            self._running(job)
            job.future.set_exception(error)
            self._finished(job)

    def _running(self, job: _Job) -> None:
        """``job`` begins (or will never run): a new ``submit_unless_waiting`` of its course
        submits again, since this one may already have read its files."""
        if job.waiting:
            with self._cond:
                self._waiting.difference_update(job.courses)

    def _run(self, job: _Job) -> None:
        self._running(job)
        if job.future.set_running_or_notify_cancel():
            try:
                job.future.set_result(job.run())
            except BaseException as error:  # handed to whoever waits on the future
                job.future.set_exception(error)
        self._finished(job)

    def _finished(self, job: _Job) -> None:
        ready: list[_Job] = []
        with self._cond:
            for course in job.courses:
                jobs = self._jobs[course]
                jobs.popleft()  # the job heads the queue of each of its courses
                if jobs:
                    if self._take_if_ready(jobs[0]):
                        ready.append(jobs[0])
                else:
                    del self._jobs[course]
            if not self._jobs:
                self._cond.notify_all()
        for nxt in ready:
            self._start(nxt)
