"""One exception base for syncd, split by what the caller should do about it.

- ``TransientError``: the database is unavailable for now (connection lost, server gone,
  admin shutdown, read-only, disk full). It opens the breaker for every course. Retry
  later; never lose the pending work.
- ``CourseBusy``: one course's transaction could not finish (a lock held by another
  session, a statement timeout, a deadlock): the database is up, so only that course
  waits, on its own back-off.
- ``FatalError``: retrying cannot help (bad password, missing privilege, schema not
  migrated, bad configuration). Stop loudly with a distinct exit code.
- ``RejectedError``: one record or file is bad. Log it, skip it, keep going.
- ``RootUnavailable``: the course tree is not there (unmounted, unreadable): archive
  nothing, say which ``--root``, try again later.
"""

from __future__ import annotations


class SyncdError(Exception):
    """Base of every error syncd raises on purpose."""


class ConfigError(SyncdError):
    """The settings cannot work (bad flag, bad env var, unreadable root)."""


class TransientError(SyncdError):
    """The database is unavailable for now; the work stays pending."""


class DatabaseFull(TransientError):
    """The database cannot write: its disk is full (SQLSTATE 53100)."""


class CourseBusy(SyncdError):
    """One course's transaction could not finish now (lock wait, statement timeout,
    deadlock, serialization failure): the database answered, so it is not an outage."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class RootUnavailable(SyncdError):
    """The course root is missing, unreadable or suspiciously empty: nothing is archived,
    and the work is retried later (not a database error: no breaker, no retry loop)."""


class FatalError(SyncdError):
    """The database refuses us for good: credentials, privileges, schema."""


class AuthenticationFailed(FatalError):
    """The database rejects syncd's credentials (a wrong or rotated password)."""


class MigrationError(FatalError):
    """A schema migration failed; the database is left as before that migration."""


class RejectedError(SyncdError):
    """One file or record cannot be synced; everything else carries on."""

    def __init__(self, path: str, reason: str, sqlstate: str | None = None) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.sqlstate = sqlstate  # when the database refused it


class ParseError(RejectedError):
    """A file's bytes cannot be turned into a record."""
