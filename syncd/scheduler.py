"""The one owner of concurrency: course jobs run on ``workers`` threads, and the jobs of one
course run one after another, never two at once.

Live events (the writer's due courses) and full reconciles (every course once) submit
their jobs here, so ``--workers`` is both the number of courses written at once and the
number of database connections. The executor is passed in so that tests can run jobs
inline."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class CourseScheduler:
    def __init__(self, workers: int, executor: Executor | None = None) -> None:
        self.workers = workers
        self._executor = executor or ThreadPoolExecutor(workers, thread_name_prefix="syncd-course")
        self._cond = threading.Condition()
        # course -> its jobs waiting for the running one to finish (present while one runs)
        self._waiting: dict[str, deque[tuple[Callable[[], Any], Future[Any]]]] = {}
        self._closed = False

    def submit(self, course: str, job: Callable[[], T]) -> Future[T]:
        """Run ``job`` once no other job of ``course`` runs, in submission order."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("scheduler is shut down")
            if course in self._waiting:
                self._waiting[course].append((job, future))
                return future
            self._waiting[course] = deque()
        self._start(course, job, future)
        return future

    def queued(self, course: str) -> int:
        """Jobs of ``course`` submitted and not started yet."""
        with self._cond:
            return len(self._waiting.get(course, ()))

    def busy(self) -> int:
        """Courses with a job running or waiting."""
        with self._cond:
            return len(self._waiting)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job runs or waits; False when ``timeout`` passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._waiting, timeout)

    def shutdown(self, wait: bool = True) -> None:
        """No new jobs; with ``wait``, the ones submitted finish first."""
        with self._cond:
            self._closed = True
        if wait:
            self.wait_idle()
        self._executor.shutdown(wait=wait)

    def _start(self, course: str, job: Callable[[], Any], future: Future[Any]) -> None:
        try:
            self._executor.submit(self._run, course, job, future)
        except RuntimeError as error:  # the executor is shut down: nothing more runs
            future.set_exception(error)
            self._next(course)

    def _run(self, course: str, job: Callable[[], Any], future: Future[Any]) -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(job())
            except BaseException as error:  # handed to whoever waits on the future
                future.set_exception(error)
        self._next(course)

    def _next(self, course: str) -> None:
        with self._cond:
            waiting = self._waiting[course]
            if not waiting:
                del self._waiting[course]
                self._cond.notify_all()
                return
            job, future = waiting.popleft()
        self._start(course, job, future)
