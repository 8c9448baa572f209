"""A throwaway PostgreSQL cluster from a given set of server binaries, with a bootstrap
superuser of our choosing, listening on a Unix socket (and, when asked, on TCP with TLS).

The suite's main server comes from pgserver, whose bootstrap superuser is ``postgres``; the
Supabase-shaped databases need ``postgres`` to be an ordinary role (the bootstrap superuser
can never lose SUPERUSER), so they get clusters of their own, initialised with
``supabase_admin`` as the superuser. initdb and postgres refuse to run as root: as root the
cluster runs as an unprivileged system user (pgserver's, created when missing).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import make_conninfo

SERVICE_USER = "pgserver"
DEBIAN_PG15 = Path("/usr/lib/postgresql/15/bin")


def pgserver_bin() -> Path:
    from pgserver._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@dataclass
class Cluster:
    bin_dir: Path
    base: Path
    superuser: str
    version: int
    port: int = 5432  # the Unix socket's number, and the TCP port when it listens on one

    @property
    def socket_dir(self) -> Path:
        return self.base / "run"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    def dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        return make_conninfo(
            host=str(self.socket_dir), port=self.port, dbname=dbname, user=user or self.superuser
        )

    def stop(self) -> None:
        _run(self, [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "stop"])
        shutil.rmtree(self.base, ignore_errors=True)


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    from pgserver.utils import ensure_user_exists

    ensure_user_exists(SERVICE_USER)
    return SERVICE_USER


def _run(cluster: Cluster, argv: list[str]) -> None:
    done = subprocess.run(
        argv, user=_run_as(), capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stdout}{done.stderr}")


def init_cluster(bin_dir: Path, superuser: str) -> Cluster:
    """initdb only: the caller may put files in its data directory, then ``start`` it."""
    base = Path(tempfile.mkdtemp(prefix="syncd-test-cluster-"))
    os.chmod(base, 0o755)
    version_text = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    version = int(version_text.split()[-1].split(".")[0])
    cluster = Cluster(bin_dir, base, superuser, version)
    cluster.socket_dir.mkdir()
    user = _run_as()
    if user is not None:
        shutil.chown(base, user)
        shutil.chown(cluster.socket_dir, user)
    _run(
        cluster,
        [
            str(bin_dir / "initdb"),
            "-D",
            str(cluster.data_dir),
            "-U",
            superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",  # a throwaway cluster: no fsync of its files
        ],
    )
    return cluster


def install(cluster: Cluster, name: str, content: bytes, mode: int = 0o600) -> Path:
    """A file in the data directory (a key, a certificate, pg_hba.conf), owned by the user
    the server runs as: PostgreSQL refuses a private key that others can read."""
    path = cluster.data_dir / name
    path.write_bytes(content)
    os.chmod(path, mode)
    user = _run_as()
    if user is not None:
        shutil.chown(path, user)
    return path


def start(cluster: Cluster, listen: str = "", port: int = 5432, **settings: str) -> None:
    """Start an initialised cluster: its Unix socket, TCP on ``listen`` (none by default)
    and ``port``, and server ``settings`` (e.g. ``ssl="on"``)."""
    cluster.port = port
    extra = "".join(f" -c {name}={value}" for name, value in settings.items())
    options = (
        f"-k {cluster.socket_dir} -c listen_addresses='{listen}' -p {port}"
        f" -c max_connections=200{extra}"
    )
    _run(
        cluster,
        [
            str(cluster.bin_dir / "pg_ctl"),
            "-D",
            str(cluster.data_dir),
            "-l",
            str(cluster.base / "server.log"),
            "-o",
            options,
            "-w",
            "start",
        ],
    )


def start_cluster(bin_dir: Path, superuser: str) -> Cluster:
    """initdb + start (Unix socket only); the caller stops it with ``Cluster.stop``."""
    cluster = init_cluster(bin_dir, superuser)
    start(cluster)
    return cluster
