"""One exception base for syncd, split by what the caller should do about it.

- ``TransientError``: the store is unavailable for now (connection lost, timeout,
  admin shutdown, read-only). Retry later; never lose the pending work.
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


class RootUnavailable(SyncdError):
    """The course root is missing, unreadable or suspiciously empty: nothing is archived,
    and the work is retried later (not a database error: no breaker, no retry loop)."""


class FatalError(SyncdError):
    """The database refuses us for good: credentials, privileges, schema."""


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
