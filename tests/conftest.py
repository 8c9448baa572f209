"""Real PostgreSQL for every test: one server per session (the pgserver wheel, or the
server named by SYNCD_TEST_DSN, or the supabase/postgres image with
SYNCD_TEST_CONTAINER=1), one fresh database per test cloned from a migrated template.

Besides it, Supabase-shaped servers (``supabase15``: Debian's postgresql-15, ``supabase16``:
pgserver's binaries), built from the facts of issue 8: the superuser is supabase_admin and
the migrations run as a demoted ``postgres``. ``db_target`` gives a test one fresh migrated
database on each of the three."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from syncd import migrate
from tests.daemon_harness import DaemonProcess
from tests.helpers import EXAMPLES, REPO
from tests.pgcluster import DEBIAN_PG15, Cluster, pgserver_bin, start_cluster

TEMPLATE = "syncd_template"


@dataclass
class Server:
    admin_dsn: str
    data_dir: Path | None = None  # set for the server this suite started itself

    def dsn(self, dbname: str) -> str:
        return make_conninfo(self.admin_dsn, dbname=dbname)

    def create_database(self, template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            suffix = f" TEMPLATE {template}" if template else ""
            conn.execute(f"CREATE DATABASE {name}{suffix}")
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _start_pgserver(tmp: Path) -> tuple[str, object]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(tmp / "pgdata", cleanup_mode="delete")
    return server.get_uri(), server


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    if os.environ.get("SYNCD_TEST_DSN"):
        yield Server(os.environ["SYNCD_TEST_DSN"])
        return
    if os.environ.get("SYNCD_TEST_CONTAINER") == "1":
        from testcontainers.postgres import PostgresContainer

        image = os.environ.get("SYNCD_TEST_IMAGE", "supabase/postgres:17.4.1.054")
        with PostgresContainer(
            image, username="postgres", password="postgres", dbname="postgres", driver=None
        ) as container:
            yield Server(container.get_connection_url())
        return
    tmp = Path(tempfile.mkdtemp(prefix="syncd-test-pg-"))
    os.chmod(tmp, 0o755)
    uri, handle = _start_pgserver(tmp)
    try:
        yield Server(uri, data_dir=tmp / "pgdata")
    finally:
        handle.cleanup()  # type: ignore[attr-defined]
        shutil.rmtree(tmp, ignore_errors=True)


_template_lock = threading.Lock()


@pytest.fixture(scope="session")
def migrated_template(pg_server: Server) -> str:
    with _template_lock:
        with psycopg.connect(pg_server.admin_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        with psycopg.connect(pg_server.dsn(TEMPLATE)) as conn:
            migrate.apply_pending(conn)
    return TEMPLATE


@pytest.fixture
def empty_dsn(pg_server: Server) -> Iterator[str]:
    name = pg_server.create_database()
    yield pg_server.dsn(name)
    pg_server.drop_database(name)


@pytest.fixture
def db_dsn(pg_server: Server, migrated_template: str) -> Iterator[str]:
    """A fresh, fully migrated database for one test."""
    name = pg_server.create_database(template=migrated_template)
    yield pg_server.dsn(name)
    pg_server.drop_database(name)


# -- Supabase-shaped servers ---------------------------------------------------------------

SUPABASE_SQL = Path(__file__).resolve().parent / "sql"
SUPABASE_BARE = "supabase_bare"  # a project's database before syncd
SUPABASE_MIGRATED = "supabase_migrated"  # the same after the migrations, run as postgres


@dataclass
class SupabaseServer:
    cluster: Cluster

    @property
    def version(self) -> int:
        return self.cluster.version

    def dsn(self, dbname: str, user: str = "postgres") -> str:
        return self.cluster.dsn(dbname, user=user)

    def admin_dsn(self, dbname: str = "postgres") -> str:
        return self.cluster.dsn(dbname, user="supabase_admin")

    def create_database(self, template: str = SUPABASE_MIGRATED) -> str:
        name = f"s_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {template} OWNER postgres")
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _supabase_server(bin_dir: Path, label: str) -> Iterator[SupabaseServer]:
    if not (bin_dir / "postgres").exists():
        message = f"{label}: no PostgreSQL server binaries at {bin_dir}"
        if os.environ.get("SYNCD_REQUIRE_SUPABASE_SERVERS") == "1":
            pytest.fail(message)  # CI installs them: their absence is a failure there
        pytest.skip(message)
    cluster = start_cluster(bin_dir, superuser="supabase_admin")
    server = SupabaseServer(cluster)
    try:
        with psycopg.connect(server.admin_dsn(), autocommit=True) as conn:
            conn.execute((SUPABASE_SQL / "supabase_roles.sql").read_text(encoding="utf-8"))
            conn.execute(f"CREATE DATABASE {SUPABASE_BARE} OWNER postgres")
        with psycopg.connect(server.admin_dsn(SUPABASE_BARE), autocommit=True) as conn:
            conn.execute((SUPABASE_SQL / "supabase_database.sql").read_text(encoding="utf-8"))
        with psycopg.connect(server.admin_dsn(), autocommit=True) as conn:
            conn.execute(
                f"CREATE DATABASE {SUPABASE_MIGRATED} TEMPLATE {SUPABASE_BARE} OWNER postgres"
            )
        with psycopg.connect(server.dsn(SUPABASE_MIGRATED)) as conn:  # as postgres
            migrate.apply_pending(conn)
        yield server
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def supabase15() -> Iterator[SupabaseServer]:
    yield from _supabase_server(DEBIAN_PG15, "PostgreSQL 15 (Debian's postgresql-15)")


@pytest.fixture(scope="session")
def supabase16() -> Iterator[SupabaseServer]:
    yield from _supabase_server(pgserver_bin(), "PostgreSQL 16 (pgserver)")


@dataclass(frozen=True)
class Target:
    """One fresh, migrated database: ``admin_dsn`` is a superuser (seeds, impersonates),
    ``owner_dsn`` the role that ran the migrations and owns the tables (on Supabase the
    demoted postgres; on plain PostgreSQL the superuser itself)."""

    kind: str  # "plain", "supabase-pg15", "supabase-pg16"
    admin_dsn: str
    owner_dsn: str
    supabase: SupabaseServer | None = None

    def dsn_as(self, user: str) -> str:
        return make_conninfo(self.owner_dsn, user=user)


TARGETS = ["plain", "supabase-pg15", "supabase-pg16"]


def _target(request: pytest.FixtureRequest, kind: str) -> Iterator[Target]:
    if kind == "plain":
        dsn = request.getfixturevalue("db_dsn")
        yield Target(kind, dsn, dsn)
        return
    server: SupabaseServer = request.getfixturevalue(
        "supabase15" if kind.endswith("15") else "supabase16"
    )
    name = server.create_database()
    try:
        yield Target(kind, server.admin_dsn(name), server.dsn(name), server)
    finally:
        server.drop_database(name)


@pytest.fixture(params=TARGETS)
def db_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """A fresh migrated database on plain PostgreSQL and on both Supabase shapes."""
    yield from _target(request, request.param)


@pytest.fixture(params=TARGETS[1:])
def supabase_target(request: pytest.FixtureRequest) -> Iterator[Target]:
    """A fresh migrated database on both Supabase shapes."""
    yield from _target(request, request.param)


@pytest.fixture
def corpus_root() -> Path:
    value = os.environ.get("SYNCD_CORPUS")
    if not value:
        pytest.skip("SYNCD_CORPUS is not set: the shared corpus tests need it")
    root = Path(value)
    if not root.is_dir():
        pytest.skip(f"SYNCD_CORPUS={value} is not a folder")
    return root


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No SYNCD_* / DATABASE_URL / kill switch from the caller's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("SYNCD_") and name not in (
            "SYNCD_CORPUS",
            "SYNCD_TEST_DSN",
            "SYNCD_TEST_CONTAINER",
            "SYNCD_TEST_IMAGE",
            "SYNCD_SCHEMA_DIR",
            "SYNCD_REQUIRE_SUPABASE_SERVERS",
            "SYNCD_CONTAINER_TESTS",
            "SYNCD_CI_CACHE",
        ):
            monkeypatch.delenv(name)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("CREATOR_OS_DB_PERSIST", raising=False)


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    """A test that leaves a non-daemon thread running fails: stopping is part of behaviour."""
    before = set(threading.enumerate())
    yield
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    for thread in leaked:
        thread.join(timeout=5)
    still = [t.name for t in leaked if t.is_alive()]
    assert not still, f"threads left running: {still}"


def pytest_configure(config: pytest.Config) -> None:
    """A suite started where SIGINT is ignored (a shell's background job, some CI runners)
    would hand that on to every daemon it starts, and a daemon that ignores SIGINT cannot
    show what Ctrl-C does: the suite takes SIGINT back as Python's own, so that the processes
    it starts get the default."""
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    ):
        signal.signal(signal.SIGINT, signal.default_int_handler)


# -- the container tests (issue 12) --------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The `containers` tests need rootful podman and mmdebstrap, which `.ci/run` installs:
    they run when SYNCD_CONTAINER_TESTS=1 (and then fail if containers cannot run here, never
    skip), and are deselected otherwise, so that `./test.sh` passes on a machine with only
    Python. The header says which; in one process (`-n 0`) the summary line also counts them
    as deselected (pytest-xdist's workers deselect them without telling the summary)."""
    if os.environ.get("SYNCD_CONTAINER_TESTS") == "1":
        return
    chosen = [item for item in items if "containers" not in item.keywords]
    dropped = [item for item in items if "containers" in item.keywords]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = chosen


def pytest_report_header(config: pytest.Config) -> list[str]:
    if os.environ.get("SYNCD_CONTAINER_TESTS") == "1":
        lines = ["container tests: on (rootful podman)"]
    else:
        lines = ["container tests: deselected (SYNCD_CONTAINER_TESTS=1 runs them; .ci/run does)"]
    shown, kept = REPO / "examples" / "courses", EXAMPLES
    if _files(shown) != _files(kept):
        lines.append(
            f"{shown.relative_to(REPO)} differs from {kept.relative_to(REPO)} (the README's tour "
            "edits it): the suite reads its own copy only"
        )
    return lines


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    """Daemons a test starts (append them): each is killed at the end, whatever happened."""
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        daemon.kill()
