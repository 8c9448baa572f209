"""Driver errors become syncd errors here, and nowhere else: by SQLSTATE (``classify``,
``translated``), libpq's words while connecting (a TLS set-up that cannot work, a rejected
password), and the migration runner's failures (``migration_step``). Code outside the
database modules (database.py, store.py and its helpers, migrate.py) never sees a psycopg
exception."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import psycopg_pool

from syncd.errors import (
    AuthenticationFailed,
    ConfigError,
    CourseBusy,
    DatabaseFull,
    FatalError,
    MigrationError,
    RejectedError,
    SyncdError,
    TransientError,
)

# SQLSTATE classes and codes, see https://www.postgresql.org/docs/current/errcodes-appendix.html
# The database's own trouble (every course waits: the breaker opens): connection, resources,
# operator intervention, system; a read-only server (failover).
TRANSIENT_CLASSES = ("08", "53", "57", "58")
TRANSIENT_CODES = ("25006",)
DISK_FULL = "53100"
# One course's trouble (the database answered; only that course waits, on its own back-off):
# serialization failure, deadlock, lock not available (lock_timeout), statement timeout.
COURSE_BUSY_CODES = ("40001", "40P01", "55P03", "57014")
FATAL_CLASSES = ("28", "3D", "3F", "42")  # auth, no database, no schema, privileges/undefined
FATAL_CODES_IN_57 = ("57P04",)  # database dropped
# A row's data refused: bad value, a constraint, a limit (e.g. too long for tsvector). Such an
# error is the row's, not the course's: the course is written again row by row without it.
ROW_DATA_CLASSES = ("22", "23", "54")
AUTH_MESSAGES = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "no pg_hba.conf entry",
)
FATAL_MESSAGES = (*AUTH_MESSAGES, "does not exist", "permission denied")
# libpq's words for a TLS set-up that cannot work, and what to change in DATABASE_URL. Each
# is said while connecting, before any password is sent, at once and alike at every attempt:
# waiting cannot help, so it is a configuration error (exit 2), not an outage (3). A TLS
# connection lost later ("SSL SYSCALL error", "SSL connection has been closed unexpectedly")
# is the network's trouble and stays transient.
TLS_PROBLEMS = (
    (
        "server does not support ssl",
        "the server offers no TLS, which sslmode demands: check that DATABASE_URL's host and"
        " port are the database's, or change sslmode",
    ),
    (
        "ssl connection is required",  # a server (Supavisor) that enforces TLS
        "the server takes TLS connections only: set sslmode=verify-full and sslrootcert in"
        " DATABASE_URL",
    ),
    (
        "certificate verify failed",
        "the server's certificate is not signed by the CA certificate that sslrootcert names:"
        " fix sslrootcert in DATABASE_URL (Supabase: the project's CA certificate, Database"
        " Settings, SSL Configuration)",
    ),
    (
        "root certificate file",  # missing, unreadable, or not a certificate
        "sslrootcert in DATABASE_URL must name a CA certificate file (PEM) this user can read",
    ),
    (
        "does not match host name",
        "the server's certificate is not for the host in DATABASE_URL: connect by a name it"
        " holds (Supabase: the host the dashboard shows)",
    ),
)


def classify(exc: BaseException, where: str = "database") -> SyncdError:
    """Translate a driver error into transient / course busy / fatal / rejected by
    SQLSTATE."""
    if isinstance(exc, SyncdError):
        return exc
    message = message_of(exc)
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return PoolExhausted(f"{where}: no connection available ({message})")
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        text = f"{where}: {message} (SQLSTATE {sqlstate})"
        if sqlstate[:2] == "28":
            return AuthenticationFailed(text)
        if sqlstate[:2] == "42" and _raised_in_a_function(exc):
            # a trigger's own bug (an undefined column, a table it may not write): this
            # course's refusal, not syncd's schema or privileges
            return RejectedError(where, f"{message} (SQLSTATE {sqlstate})", sqlstate)
        if sqlstate in FATAL_CODES_IN_57 or sqlstate[:2] in FATAL_CLASSES:
            return FatalError(text)
        if sqlstate in COURSE_BUSY_CODES:
            return CourseBusy(text, sqlstate)
        if sqlstate == DISK_FULL:
            return DatabaseFull(text)
        if sqlstate in TRANSIENT_CODES or sqlstate[:2] in TRANSIENT_CLASSES:
            return TransientError(text)
        # bad data, a constraint, a limit, or anything unforeseen: this course only
        return RejectedError(where, f"{message} (SQLSTATE {sqlstate})", sqlstate)
    if isinstance(exc, psycopg.OperationalError):
        lowered = message.lower()
        if lowered.startswith("connection is bad") or "invalid connection option" in lowered:
            # libpq refused the DSN itself (an option's value): no server was asked
            return ConfigError(f"DATABASE_URL is not valid: {message}")
        for marker, fix in TLS_PROBLEMS:
            if marker in lowered:
                return ConfigError(f"{where}: {message}: {fix}")
        if any(marker in lowered for marker in AUTH_MESSAGES):
            return AuthenticationFailed(f"{where}: {message}")
        if any(marker in lowered for marker in FATAL_MESSAGES):
            return FatalError(f"{where}: {message}")
        return TransientError(f"{where}: {message}")
    if isinstance(exc, psycopg.Error):
        return TransientError(f"{where}: {message}")
    if isinstance(exc, OSError | TimeoutError):
        return TransientError(f"{where}: {message}")
    raise exc


def _raised_in_a_function(exc: BaseException) -> bool:
    context = getattr(getattr(exc, "diag", None), "context", None) or ""
    return "function" in context


def keeps_connection(exc: BaseException) -> bool:
    """After this error, is the connection still good to use (the data was refused, a lock
    or a timeout cancelled the statement)? Else it is closed and the pool replaces it: a
    session stuck read-only (failover) or half-dead never comes back."""
    if isinstance(exc, RejectedError | CourseBusy):
        return True
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if not sqlstate:
        return False  # no answer from the server: a broken socket, a client-side error
    if sqlstate in COURSE_BUSY_CODES:
        return True
    lost = sqlstate[:2] in TRANSIENT_CLASSES or sqlstate in TRANSIENT_CODES
    return not lost  # a refusal (a trigger's P0001, a constraint) leaves it as good as before


class PoolExhausted(TransientError):
    """No pooled connection came in time: the pool could not connect, or every connection
    is busy. ``probe`` tells which."""


def message_of(exc: BaseException) -> str:
    """The error's text on one line (at most 500 characters)."""
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:500]


@contextmanager
def translated(where: str = "database") -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
        raise classify(exc, where) from exc


# A table that is not there (SQLSTATE 42P01): before the first migration, the ledger.
UndefinedTable = psycopg.errors.UndefinedTable


def migration_failure(what: str, exc: psycopg.Error) -> MigrationError:
    """A migration (or the ledger, or a rollback script) the database refused: its file
    named, with the server's message, SQLSTATE, detail and context."""
    diag = exc.diag
    message = diag.message_primary or str(exc).strip()
    parts = [f"{what} failed: {message}"]
    if diag.sqlstate:
        parts.append(f"(SQLSTATE {diag.sqlstate})")
    if diag.message_detail:
        parts.append(f"DETAIL: {diag.message_detail}")
    if diag.context:
        parts.append(f"CONTEXT: {diag.context.strip()}")
    return MigrationError(" ".join(parts))


@dataclass
class MigrationStep:
    """What the migration runner is doing: the name its ``MigrationError`` gives."""

    what: str


@contextmanager
def migration_step(what: str) -> Iterator[MigrationStep]:
    """A step of the migration runner: a driver error inside becomes a ``MigrationError``
    naming the step's ``what`` (which the block may change once it knows the file it runs)."""
    step = MigrationStep(what)
    try:
        yield step
    except psycopg.Error as exc:
        raise migration_failure(step.what, exc) from exc
