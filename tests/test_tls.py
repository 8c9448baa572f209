"""TLS as a Supabase user needs it (issue 17, item 5), against real PostgreSQL 15 servers on
127.0.0.1: one with ``ssl=on`` that takes TCP connections over TLS only (``hostssl``,
scram-sha-256), its certificate signed by a test CA for localhost and 127.0.0.1, and one
without TLS. ``verify-full`` with ``sslrootcert`` works; a TLS set-up that cannot work is a
configuration error (exit 2, which the unit does not restart) found at once, naming the
setting of DATABASE_URL to change; a rejected password exits 4 at once, naming DATABASE_URL.
No output ever holds the password.

CI installs postgresql-15 (.ci/run) and sets SYNCD_REQUIRE_SUPABASE_SERVERS=1: there a
missing server fails these tests; elsewhere they are skipped (pgserver's PostgreSQL 16 is
built without OpenSSL)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from syncd.database import DbSettings, connect
from syncd.driver_errors import classify
from syncd.errors import ConfigError, TransientError
from syncd.exits import ExitCode
from tests.daemon_harness import REPO, run_syncd
from tests.helpers import Run, make_course, run_cli
from tests.pgcluster import DEBIAN_PG15, Cluster, init_cluster, install, start

PASSWORD = "Tls-Sekr3t-pw"  # the output must never hold it, nor the wrong one below
WRONG = "Wrong-Sekr3t-pw"
OPENSSL = shutil.which("openssl")

# Under xdist (./test.sh) the module's tests share one worker: the two servers and the test
# CA of the module fixture ``servers`` are made once, not once per worker.
pytestmark = pytest.mark.xdist_group("tls")


def _missing(what: str) -> None:
    if os.environ.get("SYNCD_REQUIRE_SUPABASE_SERVERS") == "1":
        pytest.fail(what)  # CI has them: their absence is a failure there
    pytest.skip(what)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Pki:
    ca: Path  # signed the server's certificate
    other_ca: Path  # did not
    server_crt: Path
    server_key: Path


def _make_pki(folder: Path) -> Pki:
    """A CA, a server certificate it signs for localhost and 127.0.0.1, and another CA."""
    for name in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=syncd test {name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
            cwd=folder,
        )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr",
        cwd=folder,
    )  # fmt: skip
    (folder / "san.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.crt",
        cwd=folder,
    )  # fmt: skip
    return Pki(
        folder / "ca.crt", folder / "other-ca.crt", folder / "server.crt", folder / "server.key"
    )


HBA = """\
local all all trust
{kind} all all 127.0.0.1/32 scram-sha-256
"""


def _server(pki: Pki, *, tls: bool) -> Cluster:
    cluster = init_cluster(DEBIAN_PG15, "postgres")
    try:
        install(cluster, "pg_hba.conf", HBA.format(kind="hostssl" if tls else "host").encode())
        settings = {"ssl": "off"}
        if tls:
            install(cluster, "server.crt", pki.server_crt.read_bytes(), 0o644)
            install(cluster, "server.key", pki.server_key.read_bytes(), 0o600)
            settings = {"ssl": "on"}
        _start_on_a_free_port(cluster, settings)
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:  # the Unix socket
            conn.execute(f"alter role postgres password '{PASSWORD}'")
    except BaseException:
        shutil.rmtree(cluster.base, ignore_errors=True)
        raise
    return cluster


def _start_on_a_free_port(cluster: Cluster, settings: dict[str, str]) -> None:
    """The port was free when chosen, but another process (a parallel worker's) may bind it
    before the server does: then the server starts again on another, up to three times."""
    log = cluster.base / "server.log"
    for attempt in range(3):
        try:
            start(cluster, listen="127.0.0.1", port=_free_port(), **settings)
            return
        except RuntimeError:
            said = log.read_text(errors="replace") if log.exists() else ""
            if attempt == 2 or "Address already in use" not in said:
                raise
            log.unlink()  # the next attempt is judged by its own lines


@dataclass(frozen=True)
class Servers:
    pki: Pki
    tls: Cluster
    plain: Cluster


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    if not (DEBIAN_PG15 / "postgres").exists():
        _missing(f"no PostgreSQL 15 at {DEBIAN_PG15} (Debian's postgresql-15, built with OpenSSL)")
    if OPENSSL is None:
        _missing("no openssl command to make the test certificates")
    pki = _make_pki(tmp_path_factory.mktemp("pki"))
    tls = _server(pki, tls=True)
    try:
        plain = _server(pki, tls=False)
        try:
            yield Servers(pki, tls, plain)
        finally:
            plain.stop()
    finally:
        tls.stop()


@pytest.fixture
def database(servers: Servers) -> Iterator[str]:
    name = f"tls_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(servers.tls.dsn(), autocommit=True) as conn:
        conn.execute(f"create database {name}")
    try:
        yield name
    finally:
        with psycopg.connect(servers.tls.dsn(), autocommit=True) as conn:
            conn.execute(f"drop database if exists {name} with (force)")


def url(
    cluster: Cluster,
    database: str,
    *,
    host: str = "127.0.0.1",
    password: str = PASSWORD,
    **query: str,
) -> str:
    params = "&".join(f"{k}={v}" for k, v in query.items())
    return f"postgresql://postgres:{password}@{host}:{cluster.port}/{database}?{params}"


def assert_no_secret(text: str) -> None:
    assert PASSWORD not in text and WRONG not in text


def timed_cli(capsys: pytest.CaptureFixture[str], argv: list[str], dsn: str) -> tuple[Run, float]:
    began = time.monotonic()
    run = run_cli(capsys, [*argv, "--connect-timeout", "10"], dsn)
    return run, time.monotonic() - began


def commands(root: Path) -> dict[str, list[str]]:
    return {
        "migrate": ["migrate"],
        "rescan": ["--rescan", "--root", str(root)],
        "verify": ["verify", "--root", str(root)],
    }


def test_verify_full_with_the_ca_certificate_migrates_rescans_and_verifies(
    servers: Servers, database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sslmode=verify-full&sslrootcert=<the CA>` (docs/supabase.md's URL, here for
    127.0.0.1): migrate, --rescan and verify all exit 0, over TLS (the server takes TCP
    connections only over TLS, and says so of syncd's)."""
    root = tmp_path / "courses"
    make_course(root, "tls-course", lessons=3)
    dsn = url(servers.tls, database, sslmode="verify-full", sslrootcert=str(servers.pki.ca))
    for name, argv in commands(root).items():
        run, _ = timed_cli(capsys, argv, dsn)
        assert run.code == ExitCode.OK, (name, run.stderr)
        assert_no_secret(run.stdout + run.stderr)
    with (
        connect(DbSettings(dsn)) as conn,
        conn.transaction(force_rollback=True),
    ):
        row = conn.execute(
            "select ssl, (select count(*) from public.contents) from pg_stat_ssl"
            " where pid = pg_backend_pid()"
        ).fetchone()
    assert row is not None and row[0] is True, row  # this very connection is TLS
    assert row[1] >= 3, row  # the course's rows (3 lessons among them) are there


def _config_error(run: Run) -> str:
    assert run.code == ExitCode.CONFIG, run.stderr
    assert not run.named("database unavailable"), run.stderr  # not "unreachable"
    (said,) = run.named("configuration error")
    reason: str = said["reason"]
    assert "waited up to" not in reason, reason  # it failed at once and will never succeed
    assert_no_secret(run.stdout + run.stderr)
    return reason


@pytest.mark.parametrize("command", ["migrate", "rescan", "verify"])
def test_a_server_certificate_the_ca_did_not_sign_is_a_configuration_error(
    servers: Servers,
    database: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """sslrootcert names another CA: exit 2 at once, naming sslrootcert (was exit 3,
    "database unavailable", "waited up to --connect-timeout")."""
    dsn = url(servers.tls, database, sslmode="verify-full", sslrootcert=str(servers.pki.other_ca))
    run, took = timed_cli(capsys, commands(tmp_path)[command], dsn)
    reason = _config_error(run)
    assert "certificate verify failed" in reason and "sslrootcert" in reason, reason
    assert str(servers.pki.other_ca) in reason, reason  # the file it was checked against
    assert took < 5, took


def test_a_certificate_for_another_host_is_a_configuration_error_naming_the_host(
    servers: Servers, database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The right CA, but DATABASE_URL's host is not a name in the server's certificate
    (reached by hostaddr): exit 2 at once, naming that host (was exit 3)."""
    dsn = url(
        servers.tls,
        database,
        host="db.wrong.invalid",
        hostaddr="127.0.0.1",
        sslmode="verify-full",
        sslrootcert=str(servers.pki.ca),
    )
    run, took = timed_cli(capsys, ["verify", "--root", str(tmp_path)], dsn)
    reason = _config_error(run)
    assert "db.wrong.invalid" in reason and "host" in reason, reason
    assert took < 5, took


def test_a_missing_sslrootcert_file_is_a_configuration_error(
    servers: Servers, database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """sslrootcert names a file that is not there (a typo, a path the service user cannot
    see): exit 2 naming sslrootcert (was exit 4, "database refused syncd")."""
    missing = tmp_path / "prod-ca-2021.crt"
    dsn = url(servers.tls, database, sslmode="verify-full", sslrootcert=str(missing))
    run, _ = timed_cli(capsys, ["migrate"], dsn)
    reason = _config_error(run)
    assert "sslrootcert" in reason and str(missing) in reason, reason


@pytest.mark.parametrize("sslmode", ["require", "verify-full"])
def test_sslmode_against_a_server_without_tls_is_a_configuration_error_at_once(
    servers: Servers, tmp_path: Path, capsys: pytest.CaptureFixture[str], sslmode: str
) -> None:
    """The issue's report: `sslmode=require` against a server without TLS exited 3
    ("unreachable", "waited up to --connect-timeout 5 s") though it failed at once and
    never succeeds; now exit 2 at once, naming sslmode."""
    dsn = url(servers.plain, "postgres", sslmode=sslmode, sslrootcert=str(servers.pki.ca))
    run, took = timed_cli(capsys, ["--rescan", "--root", str(tmp_path)], dsn)
    reason = _config_error(run)
    assert "does not support SSL" in reason and f"sslmode={sslmode}" in reason, reason
    assert took < 5, took  # not the 10 s connect timeout


def test_a_rejected_password_at_start_exits_4_at_once_naming_database_url(
    servers: Servers, database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong password over verify-full: exit 4 ("database authentication failed", as after
    --auth-grace while running, which the unit does not restart either), at once, the reason
    naming the password of DATABASE_URL, never the connect timeout."""
    dsn = url(
        servers.tls,
        database,
        password=WRONG,
        sslmode="verify-full",
        sslrootcert=str(servers.pki.ca),
    )
    run, took = timed_cli(capsys, ["--rescan", "--root", str(tmp_path)], dsn)
    assert run.code == ExitCode.FATAL_DB, run.stderr
    (said,) = run.named("database authentication failed")
    reason = said["reason"]
    assert "password authentication failed" in reason, reason
    assert "password in DATABASE_URL" in reason and "waited up to" not in reason, reason
    assert took < 5, took
    assert_no_secret(run.stdout + run.stderr)


SAID_WHILE_CONNECTING = {
    # Supavisor with "Enforce SSL on incoming connections", to a client without TLS
    "FATAL: SSL connection is required": ConfigError,
    # a TLS connection the network lost later: an outage, waited out as before
    "SSL SYSCALL error: EOF detected": TransientError,
    "SSL connection has been closed unexpectedly": TransientError,
    "SSL error: decryption failed or bad record mac": TransientError,
}


@pytest.mark.parametrize("said", SAID_WHILE_CONNECTING, ids=list(SAID_WHILE_CONNECTING))
def test_only_a_tls_set_up_that_cannot_work_is_a_configuration_error(said: str) -> None:
    """A pooler that demands TLS is a configuration error naming sslmode (was transient:
    exit 3, restarted for ever); TLS trouble on the wire stays an outage."""
    error = classify(psycopg.OperationalError(f"connection failed: {said}"), "connect to db:5432")
    assert type(error) is SAID_WHILE_CONNECTING[said], error
    if isinstance(error, ConfigError):
        assert "sslmode" in str(error)


def _unit_prevents_restart_on(code: int) -> bool:
    unit = (REPO / "systemd" / "syncd.service").read_text(encoding="utf-8")
    found = re.search(r"^RestartPreventExitStatus=(.*)$", unit, re.MULTILINE)
    return found is not None and str(int(code)) in found.group(1).split()


@pytest.mark.parametrize("case", ["other CA", "wrong host", "no TLS", "wrong password"])
def test_the_daemon_exits_with_that_code_which_the_unit_does_not_restart(
    servers: Servers, database: str, tmp_path: Path, case: str
) -> None:
    """`syncd run` (the unit's command) in each case exits at once with the command's code,
    2 or 4, both in the unit's RestartPreventExitStatus (was exit 3, restarted for ever);
    nothing ready, no password in the output."""
    ca, other = str(servers.pki.ca), str(servers.pki.other_ca)
    dsn, expected = {
        "other CA": (
            url(servers.tls, database, sslmode="verify-full", sslrootcert=other),
            ExitCode.CONFIG,
        ),
        "wrong host": (
            url(
                servers.tls,
                database,
                host="db.wrong.invalid",
                hostaddr="127.0.0.1",
                sslmode="verify-full",
                sslrootcert=ca,
            ),
            ExitCode.CONFIG,
        ),
        "no TLS": (url(servers.plain, "postgres", sslmode="require"), ExitCode.CONFIG),
        "wrong password": (
            url(servers.tls, database, password=WRONG, sslmode="verify-full", sslrootcert=ca),
            ExitCode.FATAL_DB,
        ),
    }[case]
    root = tmp_path / "courses"
    make_course(root, "c1")
    began = time.monotonic()
    done = run_syncd("run", "--root", str(root), "--connect-timeout", "10", dsn=dsn, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode == expected, output
    assert time.monotonic() - began < 10, output  # at once: no connect timeout, no retries
    assert '"daemon ready"' not in output and '"database unavailable"' not in output, output
    assert _unit_prevents_restart_on(expected)
    assert_no_secret(output)
