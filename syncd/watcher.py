"""The watchdog side: map filesystem events to courses and hand them to a callback.

The handler runs on watchdog's thread, where an exception would silently kill the
observer: it only converts, filters and enqueues, and never raises."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from watchdog.events import (
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileOpenedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.polling import PollingObserverVFS

from syncd.errors import ConfigError
from syncd.parser import is_relevant

IGNORED_EVENTS = (FileOpenedEvent, FileClosedNoWriteEvent)


def course_of(root: str, path: str | bytes) -> tuple[str, str] | None:
    """(course, path inside the course) for a path under ``root``; None otherwise."""
    text = os.fsdecode(path)
    try:
        rel = PurePosixPath(os.path.relpath(text, root))
    except ValueError:
        return None
    parts = rel.parts
    if not parts or parts[0] in (".", "..") or parts[0].startswith("."):
        return None
    return parts[0], str(PurePosixPath(*parts[1:])) if len(parts) > 1 else ""


class CourseEventHandler(FileSystemEventHandler):
    """Routes each event to its course. With ``writing`` and ``closed`` (inotify),
    a file written to is being written until its writer closes it (a created file is not:
    watchdog also reports every file of a folder moved in as created, and nothing closes
    those); without them
    (polling, which sees no close), every event is a plain ``on_course``."""

    def __init__(
        self,
        root: Path,
        on_course: Callable[[str], None],
        log: Any,
        *,
        writing: Callable[[str, str], None] | None = None,
        closed: Callable[[str, str], None] | None = None,
    ) -> None:
        self.root = str(root.absolute())
        self.on_course = on_course
        self.file_writing = writing
        self.file_closed = closed
        self.log = log

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if isinstance(event, IGNORED_EVENTS):
                return
            if isinstance(event, FileModifiedEvent):  # written to (IN_MODIFY), not closed yet
                self._route(event.src_path, False, self.file_writing)
            elif isinstance(event, FileClosedEvent | FileDeletedEvent | FileMovedEvent):
                self._route(event.src_path, False, self.file_closed)  # no longer being written
            else:
                self._route(event.src_path, event.is_directory, None)
            dest = getattr(event, "dest_path", "")
            if dest:
                self._route(dest, event.is_directory, None)
        except Exception as exc:  # never let an exception kill the observer thread
            self.log.error("watch event dropped", error=repr(exc))

    def _route(
        self, path: str | bytes, is_directory: bool, file_state: Callable[[str, str], None] | None
    ) -> None:
        found = course_of(self.root, path)
        if found is None:
            return
        course, inner = found
        if inner == "" and not is_directory and not os.path.islink(path):
            return  # a loose file directly under the root is not a course (a link may be one)
        if inner == "" or is_directory or is_relevant(inner) or os.path.islink(path):
            if file_state is not None and inner:
                file_state(course, inner)
            else:
                self.on_course(course)  # a new link is named at once, never read


class LinkTargetHandler(FileSystemEventHandler):
    """Events under a folder reached through a followed symbolic link (--follow-symlinks).
    The kernel reports them on the target's own path, outside the root's watch, so each
    target gets a watch of its own that knows its course. Never raises."""

    def __init__(self, course: str, on_course: Callable[[str], None], log: Any) -> None:
        self.course = course
        self.on_course = on_course
        self.log = log

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            if not isinstance(event, IGNORED_EVENTS):
                self.on_course(self.course)
        except Exception as exc:  # never let an exception kill the observer thread
            self.log.error("watch event dropped", error=repr(exc))


class OverflowDetector(logging.Handler):
    """watchdog reports a kernel queue overflow only through its logger: events were lost,
    so a full reconcile is needed."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(level=logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if "overflow" in record.getMessage().lower():
            self.on_overflow()


def polling_observer() -> Any:
    """Stat polling that never follows a symbolic link (lstat): a link loop inside a course
    costs nothing, as under inotify."""
    return PollingObserverVFS(stat=os.lstat, listdir=os.scandir, polling_interval=1.0)


def start_observer(
    root: Path,
    handler: CourseEventHandler,
    *,
    polling: bool,
    observer_factory: Callable[[], Any] | None = None,
) -> Any:
    """Start watching ``root`` recursively (inotify, or stat polling for network and
    Docker Desktop mounts)."""
    if observer_factory is None:
        observer_factory = polling_observer if polling else Observer
    observer: Any = observer_factory()
    try:
        observer.schedule(handler, str(root), recursive=True)
        observer.start()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EMFILE):
            raise ConfigError(
                f"cannot watch {root}: the inotify watch limit is reached ({exc.strerror}). "
                "Raise fs.inotify.max_user_watches (sysctl -w fs.inotify.max_user_watches=524288) "
                "or run with --polling"
            ) from exc
        raise ConfigError(f"cannot watch {root}: {exc.strerror or exc}") from exc
    return observer
