"""One table of exit codes, used by every command (docs/exit-codes.md)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    DRIFT = 1  # not everything reached the database (verify: a drift; rescan: a failed course)
    UNHEALTHY = 1  # `syncd health`: the daemon is stalled or the database away too long
    CONFIG = 2  # bad flag or variable (a malformed DATABASE_URL too), inotify limit
    UNREACHABLE = 3  # the database cannot be reached
    FATAL_DB = 4  # the database refuses syncd (password, privilege, schema, retired source)
    ROOT_UNAVAILABLE = (
        5  # the course root is missing, unreadable, or empty while the database has courses
    )
    WATCHER_DIED = 6
    WRITER_DIED = 7
    INTERRUPTED = 130  # Ctrl-C
