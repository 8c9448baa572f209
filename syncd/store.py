"""The course SQL (named queries in sql/course.sql) and psycopg. Driver errors become syncd
errors here (`translated`); migrate.py, privileges.py and report.sql keep their own SQL."""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg
import psycopg_pool
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from syncd.config import redact_dsn
from syncd.course import CourseSnapshot, FileIssue, Project
from syncd.errors import (
    AuthenticationFailed,
    ConfigError,
    CourseBusy,
    DatabaseFull,
    FatalError,
    RejectedError,
    SyncdError,
    TransientError,
)
from syncd.plan import (
    ExistingRow,
    Plan,
    ProjectState,
    RowFields,
    RowWrite,
    SlugHolder,
    plan_course,
    project_differences,
    slug_candidates,
)
from syncd.sqlfiles import query

Conn = psycopg.Connection[Any]

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
    message = _message(exc)
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


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:500]


@contextmanager
def translated(where: str = "database") -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
        raise classify(exc, where) from exc


@dataclass(frozen=True)
class DbSettings:
    dsn: str
    connect_timeout_s: int = 5
    statement_timeout_ms: int = 30_000


def connect_kwargs(settings: DbSettings) -> dict[str, Any]:
    """What every connection syncd makes is opened with. ``prepare_threshold=None``: no
    server-side prepared statement, ever (a transaction pooler hands each transaction to
    whichever server connection is free, where psycopg's ``_pg3_0`` is another client's or
    missing: SQLSTATE 42P05 / 26000). ``autocommit``: no transaction is ever opened
    implicitly; syncd's are all ``conn.transaction()`` blocks (see ``SyncdConnection``)."""
    return {
        "connect_timeout": settings.connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "tcp_user_timeout": settings.connect_timeout_s * 2000,
        "application_name": "syncd",
        "prepare_threshold": None,
        "autocommit": True,
    }


def lock_timeout_ms(settings: DbSettings) -> int:
    """How long a statement waits for a lock another session holds: shorter than the
    statement timeout, so that a row locked in the app fails that course fast (SQLSTATE
    55P03, retried on its own back-off) instead of holding a worker for the whole timeout."""
    return max(1, min(settings.statement_timeout_ms // 3, 10_000))


def local_settings(settings: DbSettings) -> str:
    """The statement that opens each of syncd's transactions: its timeouts for that
    transaction only (``set_config(..., true)`` is ``SET LOCAL``), so that nothing outlives
    it on a server connection a pooler hands to another client next."""
    return (
        f"SELECT set_config('statement_timeout', '{int(settings.statement_timeout_ms)}', true),"
        f" set_config('lock_timeout', '{lock_timeout_ms(settings)}', true)"
    )


class SyncdConnection(psycopg.Connection[Any]):
    """A connection with no session state, so that any pooler may stand between syncd and
    PostgreSQL. Opened in autocommit (``connect_kwargs``): a statement outside a transaction
    block is its own transaction under the role's timeouts; syncd runs none but the pool's
    empty-query health check.

    ``transaction()`` (outermost) starts with syncd's timeouts, SET LOCAL. ``work()`` is the
    pipelined transaction of the course store, shaped for a transaction pooler: see there."""

    local_settings: str = ""

    @contextmanager
    def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> Iterator[psycopg.Transaction]:
        if self._pipeline is not None:
            raise psycopg.ProgrammingError("syncd pipelines only inside work()")
        outermost = self.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with super().transaction(savepoint_name, force_rollback) as tx:
            if outermost and self.local_settings:
                self.execute(self.local_settings)
            yield tx

    @contextmanager
    def work(self, *, read_only: bool = False) -> Iterator[None]:
        """One transaction, pipelined: BEGIN, syncd's timeouts, the block's statements and
        the COMMIT (ROLLBACK when ``read_only``) are sent ahead and end with one Sync; a
        query whose rows the block reads costs a round trip (a flush, not a Sync).

        Why not ``pipeline()`` around ``transaction()``: psycopg then syncs after BEGIN and
        again, empty, after the COMMIT. Here every Sync but the last is answered inside the
        transaction block, and nothing is in flight after the last (the one a transaction
        pooler sees the server idle on and gives it to another client). A pooler such as
        PgBouncer 1.18 drops a server's answer that arrives after it handed the server back,
        and the client waits for it for ever."""
        try:
            with self.pipeline():
                self.execute("BEGIN")
                if self.local_settings:
                    self.execute(self.local_settings)
                yield
                self.execute("ROLLBACK" if read_only else "COMMIT")
        except BaseException:
            status = self.pgconn.transaction_status
            if status in (_IN_TRANSACTION, _IN_ERROR) and not self.closed:
                # the block's own error is the one to tell; a connection that cannot roll
                # back is dropped by the pool (it is not idle)
                with suppress(psycopg.Error):
                    self.execute("ROLLBACK")
            raise


_IN_TRANSACTION = psycopg.pq.TransactionStatus.INTRANS
_IN_ERROR = psycopg.pq.TransactionStatus.INERROR


def _open(settings: DbSettings, **extra: Any) -> SyncdConnection:
    conn = SyncdConnection.connect(settings.dsn, **{**connect_kwargs(settings), **extra})
    conn.local_settings = local_settings(settings)
    return conn


def connect(settings: DbSettings, **extra: Any) -> SyncdConnection:
    """One connection (migrations, verify, preflight), with errors translated."""
    try:
        return _open(settings, **extra)
    except (psycopg.Error, OSError) as exc:
        raise connect_failure(exc, settings) from exc


def probe(settings: DbSettings) -> SyncdError | None:
    """Why a new connection fails now, or None when one succeeds. The pool reconnects in
    the background and says only "no connection available": this finds the cause (a
    rejected password, a server gone)."""
    try:
        with _open(settings):
            return None
    except (psycopg.Error, OSError) as exc:
        return connect_failure(exc, settings)


def connect_failure(exc: BaseException, settings: DbSettings) -> SyncdError:
    """Why a new connection failed, saying what to change. A DSN libpq refuses, a TLS
    set-up that cannot work (exit 2) and a rejected password (exit 4) fail at once, alike
    every time: no word of the wait, DATABASE_URL shown (its password hidden) with the
    setting to fix. Anything else: the server, and how long it was waited for."""
    error = classify(exc, f"connect to {server_of(settings)}")
    shown = f"DATABASE_URL={redact_dsn(settings.dsn)}"
    if isinstance(error, ConfigError):
        return ConfigError(f"{error} ({shown})")
    if isinstance(error, AuthenticationFailed):
        return AuthenticationFailed(
            f"{error}: check the user and the password in DATABASE_URL ({shown})"
        )
    if isinstance(error, TransientError):
        return classify(exc, where_to(settings))
    return error


def server_of(settings: DbSettings) -> str:
    """host:port of the DSN (no credentials)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(settings.dsn)
    except psycopg.Error:
        info = {}
    return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}"


def where_to(settings: DbSettings) -> str:
    """What an outage says: the server it tried (no credentials) and the flag that bounds
    the wait, so that the operator knows what to check or change."""
    return (
        f"connect to {server_of(settings)} (waited up to --connect-timeout"
        f" {settings.connect_timeout_s} s, SYNCD_CONNECT_TIMEOUT)"
    )


def make_pool(
    settings: DbSettings, *, workers: int = 1, check: Callable[[Conn], None] | None = None
) -> psycopg_pool.ConnectionPool[SyncdConnection]:
    """A pool whose connections are health-checked when handed out (``check``, by default
    psycopg_pool's own) and which keeps trying to reconnect through an outage."""

    begin = local_settings(settings)

    def configure(conn: SyncdConnection) -> None:
        conn.local_settings = begin  # no SQL: a pooled connection holds no session state

    return psycopg_pool.ConnectionPool(
        settings.dsn,
        connection_class=SyncdConnection,
        min_size=1,
        max_size=workers,  # one connection per scheduler worker (--workers)
        kwargs=connect_kwargs(settings),
        configure=configure,
        check=check or psycopg_pool.ConnectionPool.check_connection,
        timeout=settings.connect_timeout_s * 2,
        # give up a reconnect attempt quickly: the next checkout starts a fresh one, so the
        # pool is back within seconds of the database instead of after a long back-off
        reconnect_timeout=max(2.0, settings.connect_timeout_s * 2.0),
        open=False,
        name="syncd",
    )


@dataclass
class CourseResult:
    course: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    project_written: bool = False
    skipped: bool = False  # fingerprint unchanged: nothing parsed, nothing written
    transactions: int = 0
    rejected: list[FileIssue] = field(default_factory=list)
    plan: Plan | None = None
    project_id: uuid.UUID | None = None
    owned_by: str | None = None  # another source owns this course (or its project slug)
    retry_at: float | None = None  # nothing done yet: look at the course again then
    # the project's (and its audience's) fields that differed from the files and were written
    project_fields: tuple[str, ...] = ()
    project_repaired: bool = False  # ... and someone else had written them since syncd


class Known(NamedTuple):
    """What syncd last wrote of a course (syncd.courses)."""

    fingerprint: bytes | None  # of the relevant files' contents; None: not fully synced
    archived: bool  # by syncd, because its folder vanished
    stat_fingerprint: bytes | None  # of their (path, size, mtime, ctime, inode)
    source: str | None = None  # the source that owns it; None: synced before sources
    owner_retired: bool = False
    slug: str | None = None  # its project's slug


def conflict_issue(course: str, owner: str) -> FileIssue:
    return FileIssue(
        course,
        f"a course folder of this name (or slug) is synced by source {owner!r}, which keeps it:"
        " nothing is written from here (`syncd sources` hands a course over)",
        "conflict",
    )


def held_project_issue(course: str, slug: str, holder: str | None) -> FileIssue:
    return FileIssue(
        course,
        f"the project with slug {slug!r} belongs to another creator (mind {holder!r}) and"
        " syncd did not make it for this folder: nothing of the course is written (rename the"
        " course folder to give the course another slug; if that project is this course's,"
        " give the course that creator: brief `creator_mind:` or SYNCD_CREATOR_MIND)",
        "conflict",
    )


def held_audience_issue(course: str, slug: str, holder: str) -> FileIssue:
    return FileIssue(
        course,
        f"the audience profile {slug!r} belongs to another creator (mind {holder!r}): the"
        " course is synced without its audience (rename the course folder to give the course"
        " another slug, or have that profile renamed)",
        "conflict",
    )


class ProjectHeld(Exception):
    """The course's project slug is another creator's project, which syncd never takes."""

    def __init__(self, issue: FileIssue) -> None:
        super().__init__(issue.reason)
        self.issue = issue


class OwnedElsewhere(Exception):
    """The course folder's name is owned by another (live) source."""

    def __init__(self, owner: str) -> None:
        super().__init__(owner)
        self.owner = owner


class _Refusal(NamedTuple):
    path: str
    sqlstate: str
    reason: str


class _Reads(NamedTuple):
    """The cursors of a course's first round trip (see ``CourseStore._queue_reads``)."""

    owner: Any
    state: Any
    upsert: Any
    project: Any
    rows: Any
    held: Any  # who holds the brief's audience profile, if another creator does


class _SlugTaken(Exception):
    """A new row's slug is held by another project: plan again with a slug check."""


@dataclass(frozen=True)
class SourceSeen:
    retired: bool  # the source was retired: it writes nothing
    settings_before: dict[str, Any] | None  # what was recorded before this registration


class CourseStore:
    """Reads and writes courses, each course in one transaction under a per-course
    advisory lock (a full reconcile's few courses share one: ``sync_courses``).
    ``connection`` yields a connection (pool or single).

    A sync costs two round trips in pipeline mode: one that locks the course, upserts
    minds, audience and project and reads the course's rows; one that sends every write
    and the commit. Slugs are checked against other projects only when an insert trips
    the unique index (rare), in a second attempt. The other reads and writes here are one
    round trip each."""

    def __init__(
        self,
        connection: Callable[[], Any],
        clock: Callable[[], float] = time.monotonic,
        source: str | None = None,
    ):
        self._connection = connection
        self._clock = clock
        self.source = source  # None: no ownership (tools, benchmarks)

    @contextmanager
    def _reading(self, where: str) -> Iterator[_Sql]:
        """A read-only transaction, pipelined: BEGIN, syncd's timeouts, the queries and the
        ROLLBACK. Queries queued in the block and read after it cost one round trip in all;
        a read inside the block costs one more."""
        with translated(where), self._connection() as conn, conn.work(read_only=True):
            yield _Sql(conn)

    @contextmanager
    def _writing(self, where: str) -> Iterator[_Sql]:
        """A transaction, pipelined: what is only queued is sent with the COMMIT."""
        with translated(where), self._connection() as conn, conn.work():
            yield _Sql(conn)

    def fingerprints(self) -> dict[str, Known]:
        """course → what syncd last wrote of it, for every course syncd has written."""
        with self._reading("read fingerprints") as sql:
            rows = sql.queue("course_fingerprints")
        return _known(rows.fetchall())

    def pass_state(self) -> tuple[dict[str, Known], set[str]]:
        """What a full reconcile starts from, in one round trip: ``fingerprints``, and this
        source's live courses with a row someone else changed or deleted since syncd wrote
        it (a cheap index-only comparison of write marks, no content read)."""
        with self._reading("read fingerprints") as sql:
            known = sql.queue("course_fingerprints")
            changed = sql.queue("changed_courses", source=self.source)
        return _known(known.fetchall()), {row["course"] for row in changed.fetchall()}

    def touch_source(self, root: str, host: str, settings: dict[str, Any]) -> SourceSeen:
        """Record this source as seen now (root, host) with the settings it writes with."""
        with self._writing("record source") as sql:
            seen = sql.queue(
                "touch_source", name=self.source, root=root, host=host, settings=Jsonb(settings)
            )
        row = seen.fetchone()  # read after the COMMIT: one round trip
        if row is None:
            return SourceSeen(retired=False, settings_before=None)
        return SourceSeen(row["retired_at"] is not None, row["settings_before"])

    def source_settings(self) -> dict[str, Any] | None:
        """The settings this source's writer recorded (None: none yet)."""
        if not self.source:
            return None
        with self._reading("read source settings") as sql:
            cursor = sql.queue("source_settings", name=self.source)
        row = cursor.fetchone()  # read after the ROLLBACK: one round trip
        found = row["settings"] if row is not None else None
        return found if isinstance(found, dict) else None

    def sources(self) -> list[dict[str, Any]]:
        """name, root, host, last_seen, retired_at, courses (live) of every source."""
        with self._reading("read sources") as sql:
            cur = sql.queue("list_sources")
        rows: list[dict[str, Any]] = cur.fetchall()
        return rows

    def retire_source(self, name: str) -> list[str]:
        """Archive every live course of source ``name`` and retire it (it writes nothing any
        more); the courses archived."""
        with self._writing(f"retire source {name}") as sql:
            if sql.one("source_exists", name=name) is None:
                raise FatalError(f"no source named {name!r} (see `syncd sources`)")
            courses = [row["course"] for row in sql.all("source_courses", name=name)]
            for course in courses:
                sql.queue("lock_course", course=course)
                sql.all("archive_course", course=course)
            sql.queue("retire_source", name=name)
        return courses

    def hand_over(self, name: str, to: str) -> list[str]:
        """Give every course of source ``name`` to source ``to`` and retire ``name``."""
        with self._writing(f"hand over {name}") as sql:
            for source in (name, to):
                if sql.one("source_exists", name=source) is None:
                    raise FatalError(f"no source named {source!r} (see `syncd sources`)")
            courses = [row["course"] for row in sql.all("hand_over", name=name, to=to)]
            sql.queue("retire_source", name=name)
        return courses

    def rename_course(self, old: str, new: str, slug: str) -> int:
        """Course folder ``old`` is now ``new`` (same files): move its project (slug
        ``slug``), rows and bookkeeping to the new name, keeping every id."""
        with self._writing(f"rename course {old}") as sql:
            for name in sorted((old, new)):  # one lock order
                sql.queue("lock_course", course=name)
            moved = sql.all("rename_course", old=old, new=new, slug=slug)
        return len(moved)

    def save_stat_fingerprints(self, items: list[tuple[str, bytes, bytes]]) -> None:
        """(course, content fingerprint, stat fingerprint) of courses found unchanged."""
        if not items:
            return
        with self._writing("save fingerprints") as sql:
            sql.queue(
                "save_stat_fingerprints",
                courses=[c for c, _, _ in items],
                fingerprints=[f for _, f, _ in items],
                stats=[s for _, _, s in items],
            )

    def save_findings(
        self,
        *,
        touched: list[tuple[str, bytes, bytes]],
        adopted: list[str] | None,
        conflicts: dict[str, str] | None,
        skipped_folders: dict[str, int],
    ) -> None:
        """What a full reconcile found, in one transaction (one round trip): the stats of
        courses found ``touched`` but unchanged (as ``save_stat_fingerprints``), the courses
        this source ``adopted`` (found under its root: made its own where no live source
        owns them), the course folders it found owned elsewhere (``conflicts``: course ->
        owning source, replacing its previous list) and the non-course folders with their
        file counts. ``adopted`` and ``conflicts`` are None for no source."""
        with self._writing("save the reconcile's findings") as sql:
            if touched:
                sql.queue(
                    "save_stat_fingerprints",
                    courses=[c for c, _, _ in touched],
                    fingerprints=[f for _, f, _ in touched],
                    stats=[s for _, _, s in touched],
                )
            if adopted is not None:
                sql.queue("adopt_courses", source=self.source, courses=adopted)
            if conflicts is not None:
                sql.queue(
                    "save_conflicts",
                    source=self.source,
                    courses=list(conflicts),
                    owners=list(conflicts.values()),
                )
            sql.queue(
                "save_skipped_folders",
                folders=list(skipped_folders),
                files=list(skipped_folders.values()),
            )

    def sync_course(
        self, snapshot: CourseSnapshot, stat_fingerprint: bytes | None = None
    ) -> CourseResult:
        """Write one course; ``stat_fingerprint`` (of the files it was read from) lets the
        next rescan skip reading them if they are untouched."""
        try:
            try:
                return self._sync(snapshot, stat_fingerprint, check_slugs=False)
            except _SlugTaken:
                return self._sync(snapshot, stat_fingerprint, check_slugs=True)
        except OwnedElsewhere as owned:
            return CourseResult(
                snapshot.course,
                rejected=[conflict_issue(snapshot.course, owned.owner)],
                owned_by=owned.owner,
            )
        except ProjectHeld as held:
            return CourseResult(snapshot.course, rejected=[*snapshot.rejected, held.issue])
        except RejectedError as error:
            if (error.sqlstate or "")[:2] not in ROW_DATA_CLASSES:
                raise
            # One row refused: find it, write the rest (rare: the fast path stays fast).
            return self._sync(snapshot, None, check_slugs=True, row_by_row=True)

    def sync_courses(
        self, courses: list[tuple[CourseSnapshot, bytes | None]]
    ) -> list[CourseResult]:
        """Write several courses (snapshot, stat fingerprint) in one transaction, each as
        ``sync_course`` writes it: a full reconcile's few courses per job, so that a far
        link costs two round trips for them all instead of two each. The first round trip
        takes every course's lock (in name order), inserts the minds and reads each course;
        the second writes them all (the tags they name first, in one sorted statement, so
        that concurrent transactions lock in one order) and commits.

        Anything that is one course's trouble (a row refused, a slug taken, a course owned
        by another source, a lock wait) rolls the whole back and raises: the caller then
        syncs each course alone, where it is handled as usual."""
        results = [CourseResult(s.course, rejected=list(s.rejected)) for s, _ in courses]
        names = ", ".join(s.course for s, _ in courses)
        with translated(f"courses {names}"), self._connection() as conn, conn.work():
            sql = _Sql(conn)
            for course in sorted(s.course for s, _ in courses):
                sql.queue("lock_course", course=course)
            _queue_minds(sql, [s for s, _ in courses])
            reads = [self._queue_reads(sql, s, locked=True, minds=False) for s, _ in courses]
            plans = [
                self._planned(sql, s, r, result, check_slugs=False)
                for (s, _), r, result in zip(courses, reads, results, strict=True)
            ]
            _queue_tags(sql, [p.inserts + p.updates + p.relinks for _, p in plans])
            for (snapshot, stat), (project_id, plan), result in zip(
                courses, plans, results, strict=True
            ):
                self._queue_writes(sql, snapshot, result, project_id, plan, tags_done=True)
                self._queue_course(sql, snapshot, result, stat)
        for result in results:
            result.transactions = 1  # the batch's one transaction
        return results

    def _queue_course(
        self,
        sql: _Sql,
        snapshot: CourseSnapshot,
        result: CourseResult,
        stat_fingerprint: bytes | None,
    ) -> None:
        """syncd.courses: what was written of the course (its fingerprints only when it was
        written whole)."""
        complete = not result.rejected
        sql.queue(
            "upsert_course",
            course=snapshot.course,
            source=self.source,
            project_id=result.project_id,
            fingerprint=snapshot.fingerprint if complete else None,
            stat_fingerprint=stat_fingerprint if complete else None,
        )

    def _sync(
        self,
        snapshot: CourseSnapshot,
        stat_fingerprint: bytes | None,
        *,
        check_slugs: bool,
        row_by_row: bool = False,
    ) -> CourseResult:
        """One transaction: pipelined, or (``row_by_row``) each row in a savepoint, so that
        a row the database refuses is rejected alone and the others are written."""
        result = CourseResult(snapshot.course, rejected=list(snapshot.rejected))
        with translated(f"course {snapshot.course}"), self._connection() as conn:
            try:
                with conn.transaction() if row_by_row else conn.work():
                    if row_by_row:
                        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # refusals per row
                    sql = _Sql(conn)
                    self._write(
                        sql, snapshot, result, check_slugs=check_slugs, row_by_row=row_by_row
                    )
                    self._queue_course(sql, snapshot, result, stat_fingerprint)
            except psycopg.errors.UniqueViolation as exc:
                if check_slugs:
                    raise
                raise _SlugTaken from exc
            result.transactions = 1
        return result

    def dry_run(self, snapshot: CourseSnapshot) -> CourseResult:
        """The plan, computed from reads only."""
        result = CourseResult(snapshot.course, rejected=list(snapshot.rejected))
        plan, _ = self.plan_from_reads(snapshot)
        self._count(result, plan)
        return result

    def archive_course(self, course: str) -> tuple[bool, int]:
        """Archive the project of a vanished course folder; soft-delete its rows. Returns
        (a project was archived, rows soft-deleted)."""
        with self._writing(f"course {course}") as sql:
            sql.queue("lock_course", course=course)
            row = sql.one("archive_course", course=course)
        return row is not None and row["archived"] is not None, row["deleted"] if row else 0

    def plan_from_reads(
        self, snapshot: CourseSnapshot, *, with_fields: bool = False
    ) -> tuple[Plan, tuple[str, ...]]:
        """The plan a sync would make now, from reads only (dry run, verify); with
        ``with_fields``, every row's syncd-owned fields are read and compared (so that only
        real differences are updates), and so are the project's: the project fields a sync
        would write (empty for a course never synced, or whose brief is rejected)."""
        p = snapshot.project
        with self._reading(f"course {snapshot.course}") as sql:
            project = self._queue_project_minds(sql, snapshot).fetchone()
            if project is not None and project["held"]:
                holder = project["holder"]
                return Plan(rejected=[held_project_issue(snapshot.course, p.slug, holder)]), ()
            held = self._queue_audience_held(sql, snapshot)
            state = None
            if with_fields and "project" not in snapshot.protected:
                state = _project_state(self._queue_project_state(sql, snapshot).fetchone())
            minds = _planned_minds(sql, snapshot, project)
            rows = self._queue_existing(sql, snapshot, with_fields=with_fields).fetchall()
            project_id = project["id"] if project else None
            plan = self._plan(sql, snapshot, rows, project_id, minds, check_slugs=True)
            wanted, issue = self._held_audience(snapshot, held)
        if issue is not None:
            plan.rejected.append(issue)
        return plan, project_differences(wanted, state) if state is not None else ()

    def refused_files(self) -> dict[str, str]:
        """file_path -> the database's reason, for every file whose row it refused."""
        with self._reading("read refused files") as sql:
            rows = sql.queue("refused_files")
        return {r["file_path"]: r["reason"] for r in rows.fetchall()}

    def file_paths(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, str | None]:
        with self._reading("read file paths") as sql:
            rows = sql.queue("file_paths", ids=list(ids))
        return {r["id"]: r["file_path"] for r in rows.fetchall()}

    # -- the transaction ------------------------------------------------------------

    def _write(
        self,
        sql: _Sql,
        snapshot: CourseSnapshot,
        result: CourseResult,
        *,
        check_slugs: bool,
        row_by_row: bool = False,
    ) -> None:
        reads = self._queue_reads(sql, snapshot)
        project_id, plan = self._planned(sql, snapshot, reads, result, check_slugs=check_slugs)
        self._queue_writes(sql, snapshot, result, project_id, plan, row_by_row=row_by_row)

    def _queue_reads(
        self, sql: _Sql, snapshot: CourseSnapshot, *, locked: bool = False, minds: bool = True
    ) -> _Reads:
        """The first round trip of a course's sync, queued: its lock (unless ``locked``
        already), the minds it names (unless inserted already), the project's state and
        upsert, and the course's rows. Nothing is fetched here."""
        p = snapshot.project
        if not locked:
            sql.queue("lock_course", course=snapshot.course)
        owner = (
            sql.queue("course_owner", course=snapshot.course, slug=p.slug) if self.source else None
        )
        if minds:
            _queue_minds(sql, [snapshot])
        upsert = state = held = None
        if "project" not in snapshot.protected:
            held = self._queue_audience_held(sql, snapshot)
            state = self._queue_project_state(sql, snapshot)
            upsert = self._queue_project(sql, snapshot)
        project = self._queue_project_minds(sql, snapshot)
        rows = self._queue_existing(sql, snapshot, with_fields=False)
        return _Reads(owner, state, upsert, project, rows, held)

    def _planned(
        self,
        sql: _Sql,
        snapshot: CourseSnapshot,
        reads: _Reads,
        result: CourseResult,
        *,
        check_slugs: bool,
    ) -> tuple[uuid.UUID, Plan]:
        """The course's project id and plan, from what its first round trip read (the first
        fetch ends that round trip)."""
        p = snapshot.project
        owner, state, upsert, project, rows, held = reads
        found = project.fetchone()  # the first round trip ends here
        if owner is not None:
            for row in owner.fetchall():
                if row["source"] not in (None, self.source) and not row["owner_retired"]:
                    raise OwnedElsewhere(row["source"])  # rolls back whatever was queued
        if found is None:  # a protected (rejected) brief of a course never synced before
            upsert = self._queue_project(sql, snapshot)
            found = self._queue_project_minds(sql, snapshot).fetchone()
            rows = self._queue_existing(sql, snapshot, with_fields=False)
        if found["held"]:  # another creator's: nothing was written to it; roll back the rest
            raise ProjectHeld(held_project_issue(snapshot.course, p.slug, found["holder"]))
        wanted, issue = self._held_audience(snapshot, held)
        if issue is not None:
            result.rejected.append(issue)
        result.project_written = upsert is not None and upsert.fetchone() is not None
        before = _project_state(state.fetchone()) if state is not None else None
        if before is not None:  # an existing project: what differs is written now
            result.project_fields = project_differences(wanted, before)
            result.project_repaired = before.changed and bool(result.project_fields)
        project_id = found["id"]
        mind_ids = (found["creator_mind_id"], found["persona_mind_id"])
        plan = self._plan(
            sql, snapshot, rows.fetchall(), project_id, mind_ids, check_slugs=check_slugs
        )
        return project_id, plan

    def _queue_writes(
        self,
        sql: _Sql,
        snapshot: CourseSnapshot,
        result: CourseResult,
        project_id: uuid.UUID,
        plan: Plan,
        *,
        row_by_row: bool = False,
        tags_done: bool = False,
    ) -> None:
        """Every write of the plan, queued (``row_by_row``: the rows first, each in a
        savepoint of its own); ``tags_done``: the tags it names are inserted already."""
        if plan.reclaims:  # before any insert takes the slugs back
            sql.queue(
                "reclaim_slugs",
                course=snapshot.course,
                ids=[r.holder for r in plan.reclaims],
                slugs=[r.slug for r in plan.reclaims],
                paths=[r.write.record.file_path for r in plan.reclaims],
            )
        refused = (
            self._write_rows_alone(sql, snapshot.course, project_id, plan) if row_by_row else []
        )
        self._apply(sql, project_id, plan, rows_done=row_by_row, tags_done=tags_done)
        sql.queue(
            "record_refusals",
            project_id=project_id,
            paths=[r.path for r in refused],
            sqlstates=[r.sqlstate for r in refused],
            reasons=[r.reason for r in refused],
        )
        self._count(result, plan)
        result.rejected.extend(FileIssue(r.path, r.reason, "refused") for r in refused)
        result.project_id = project_id

    def _write_rows_alone(
        self, sql: _Sql, course: str, project_id: uuid.UUID, plan: Plan
    ) -> list[_Refusal]:
        """Write each insert and update of ``plan`` in a savepoint of its own (parents
        first, as the plan lists them), and take the ones the database refuses out of the
        plan: they keep their old rows, and so do the rows under them."""
        refused: list[_Refusal] = []
        refused_ids: dict[uuid.UUID, str] = {}  # row id -> the SQLSTATE that kept it out
        for writes in (plan.inserts, plan.updates):
            kept: list[RowWrite] = []
            for write in writes:
                path = write.record.file_path or f"{course}:{write.record.key}"
                if write.parent_id in refused_ids:  # its parent is not written: nor is it
                    state = refused_ids[write.parent_id]
                    refused_ids[write.id] = state
                    if write.record.file_path:  # a file is named; a module row has none
                        reason = "not written: the row it hangs under was refused by the database"
                        refused.append(_Refusal(path, state, f"{reason} (SQLSTATE {state})"))
                    continue
                alone = Plan(
                    inserts=[write] if writes is plan.inserts else [],
                    updates=[write] if writes is plan.updates else [],
                )
                try:
                    with sql.conn.transaction():
                        self._apply(sql, project_id, alone, rows_only=True)
                except psycopg.Error as exc:
                    state = getattr(exc, "sqlstate", None) or ""
                    if state[:2] not in ROW_DATA_CLASSES:
                        raise
                    refused_ids[write.id] = state
                    reason = f"refused by the database: {_message(exc)} (SQLSTATE {state})"
                    refused.append(_Refusal(path, state, reason))
                    continue
                kept.append(write)
            writes[:] = kept
        return refused

    def _queue_project(self, sql: _Sql, snapshot: CourseSnapshot) -> Any:
        p, a = snapshot.project, snapshot.project.audience
        creator = p.creator_mind.slug if p.creator_mind else None
        if a is not None:
            sql.queue(
                "upsert_audience",
                slug=a.slug,
                name=a.name,
                description=a.description,
                technical_level=a.technical_level,
                creator=creator,
            )
        return sql.queue(
            "upsert_project",
            slug=p.slug,
            name=p.name,
            description=p.description,
            project_type=p.project_type,
            metadata=Jsonb(p.metadata),
            course=snapshot.course,
            creator=creator,
            persona=p.persona_mind.slug if p.persona_mind else None,
            audience=a.slug if a else None,
        )

    def _queue_project_minds(self, sql: _Sql, snapshot: CourseSnapshot) -> Any:
        creator = snapshot.project.creator_mind
        return sql.queue(
            "project_minds",
            slug=snapshot.project.slug,
            course=snapshot.course,
            creator=creator.slug if creator else None,
        )

    def _queue_audience_held(self, sql: _Sql, snapshot: CourseSnapshot) -> Any:
        """Who holds the brief's audience profile slug, if another creator does."""
        p = snapshot.project
        if p.audience is None or "project" in snapshot.protected:
            return None
        return sql.queue(
            "audience_held",
            audience=p.audience.slug,
            creator=p.creator_mind.slug if p.creator_mind else None,
        )

    @staticmethod
    def _held_audience(snapshot: CourseSnapshot, held: Any) -> tuple[Project, FileIssue | None]:
        """The project as a sync writes it (without the audience when another creator holds
        its profile), and the issue that names it."""
        p = snapshot.project
        row = held.fetchone() if held is not None else None
        if row is None or p.audience is None:
            return p, None
        issue = held_audience_issue(snapshot.course, p.audience.slug, row["owner"])
        return dataclasses.replace(p, audience=None), issue

    def _queue_project_state(self, sql: _Sql, snapshot: CourseSnapshot) -> Any:
        audience = snapshot.project.audience
        return sql.queue(
            "project_state",
            slug=snapshot.project.slug,
            course=snapshot.course,
            audience=audience.slug if audience else None,
        )

    def _queue_existing(self, sql: _Sql, snapshot: CourseSnapshot, *, with_fields: bool) -> Any:
        return sql.queue(
            "existing_rows",
            with_fields=with_fields,
            slug=snapshot.project.slug,
            legacy_slugs=[c.legacy_slug for c in snapshot.contents if c.legacy_slug],
        )

    def _plan(
        self,
        sql: _Sql,
        snapshot: CourseSnapshot,
        rows: list[Any],
        project_id: uuid.UUID | None,
        minds: tuple[uuid.UUID | None, uuid.UUID | None],
        *,
        check_slugs: bool,
    ) -> Plan:
        """The plan for this course; ``minds`` = (creator, persona) ids of the project."""
        existing = [
            ExistingRow(
                id=r["id"],
                slug=r["slug"],
                file_path=r["file_path"],
                content_type=r["content_type"],
                sequence_order=r["sequence_order"],
                parent_id=r["parent_id"],
                deleted=r["deleted"],
                row_key=r["row_key"],
                row_hash=_bytes(r["row_hash"]),
                fm_status=r["fm_status"],
                changed=bool(r["changed"]),
                source_hash=_bytes(r["source_hash"]),
                fields=_row_fields(r) if r["has_fields"] else None,
                tags=frozenset(r["tags"]),
                minds=frozenset(_mind_link(text) for text in r["minds"]),
            )
            for r in rows
        ]
        creator, persona = minds
        plan = plan_course(snapshot, existing, creator_mind_id=creator, persona_mind_id=persona)
        if check_slugs and plan.inserts:
            wanted = {
                slug
                for w in plan.inserts
                for slug in slug_candidates(w.record, snapshot.project.slug, project_id)
            }
            holders = {
                r["slug"]: SlugHolder(r["id"], r["syncd"])
                for r in sql.all("slug_holders", slugs=sorted(wanted))
            }
            if holders:
                plan = plan_course(
                    snapshot,
                    existing,
                    creator_mind_id=creator,
                    persona_mind_id=persona,
                    slug_holders=holders,
                    project_id=project_id,
                )
        return plan

    def _apply(
        self,
        sql: _Sql,
        project_id: uuid.UUID,
        plan: Plan,
        *,
        rows_only: bool = False,
        rows_done: bool = False,
        tags_done: bool = False,
    ) -> None:
        """Queue every write of the plan (the pipeline sends them with the commit).
        ``rows_only``: just the inserts and updates of contents rows; ``rows_done``: all but
        those (already written, one by one); ``tags_done``: its tags are inserted already."""
        if plan.inserts and not rows_done:
            ins = plan.inserts
            sql.queue(
                "insert_contents",
                project_id=project_id,
                ids=[w.id for w in ins],
                types=[w.record.content_type for w in ins],
                parents=[w.parent_id for w in ins],
                orders=[w.record.sequence_order for w in ins],
                slugs=[w.slug for w in ins],
                titles=[w.record.title for w in ins],
                contents=[w.record.content for w in ins],
                metadata=[Jsonb(w.record.metadata) for w in ins],
                fidelity=[w.record.fidelity_score for w in ins],
                statuses=[w.status for w in ins],
                paths=[w.record.file_path for w in ins],
            )
        if plan.updates and not rows_done:
            sql.many(
                "update_content",
                [
                    {
                        "id": w.id,
                        "project_id": project_id,
                        "content_type": w.record.content_type,
                        "parent_id": w.parent_id,
                        "sequence_order": w.record.sequence_order,
                        "title": w.record.title,
                        "content": w.record.content,
                        "metadata": Jsonb(w.record.metadata),
                        "fidelity_score": w.record.fidelity_score,
                        "status": w.status,
                        "file_path": w.record.file_path,
                    }
                    for w in plan.updates
                ],
            )
        if rows_only:
            return
        if plan.deletes:
            sql.queue("soft_delete", ids=plan.deletes)
        linked = plan.inserts + plan.updates + plan.relinks
        if linked:
            self._junctions(sql, linked, pruned=plan.updates + plan.relinks, tags_done=tags_done)
        written = linked + plan.remarks  # remarks: syncd.rows only
        if not written:
            return
        ids = [w.id for w in written]
        keys = [w.record.key for w in written]
        sql.queue("release_row_keys", project_id=project_id, keys=keys, ids=ids)
        sql.queue(
            "upsert_rows",
            ids=ids,
            project_id=project_id,
            keys=keys,
            hashes=[w.row_hash for w in written],
            source_hashes=[w.record.source_hash for w in written],
            fm_statuses=[w.record.status or "" for w in written],  # "": none in the file
        )

    def _junctions(
        self, sql: _Sql, written: list[RowWrite], *, pruned: list[RowWrite], tags_done: bool
    ) -> None:
        """The tag and mind links of ``written`` rows; those of ``pruned`` rows that the
        files do not name are deleted first (a new row has none)."""
        ids = [w.id for w in pruned]
        tag_pairs = [(w.id, t) for w in written for t in w.tags]
        mind_rows = [(w.id, m, role) for w in written for m, role in w.minds]
        if not tags_done:
            _queue_tags(sql, [written])
        if ids:
            sql.queue(
                "prune_content_tags",
                ids=ids,
                content_ids=[c for c, _ in tag_pairs],
                names=[t for _, t in tag_pairs],
            )
            sql.queue(
                "prune_content_minds",
                ids=ids,
                content_ids=[c for c, _, _ in mind_rows],
                mind_ids=[m for _, m, _ in mind_rows],
            )
        if tag_pairs:
            sql.queue(
                "insert_content_tags",
                content_ids=[c for c, _ in tag_pairs],
                names=[t for _, t in tag_pairs],
            )
        if mind_rows:
            sql.queue(
                "insert_content_minds",
                content_ids=[c for c, _, _ in mind_rows],
                mind_ids=[m for _, m, _ in mind_rows],
                roles=[r for _, _, r in mind_rows],
            )

    @staticmethod
    def _count(result: CourseResult, plan: Plan) -> None:
        result.plan = plan
        result.inserted, result.updated = len(plan.inserts), len(plan.updates) + len(plan.relinks)
        result.deleted, result.unchanged = len(plan.deletes), plan.unchanged
        result.rejected.extend(plan.rejected)


def _known(rows: list[Any]) -> dict[str, Known]:
    return {
        r["course"]: Known(
            fingerprint=_bytes(r["fingerprint"]),
            archived=r["archived"],
            stat_fingerprint=_bytes(r["stat_fingerprint"]),
            source=r["source"],
            owner_retired=r["owner_retired"],
            slug=r["slug"],
        )
        for r in rows
    }


def _bytes(value: Any) -> bytes | None:
    return bytes(value) if value else None


def _row_fields(row: Any) -> RowFields:
    return RowFields(
        title=row["title"],
        content_md5=row["content_md5"],
        metadata=row["metadata"],
        fidelity_score=row["fidelity_score"],
        status=row["status"],
        in_project=row["in_project"],
    )


def _mind_link(text: str) -> tuple[uuid.UUID, str]:
    """A ``content_minds`` link as existing_rows reads it: "<mind id> <role>"."""
    mind, _, role = text.partition(" ")
    return uuid.UUID(mind), role


def _project_state(row: Any) -> ProjectState | None:
    if row is None:
        return None
    return ProjectState(
        name=row["name"],
        description=row["description"],
        project_type=row["project_type"],
        metadata=row["metadata"],
        creator=row["creator"],
        persona=row["persona"],
        audience=row["audience"],
        audience_name=row["audience_name"],
        audience_description=row["audience_description"],
        audience_technical_level=row["audience_technical_level"],
        changed=bool(row["changed"]),
    )


def _queue_minds(sql: _Sql, snapshots: list[CourseSnapshot]) -> None:
    """Insert the minds these courses name (sorted: one lock order for every transaction)."""
    named = {
        m.slug: m for s in snapshots for m in (s.project.creator_mind, s.project.persona_mind) if m
    }
    minds = [named[slug] for slug in sorted(named)]
    if minds:
        sql.queue(
            "insert_minds", slugs=[m.slug for m in minds], names=[m.display_name for m in minds]
        )


def _queue_tags(sql: _Sql, written: list[list[RowWrite]]) -> None:
    """Insert the tags these rows name (sorted: one lock order for every transaction)."""
    names = sorted({t for rows in written for w in rows for t in w.tags})
    if names:
        sql.queue("insert_tags", names=names)


def _planned_minds(
    sql: _Sql, snapshot: CourseSnapshot, project: Any
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """(creator, persona) ids a sync would give the course's rows, from reads only."""
    if project is not None and "project" in snapshot.protected:
        return project["creator_mind_id"], project["persona_mind_id"]
    p = snapshot.project
    slugs = [m.slug for m in (p.creator_mind, p.persona_mind) if m]
    ids = {r["slug"]: r["id"] for r in sql.all("mind_ids", slugs=slugs)} if slugs else {}
    creator = ids.get(p.creator_mind.slug) if p.creator_mind else None
    persona = ids.get(p.persona_mind.slug) if p.persona_mind else None
    return creator, persona


class _Sql:
    """Named queries from course.sql on one connection; rows are read by column name."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def queue(self, name: str, /, **params: Any) -> Any:
        """Execute; in pipeline mode the result is read only when fetched."""
        return self.conn.cursor(row_factory=dict_row).execute(query("course.sql", name), params)

    def one(self, name: str, /, **params: Any) -> Any:
        return self.queue(name, **params).fetchone()

    def all(self, name: str, /, **params: Any) -> list[Any]:
        rows: list[Any] = self.queue(name, **params).fetchall()
        return rows

    def many(self, name: str, rows: list[dict[str, Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(query("course.sql", name), rows)
