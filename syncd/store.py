"""All SQL and psycopg. Driver errors become syncd errors here and nowhere else."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg_pool
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from syncd.course import CourseSnapshot, FileIssue
from syncd.errors import FatalError, RejectedError, SyncdError, TransientError
from syncd.plan import ExistingRow, Plan, RowWrite, plan_course
from syncd.sqlfiles import query

Conn = psycopg.Connection[Any]

# SQLSTATE classes and codes, see https://www.postgresql.org/docs/current/errcodes-appendix.html
TRANSIENT_CLASSES = ("08", "53", "57", "58")  # connection, resources, operator intervention, system
TRANSIENT_CODES = ("25006", "40001", "40P01", "55P03", "57014")  # read-only, serialization,
# deadlock, lock not available, statement timeout
FATAL_CLASSES = ("28", "3D", "3F", "42")  # auth, no database, no schema, privileges/undefined
REJECTED_CLASSES = ("22", "23", "54")  # bad data, constraint, limits
FATAL_CODES_IN_57 = ("57P04",)  # database dropped
FATAL_MESSAGES = (
    "password authentication failed",
    "no password supplied",
    "does not exist",
    "permission denied",
    "no pg_hba.conf entry",
    "authentication failed",
)


def classify(exc: BaseException, where: str = "database") -> SyncdError:
    """Translate a driver error into transient / fatal / rejected by SQLSTATE."""
    if isinstance(exc, SyncdError):
        return exc
    message = _message(exc)
    if isinstance(exc, psycopg_pool.PoolTimeout):
        return TransientError(f"{where}: no connection available ({message})")
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        if sqlstate in FATAL_CODES_IN_57 or sqlstate[:2] in FATAL_CLASSES:
            return FatalError(f"{where}: {message} (SQLSTATE {sqlstate})")
        if sqlstate in TRANSIENT_CODES or sqlstate[:2] in TRANSIENT_CLASSES:
            return TransientError(f"{where}: {message} (SQLSTATE {sqlstate})")
        if sqlstate[:2] in REJECTED_CLASSES:
            return RejectedError(where, f"{message} (SQLSTATE {sqlstate})")
        return RejectedError(where, f"{message} (SQLSTATE {sqlstate})")
    if isinstance(exc, psycopg.OperationalError):
        lowered = message.lower()
        if any(marker in lowered for marker in FATAL_MESSAGES):
            return FatalError(f"{where}: {message}")
        return TransientError(f"{where}: {message}")
    if isinstance(exc, psycopg.Error):
        return TransientError(f"{where}: {message}")
    if isinstance(exc, OSError | TimeoutError):
        return TransientError(f"{where}: {message}")
    raise exc


def _message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:500]


@contextmanager
def translated(where: str = "database") -> Iterator[None]:
    try:
        yield
    except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
        raise classify(exc, where) from None


@dataclass(frozen=True)
class DbSettings:
    dsn: str
    connect_timeout_s: int = 5
    statement_timeout_ms: int = 30_000
    pool_max: int = 2  # one writer thread, plus one spare for the health check


def connect_kwargs(settings: DbSettings) -> dict[str, Any]:
    return {
        "connect_timeout": settings.connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 3,
        "keepalives_count": 3,
        "tcp_user_timeout": settings.connect_timeout_s * 2000,
        "application_name": "syncd",
    }


def connect(settings: DbSettings, **extra: Any) -> Conn:
    """One connection (migrations, verify, preflight), with errors translated."""
    with translated("connect"):
        conn = psycopg.connect(settings.dsn, **connect_kwargs(settings), **extra)
        conn.execute(f"SET statement_timeout = {int(settings.statement_timeout_ms)}")
        conn.commit()
        return conn


def make_pool(
    settings: DbSettings, check: Callable[[Conn], None] | None = None
) -> psycopg_pool.ConnectionPool[Conn]:
    """A pool whose connections are health-checked when handed out (``check``, by default
    psycopg_pool's own) and which keeps trying to reconnect through an outage."""

    def configure(conn: Conn) -> None:
        conn.execute(f"SET statement_timeout = {int(settings.statement_timeout_ms)}")
        conn.commit()

    return psycopg_pool.ConnectionPool(
        settings.dsn,
        min_size=1,
        max_size=settings.pool_max,
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

    @property
    def wrote(self) -> bool:
        return bool(self.inserted or self.updated or self.deleted or self.project_written)


class CourseStore:
    """Reads and writes one course at a time, each in one transaction under a
    per-course advisory lock. ``connection`` yields a connection (pool or single)."""

    def __init__(self, connection: Callable[[], Any], clock: Callable[[], float] = time.monotonic):
        self._connection = connection
        self._clock = clock

    def fingerprints(self) -> dict[str, tuple[bytes | None, bool]]:
        """course → (fingerprint, archived) for every course syncd has written."""
        with translated("read fingerprints"), self._connection() as conn:
            rows = conn.execute(query("course.sql", "course_fingerprints")).fetchall()
            conn.rollback()
        return {course: (bytes(fp) if fp else None, archived) for course, fp, archived in rows}

    def sync_course(self, snapshot: CourseSnapshot) -> CourseResult:
        result = CourseResult(snapshot.course, rejected=list(snapshot.rejected))
        with translated(f"course {snapshot.course}"), self._connection() as conn:
            conn.row_factory = tuple_row
            with conn.transaction():
                self._write(conn, snapshot, result)
            result.transactions = 1
        return result

    def dry_run(self, snapshot: CourseSnapshot) -> CourseResult:
        """The plan, computed from reads only."""
        result = CourseResult(snapshot.course, rejected=list(snapshot.rejected))
        with translated(f"course {snapshot.course}"), self._connection() as conn:
            project_id, minds = self._read_project(conn, snapshot)
            plan = self._plan(conn, snapshot, project_id, minds)
            conn.rollback()
        self._count(result, plan)
        return result

    def archive_course(self, course: str) -> int:
        """Archive the project of a vanished course folder; soft-delete its rows."""
        with translated(f"course {course}"), self._connection() as conn, conn.transaction():
            conn.execute(query("course.sql", "lock_course"), {"course": course})
            deleted = conn.execute(
                query("course.sql", "archive_course"), {"course": course}
            ).fetchall()
        return len(deleted)

    def plan_for_verify(self, snapshot: CourseSnapshot) -> tuple[Plan, dict[uuid.UUID, str | None]]:
        """The plan a sync would make now, plus the md5 of every row's content."""
        with translated(f"course {snapshot.course}"), self._connection() as conn:
            project_id, minds = self._read_project(conn, snapshot)
            md5s = {}
            if project_id is not None:
                for r in conn.execute(
                    query("course.sql", "existing_rows"),
                    {"project_id": project_id, "legacy_slugs": []},
                ):
                    md5s[r[0]] = r[9]
            plan = self._plan(conn, snapshot, project_id, minds)
            conn.rollback()
        return plan, md5s

    def _read_project(
        self, conn: Conn, snapshot: CourseSnapshot
    ) -> tuple[uuid.UUID | None, tuple[uuid.UUID | None, uuid.UUID | None]]:
        """(project id, (creator, persona)) as a sync would use them, from reads only."""
        row = _Sql(conn).one("project_minds", slug=snapshot.project.slug)
        if row is not None and "project" in snapshot.protected:
            return row[0], (row[1], row[2])
        minds = _project_minds(snapshot, self._mind_ids(conn, snapshot, create=False))
        return (row[0] if row else None), minds

    def file_paths(self, ids: set[uuid.UUID]) -> dict[uuid.UUID, str | None]:
        with translated("read file paths"), self._connection() as conn:
            rows = _Sql(conn).all("file_paths", ids=list(ids))
            conn.rollback()
        return dict(rows)

    # -- the transaction ------------------------------------------------------------

    def _write(self, conn: Conn, snapshot: CourseSnapshot, result: CourseResult) -> None:
        sql = _Sql(conn)
        sql.run("lock_course", course=snapshot.course)
        state = sql.one("course_state", course=snapshot.course)
        minds = self._mind_ids(conn, snapshot, create=True)
        p = snapshot.project
        kept = sql.one("project_minds", slug=p.slug) if "project" in snapshot.protected else None
        if kept is not None:  # the brief was rejected: the project row stays as it is
            self._finish(sql, snapshot, kept[0], (kept[1], kept[2]), result)
            return
        audience_id = None
        if snapshot.project.audience is not None:
            a = snapshot.project.audience
            sql.run(
                "upsert_audience",
                slug=a.slug,
                name=a.name,
                description=a.description,
                technical_level=a.technical_level,
            )
            audience_id = sql.one("audience_id", slug=a.slug)[0]
        written = sql.one(
            "upsert_project",
            slug=p.slug,
            name=p.name,
            description=p.description,
            project_type=p.project_type,
            metadata=Jsonb(p.metadata),
            creator_mind_id=minds.get(p.creator_mind.slug) if p.creator_mind else None,
            persona_mind_id=minds.get(p.persona_mind.slug) if p.persona_mind else None,
            audience_id=audience_id,
            restore_status=state[1] if state else None,
        )
        result.project_written = written is not None
        project_id = written[0] if written else sql.one("project_id", slug=p.slug)[0]
        self._finish(sql, snapshot, project_id, _project_minds(snapshot, minds), result)

    def _finish(
        self,
        sql: _Sql,
        snapshot: CourseSnapshot,
        project_id: uuid.UUID,
        minds: tuple[uuid.UUID | None, uuid.UUID | None],
        result: CourseResult,
    ) -> None:
        conn = sql.conn
        plan = self._plan(conn, snapshot, project_id, minds)
        self._apply(sql, project_id, plan)
        self._count(result, plan)
        complete = not plan.rejected and not snapshot.rejected
        sql.run(
            "upsert_course",
            course=snapshot.course,
            project_id=project_id,
            fingerprint=snapshot.fingerprint if complete else None,
        )

    def _mind_ids(
        self, conn: Conn, snapshot: CourseSnapshot, *, create: bool
    ) -> dict[str, uuid.UUID]:
        # sorted, so that two transactions never lock the same minds in opposite orders
        minds = sorted(
            {
                m.slug: m
                for m in (snapshot.project.creator_mind, snapshot.project.persona_mind)
                if m
            }.values(),
            key=lambda m: m.slug,
        )
        if not minds:
            return {}
        sql = _Sql(conn)
        if create:
            sql.run(
                "insert_minds", slugs=[m.slug for m in minds], names=[m.display_name for m in minds]
            )
        rows = sql.all("mind_ids", slugs=[m.slug for m in minds])
        return {slug: mind_id for slug, mind_id in rows}

    def _plan(
        self,
        conn: Conn,
        snapshot: CourseSnapshot,
        project_id: uuid.UUID | None,
        minds: tuple[uuid.UUID | None, uuid.UUID | None],
    ) -> Plan:
        """The plan for this course; ``minds`` = (creator, persona) ids of the project."""
        sql = _Sql(conn)
        legacy = [c.legacy_slug for c in snapshot.contents if c.legacy_slug]
        existing = [
            ExistingRow(
                id=r[0],
                slug=r[1],
                file_path=r[2],
                content_type=r[3],
                sequence_order=r[4],
                parent_id=r[5],
                deleted=r[6],
                row_key=r[7],
                row_hash=bytes(r[8]) if r[8] else None,
            )
            for r in sql.all("existing_rows", project_id=project_id, legacy_slugs=legacy)
        ]
        creator, persona = minds
        plan = plan_course(snapshot, existing, creator_mind_id=creator, persona_mind_id=persona)
        if plan.inserts:
            taken = {
                r[0]
                for r in sql.all(
                    "foreign_slugs", slugs=[w.slug for w in plan.inserts], project_id=project_id
                )
            }
            if taken:
                plan = plan_course(
                    snapshot,
                    existing,
                    creator_mind_id=creator,
                    persona_mind_id=persona,
                    foreign_slugs=frozenset(taken),
                )
        return plan

    def _apply(self, sql: _Sql, project_id: uuid.UUID, plan: Plan) -> None:
        if plan.inserts:
            with sql.conn.cursor().copy(query("course.sql", "copy_contents")) as copy:
                for w in plan.inserts:
                    r = w.record
                    copy.write_row(
                        (
                            w.id,
                            project_id,
                            r.content_type,
                            w.parent_id,
                            r.sequence_order,
                            w.slug,
                            r.title,
                            r.content,
                            Jsonb(r.metadata),
                            r.fidelity_score,
                            r.status or "draft",
                            r.file_path,
                            True,
                        )
                    )
        if plan.updates:
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
                        "status": w.record.status,
                        "file_path": w.record.file_path,
                    }
                    for w in plan.updates
                ],
            )
        if plan.deletes:
            sql.run("soft_delete", ids=plan.deletes)
        written = plan.inserts + plan.updates
        if not written:
            return
        self._junctions(sql, written, is_new=len(plan.updates) == 0)
        ids = [w.id for w in written]
        keys = [w.record.key for w in written]
        sql.run("release_row_keys", project_id=project_id, keys=keys, ids=ids)
        sql.run(
            "upsert_rows",
            ids=ids,
            project_ids=[project_id] * len(ids),
            keys=keys,
            hashes=[w.row_hash for w in written],
            source_hashes=[w.record.source_hash for w in written],
        )

    def _junctions(self, sql: _Sql, written: list[RowWrite], *, is_new: bool) -> None:
        ids = [w.id for w in written]
        names = sorted({t for w in written for t in w.tags})
        tag_ids: dict[str, int] = {}
        if names:
            sql.run("insert_tags", names=names)
            tag_ids = dict(sql.all("tag_ids", names=names))
        tag_pairs = [(w.id, tag_ids[t]) for w in written for t in w.tags if t in tag_ids]
        mind_rows = [(w.id, m, role) for w in written for m, role in w.minds]
        if not is_new:
            sql.run(
                "prune_content_tags",
                ids=ids,
                content_ids=[c for c, _ in tag_pairs],
                tag_ids=[t for _, t in tag_pairs],
            )
            sql.run(
                "prune_content_minds",
                ids=ids,
                content_ids=[c for c, _, _ in mind_rows],
                mind_ids=[m for _, m, _ in mind_rows],
            )
        if tag_pairs:
            sql.run(
                "insert_content_tags",
                content_ids=[c for c, _ in tag_pairs],
                tag_ids=[t for _, t in tag_pairs],
            )
        if mind_rows:
            sql.run(
                "insert_content_minds",
                content_ids=[c for c, _, _ in mind_rows],
                mind_ids=[m for _, m, _ in mind_rows],
                roles=[r for _, _, r in mind_rows],
            )

    @staticmethod
    def _count(result: CourseResult, plan: Plan) -> None:
        result.plan = plan
        result.inserted, result.updated = len(plan.inserts), len(plan.updates)
        result.deleted, result.unchanged = len(plan.deletes), plan.unchanged
        result.rejected.extend(plan.rejected)


def _project_minds(
    snapshot: CourseSnapshot, ids: dict[str, uuid.UUID]
) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    p = snapshot.project
    creator = ids.get(p.creator_mind.slug) if p.creator_mind else None
    persona = ids.get(p.persona_mind.slug) if p.persona_mind else None
    return creator, persona


class _Sql:
    """Named queries from course.sql on one connection."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def run(self, name: str, /, **params: Any) -> None:
        self.conn.execute(query("course.sql", name), params)

    def one(self, name: str, /, **params: Any) -> Any:
        return self.conn.execute(query("course.sql", name), params).fetchone()

    def all(self, name: str, /, **params: Any) -> list[Any]:
        return self.conn.execute(query("course.sql", name), params).fetchall()

    def many(self, name: str, rows: list[dict[str, Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(query("course.sql", name), rows)
