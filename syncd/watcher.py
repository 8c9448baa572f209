"""The watchdog side: map filesystem events to courses and hand them to a callback.

The handler runs on watchdog's thread, where an exception would silently kill the
observer: it only converts, filters and enqueues, and never raises.

Threads: ``start_observer`` starts a watchdog observer (its own thread and one emitter
thread per watch, named by watchdog); the caller owns it and stops and joins it (the
daemon's supervisor replaces it, the daemon's stop ends it)."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from watchdog.events import (
    FileClosedEvent,
    FileClosedNoWriteEvent,
    FileCreatedEvent,
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
from syncd.layout import is_relevant

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


# inotify's file events and what ``FileEvents`` hears of them
FILE_EVENTS: dict[type, str] = {
    FileOpenedEvent: "opened",
    FileModifiedEvent: "writing",
    FileCreatedEvent: "created",
    FileClosedEvent: "closed",
    FileClosedNoWriteEvent: "closed",
    FileDeletedEvent: "gone",
    FileMovedEvent: "gone",  # its source
}


class FileEvents(Protocol):
    """What a file's open, write and close events tell (inotify): ``Debouncer`` takes them."""

    def opened(self, course: str, path: str) -> None: ...
    def writing(self, course: str, path: str) -> None: ...
    def created(self, course: str, path: str) -> None: ...
    def closed(self, course: str, path: str, *, wrote: bool) -> None: ...
    def gone(self, course: str, path: str) -> None: ...


class CourseEventHandler(FileSystemEventHandler):
    """Routes each event to its course. With ``files`` (inotify), a relevant file's opens,
    writes, creation, closes and removal go there, so that a file being written holds its
    course until it is closed; without it (polling, which sees no opens or closes), every
    event is a plain ``on_course``. Opens and closes without writing (readers, syncd itself)
    never make a course due by themselves."""

    def __init__(
        self,
        root: Path,
        on_course: Callable[[str], None],
        log: Any,
        *,
        files: FileEvents | None = None,
    ) -> None:
        self.root = str(root.absolute())
        self.on_course = on_course
        self.files = files
        self.log = log

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            files = self.files
            if files is not None and not event.is_directory and self._file_event(event, files):
                return
            if isinstance(event, IGNORED_EVENTS):
                return
            for path in (event.src_path, getattr(event, "dest_path", "")):
                if path:
                    found = self._target(path, event.is_directory)
                    if found is not None:
                        self.on_course(found[0])
        except Exception as exc:  # never let an exception kill the observer thread
            self.log.error("watch event dropped", error=repr(exc))

    def _file_event(self, event: FileSystemEvent, files: FileEvents) -> bool:
        """Hand a file event to ``files``; False for the kinds it does not take."""
        kind = FILE_EVENTS.get(type(event))
        if kind is None:
            return False
        if kind == "writing" and not os.path.lexists(event.src_path):
            return True  # written after it was deleted: not this path's content
        found = self._target(event.src_path, False)
        if found is not None:
            course, inner = found
            if not inner:
                if kind != "opened" and not isinstance(event, FileClosedNoWriteEvent):
                    self.on_course(course)  # a link at the root, named at once
            elif kind == "closed":
                files.closed(course, inner, wrote=isinstance(event, FileClosedEvent))
            else:
                getattr(files, kind)(course, inner)
        dest = getattr(event, "dest_path", "")
        if dest:  # moved: the source is gone, the destination is a finished file
            moved_to = self._target(dest, False)
            if moved_to is not None:
                self.on_course(moved_to[0])
        return True

    def _target(self, path: str | bytes, is_directory: bool) -> tuple[str, str] | None:
        """(course, path inside it) of an event that concerns a course, else None."""
        found = course_of(self.root, path)
        if found is None:
            return None
        inner = found[1]
        if inner == "" and not is_directory and not os.path.islink(path):
            return None  # a loose file directly under the root is not a course (a link may be one)
        if inner == "" or is_directory or is_relevant(inner) or os.path.islink(path):
            return found
        return None


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


WATCH_LIMIT_ERRNOS = (errno.ENOSPC, errno.EMFILE)


class UnwatchedDetector(logging.Handler):
    """watchdog says that it could not watch a folder it found at runtime (a folder created
    or moved in once the inotify watch limit is reached) only through its logger, and goes
    on without it. Read from the record's arguments, not its wording: an ``OSError`` of the
    watch limit (in the arguments or the exception) and the path beside it. Runs on
    watchdog's thread: it only hands the path over, and never raises."""

    def __init__(self, on_unwatched: Callable[[str | bytes], None]) -> None:
        super().__init__(level=logging.WARNING)
        self.on_unwatched = on_unwatched

    def emit(self, record: logging.LogRecord) -> None:
        try:
            args = record.args if isinstance(record.args, tuple) else ()
            errors = [a for a in args if isinstance(a, OSError)]
            if record.exc_info and isinstance(record.exc_info[1], OSError):
                errors.append(record.exc_info[1])
            if not any(e.errno in WATCH_LIMIT_ERRNOS for e in errors):
                return
            path = next((a for a in args if isinstance(a, (str, bytes, os.PathLike))), None)
            if path is not None:
                self.on_unwatched(os.fspath(path))
        except Exception:  # never let an exception reach watchdog's thread
            self.handleError(record)


POLL_INTERVAL_S = 1.0  # --polling: how often the tree is stat'ed


def polling_observer() -> Any:
    """Stat polling that never follows a symbolic link (lstat): a link loop inside a course
    costs nothing, as under inotify."""
    return PollingObserverVFS(stat=os.lstat, listdir=os.scandir, polling_interval=POLL_INTERVAL_S)


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
