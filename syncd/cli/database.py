"""How a command gets its database: DATABASE_URL, or the embedded server (started, and
migrated); migrations applied when asked; the schema and the role's privileges checked;
a store on a pool or on one connection; the source's recorded row settings."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from syncd import config, embedded, logs, migrate, source_settings
from syncd.config import Settings
from syncd.database import DbSettings, connect, make_pool, where_to
from syncd.driver_errors import translated
from syncd.errors import ConfigError, FatalError
from syncd.history import Retention
from syncd.store import CourseStore


def db_settings(settings: Settings, dsn: str) -> DbSettings:
    return DbSettings(
        dsn=dsn,
        connect_timeout_s=settings.connect_timeout_s,
        statement_timeout_ms=settings.statement_timeout_ms,
    )


def dsn_of(settings: Settings) -> str:
    """DATABASE_URL, or the embedded server's (started when it is not running)."""
    if settings.database_url is not None:
        return settings.database_url.reveal()
    return embedded.start(settings.data_dir).dsn


@contextmanager
def database(settings: Settings, *, migrate_now: bool, writes: bool = True) -> Iterator[DbSettings]:
    """Where to connect, migrations applied when asked (always for the embedded server)."""
    log = logs.get()
    if settings.database_url is not None:
        dsn = settings.database_url.reveal()
        log.info("database", dsn=config.redact_dsn(dsn))
    else:
        server = embedded.start(settings.data_dir)
        dsn = server.dsn
        migrate_now = True
        log.info("embedded database ready", data_dir=str(server.data_dir), psql=server.psql_command)
    db = db_settings(settings, dsn)
    with connect(db) as conn, translated("migrations"):
        if migrate_now:
            for migration in migrate.apply_pending(conn):
                log.info("migration applied", version=migration.version, name=migration.name)
        schema, missing = migrate.preflight(conn, writes=writes)
        problems = schema.problems()
        if problems:
            raise FatalError("; ".join(problems))
        if missing:
            raise FatalError(
                "the database role lacks what syncd needs: "
                + "; ".join(missing)
                + " (grant the syncd_writer role, see docs/security.md)"
            )
    yield db


def store(
    db: DbSettings,
    workers: int = 1,
    source: str | None = None,
    history_keep: Retention = Retention(),
) -> tuple[CourseStore, Callable[[], None]]:
    """A store on a pool of ``workers`` connections (no per-checkout health check: a
    one-shot command that loses its database fails with exit 3 and is simply rerun)."""
    pool = make_pool(db, workers=workers, check=_no_check)
    with translated(where_to(db)):
        pool.open(wait=True, timeout=db.connect_timeout_s * 2)
    return CourseStore(pool.connection, source=source, history_keep=history_keep), pool.close


def _no_check(_conn: Any) -> None:
    return None


def one_connection(conn: Any, settings: Settings) -> CourseStore:
    """A store of this source on one open connection."""
    return CourseStore(lambda: nullcontext(conn), source=settings.source_name)


def with_source_settings(
    settings: Settings, store: CourseStore, *, refuse: str | None = None
) -> tuple[Settings, list[source_settings.Difference]]:
    """The settings this command runs with: those that shape rows and were not given are
    the ones recorded for the source (read through ``store``, on a connection the command
    has anyway). Given ones unlike the recorded ones are returned; with ``refuse`` (what to
    do instead), they are a configuration error naming each."""
    resolved, differences = source_settings.resolve(settings, store.source_settings())
    if differences and refuse is not None:
        raise ConfigError(
            "; ".join(str(d) for d in differences)
            + f" (source {settings.source_name!r}, syncd.sources.settings): {refuse}"
        )
    return resolved, differences


def label(settings: Settings, db: DbSettings) -> str:
    """Which database a command answered for, without its password."""
    if settings.database_url is None:
        return f"the embedded database in {settings.data_dir}"
    return f"the database {config.database_label(db.dsn)}"
