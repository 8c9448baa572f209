"""Which files are being written, from inotify's open, modify and close events. Pure: the
times are passed in; the debouncer owns it (under its lock).

inotify says that a file was opened, written to, or closed (after writing or not), but not
by whom: so a file counts as being written while it has been written to (or created) and
is still open by anyone. A second program that opens and closes it meanwhile (``touch``, a
reader) leaves it held; the last close releases it. A write seen with no open seen (the
writer opened it before syncd watched) holds it until a close. A file held longer than
``hold_s`` after its last write is taken as finished (its close was lost: a watch queue
overflow, which also starts a full reconcile)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _File:
    opens: int = 0  # opens seen minus closes seen
    written: bool = False  # modified or created since it was last closed by everyone
    unseen_open: bool = False  # written while no open was seen
    last_write: float = 0.0


@dataclass
class OpenFiles:
    hold_s: float
    _files: dict[str, dict[str, _File]] = field(default_factory=dict)  # course -> path -> state

    def opened(self, course: str, path: str) -> None:
        self._file(course, path).opens += 1

    def written(self, course: str, path: str, now: float) -> None:
        state = self._file(course, path)
        state.written, state.last_write = True, now
        state.unseen_open = state.unseen_open or state.opens == 0

    def created(self, course: str, path: str, now: float) -> None:
        """Created (held once its creator's open is seen; a file of a folder moved in is
        reported as created too, and is never opened for writing)."""
        state = self._file(course, path)
        state.written, state.last_write = True, now

    def closed(self, course: str, path: str) -> bool:
        """A close, after writing or not. True when it released a file that was written."""
        state = self._files.get(course, {}).get(path)
        if state is None:
            return False
        state.opens = max(0, state.opens - 1)
        if state.opens > 0 and not state.unseen_open:
            return False  # someone else still has it open
        self._drop(course, path)
        return state.written

    def gone(self, course: str, path: str) -> None:
        """Deleted or moved away: whatever still writes to it, it is not this path's content."""
        self._drop(course, path)

    def held_until(self, course: str, now: float) -> float:
        """When the last file of ``course`` being written stops holding it (0: none does)."""
        until = 0.0
        for state in self._files.get(course, {}).values():
            if state.written and (state.opens > 0 or state.unseen_open):
                expires = state.last_write + self.hold_s
                if expires > now:
                    until = max(until, expires)
        return until

    def held_courses(self, now: float) -> int:
        return sum(1 for course in self._files if self.held_until(course, now) > now)

    def clear(self) -> None:
        """Events were lost: counts are unknown, so nothing is held."""
        self._files.clear()

    def _file(self, course: str, path: str) -> _File:
        return self._files.setdefault(course, {}).setdefault(path, _File())

    def _drop(self, course: str, path: str) -> None:
        files = self._files.get(course)
        if files is not None:
            files.pop(path, None)
            if not files:
                del self._files[course]
