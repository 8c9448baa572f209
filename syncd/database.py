"""The database connection: settings, syncd's connections (``SyncdConnection``: no session
state, so that a transaction pooler may stand in between), ``connect``, ``probe`` and the
pool with its health check (``IdleCheck``), a pooled connection under a deadline
(``guarded``), and pipelined transactions of named queries (``reading``, ``writing``).
Driver errors are translated by ``driver_errors``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import dict_row

from syncd.config import redact_dsn
from syncd.deadline import SocketDeadlines
from syncd.driver_errors import classify, keeps_connection, translated
from syncd.errors import AuthenticationFailed, ConfigError, SyncdError, TransientError
from syncd.sqlfiles import query

Conn = psycopg.Connection[Any]
IDLE_CHECK_S = 10.0  # a pooled connection idle this long is checked before use
# A quiet daemon checks its least recently used connection in the background (``IdleCheck.warm``)
# if it was not used for WARM_AFTER_S: a save after a quiet spell then finds it checked and
# pays no round trip for it (over a far link, a third of such a save's time).
WARM_AFTER_S = IDLE_CHECK_S / 2
PROBE_EVERY_S = 5.0  # the pool says "no connection available": ask the server why, this often


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


def idle_check(
    deadlines: SocketDeadlines, settings: DbSettings, clock: Callable[[], float]
) -> IdleCheck:
    """The pool's health check for the daemon: a round trip bounded by the connect timeout."""
    return IdleCheck(deadlines, float(settings.connect_timeout_s), clock)


class IdleCheck:
    """The pool's health check: a round trip under a deadline, but only for a connection
    that sat idle long enough to have been dropped on the way (a busy connection proves
    itself with every sync and would pay one more round trip). ``warm``: the same check in
    the background, for the least recently used connection, sooner (WARM_AFTER_S), so that
    a quiet daemon's connections are checked before a save needs one."""

    def __init__(
        self, deadlines: SocketDeadlines, seconds: float, clock: Callable[[], float]
    ) -> None:
        self._deadlines = deadlines
        self._seconds = seconds
        self._clock = clock
        self._last: dict[int, float] = {}  # id(conn) -> when last handed out (or checked)
        self._warming = threading.local()  # set on the thread running ``warm``

    def __call__(self, conn: Any) -> None:
        now = self._clock()
        idle = WARM_AFTER_S if getattr(self._warming, "on", False) else IDLE_CHECK_S
        if now - self._last.get(id(conn), -IDLE_CHECK_S) >= idle:
            with self._deadlines.guard(conn, self._seconds):
                # one round trip (an empty query in autocommit), not three (BEGIN,
                # SELECT 1, ROLLBACK): it runs before the save that follows a quiet spell
                psycopg_pool.ConnectionPool.check_connection(conn)
        self._last[id(conn)] = now

    def warm(self, pool: psycopg_pool.ConnectionPool[Any]) -> None:
        """Take the least recently used connection (the pool hands them out in turn) and
        check it if it was not used for WARM_AFTER_S. A failed check is the pool's (it
        drops that connection and opens another); a pool with none to give is left alone."""
        self._warming.on = True
        try:
            conn = pool.getconn(timeout=self._seconds)
            pool.putconn(conn)
        except (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed):
            pass  # the database is away or the daemon stopping: a save will say so
        finally:
            self._warming.on = False


class ProbeEvery:
    """``probe`` at most once every ``PROBE_EVERY_S``: the workers that all find the pool
    empty at once ask the server once, and hear the same answer."""

    def __init__(self, probe: Callable[[], SyncdError | None], clock: Callable[[], float]) -> None:
        self._probe = probe
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, SyncdError | None] | None = None

    def __call__(self) -> SyncdError | None:
        with self._lock:
            now = self._clock()
            if self._last is None or now - self._last[0] >= PROBE_EVERY_S:
                self._last = (now, self._probe())
            return self._last[1]


@contextmanager
def guarded(
    pool: Any, deadlines: SocketDeadlines, seconds: float, answered: Callable[[], None]
) -> Iterator[Any]:
    """A pooled connection under a deadline. ``answered`` is told when the database
    answered (the block ended, or the database refused data or cancelled a statement): the
    breaker hears of the database from the database alone, never from a sync that had no
    need of it. After any other error the connection is closed, so the pool replaces it: a
    session stuck read-only (failover) or half-dead never comes back."""
    wait = deadlines.bounded(pool.timeout)  # never waits for a connection past the stop's end
    with (
        translated("database"),
        pool.connection(timeout=wait) as conn,
        deadlines.guard(conn, seconds),
    ):
        try:
            yield conn
        except BaseException as exc:
            if keeps_connection(exc):
                answered()
            else:
                conn.close()
            raise
        answered()


class Queries:
    """Named queries of one file of sql/ on one connection; rows are read by column name."""

    def __init__(self, conn: Conn, file: str) -> None:
        self.conn = conn
        self.file = file

    def queue(self, name: str, /, **params: Any) -> Any:
        """Execute; in pipeline mode the result is read only when fetched."""
        return self.conn.cursor(row_factory=dict_row).execute(query(self.file, name), params)

    def one(self, name: str, /, **params: Any) -> Any:
        return self.queue(name, **params).fetchone()

    def all(self, name: str, /, **params: Any) -> list[Any]:
        rows: list[Any] = self.queue(name, **params).fetchall()
        return rows

    def many(self, name: str, rows: list[dict[str, Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(query(self.file, name), rows)


@contextmanager
def reading(connection: Callable[[], Any], where: str, file: str) -> Iterator[Queries]:
    """A read-only transaction, pipelined: BEGIN, syncd's timeouts, the queries and the
    ROLLBACK. Queries queued in the block and read after it cost one round trip in all;
    a read inside the block costs one more. ``connection`` yields a connection (pool or
    single)."""
    with translated(where), connection() as conn, conn.work(read_only=True):
        yield Queries(conn, file)


@contextmanager
def writing(connection: Callable[[], Any], where: str, file: str) -> Iterator[Queries]:
    """A transaction, pipelined: what is only queued is sent with the COMMIT."""
    with translated(where), connection() as conn, conn.work():
        yield Queries(conn, file)
