"""The embedded default: with no DATABASE_URL, a local PostgreSQL from the pgserver
wheel (real server binaries) in a data directory of ours. It keeps running after syncd
exits so that psql can look at what was written; ``syncd embedded-stop`` stops it.

As root, pgserver runs the server as a system user ``pgserver`` (PostgreSQL refuses to run
as root) and, so that this user can reach the data directory and the binaries, makes every
folder above them readable by everyone (``chmod g+rx,o+rx`` up to ``/``, ``/root``
included). syncd does not let it change a folder it does not own: it creates the user
itself (a system account without a shell or home), creates the folders of the data
directory it is missing (mode 0755: those are syncd's), and refuses with a ConfigError when
a folder that was already there above the data directory is closed to others. Binaries
installed below such a folder (a virtualenv in ``/root``) are copied once beside the data
directory, where the user can reach them, and the server runs from that copy."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from syncd.errors import ConfigError

SYSTEM_USER = "pgserver"  # the name pgserver runs the server as when started by root
OPEN = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH  # what pgserver would add
SOCKET_PATH_MAX = 108  # Linux's sun_path, with its NUL


@dataclass(frozen=True)
class EmbeddedServer:
    data_dir: Path
    dsn: str
    psql_command: str


def _pgserver() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        try:
            import pgserver
        except ImportError as exc:  # pragma: no cover - pgserver is a dependency
            raise ConfigError(f"embedded PostgreSQL needs the pgserver package: {exc}") from exc
    return pgserver


def installed_bin() -> Path:
    """The PostgreSQL binaries inside the pgserver wheel."""
    return Path(_pgserver().__file__).parent / "pginstall" / "bin"


def closed_folders(path: Path) -> list[Path]:
    """The folders above ``path`` that pgserver, run as root, would open to everyone (of
    those already there: syncd creates the others)."""
    return [p for p in path.parents if p.exists() and p.stat().st_mode & OPEN != OPEN]


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _make_folders(path: Path) -> None:
    """``path`` and its missing parents, created by syncd and so open to the server's user
    (whatever the umask); folders already there are left as they are."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        folder.chmod(0o755)


def _ensure_system_user() -> None:
    import pwd

    try:
        pwd.getpwnam(SYSTEM_USER)
        return
    except KeyError:
        pass
    shell = "/usr/sbin/nologin" if Path("/usr/sbin/nologin").exists() else "/bin/false"
    command = ["useradd", "--system", "--no-create-home", "--shell", shell, SYSTEM_USER]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ConfigError(
            f"as root, the embedded PostgreSQL runs as the system user {SYSTEM_USER!r}, and"
            f" `{' '.join(command)}` failed ({exc}): create that user, or set DATABASE_URL"
        ) from exc


def _reachable_bin(data_dir: Path) -> Path:
    """The binaries the server's user can reach without a folder being opened: the wheel's
    own, or a copy of them beside the data directory (made once, atomically; with the
    wheel's vendored libraries, which the binaries find at ``$ORIGIN/../../../pgserver.libs``)."""
    bin_dir = installed_bin()
    if not closed_folders(bin_dir):
        return bin_dir
    pginstall = bin_dir.parent
    copy = data_dir.parent / f"pgserver-{metadata.version('pgserver')}"
    if not (copy / "pgserver" / "pginstall" / "bin" / "postgres").exists():
        partial = data_dir.parent / f".{copy.name}.{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(pginstall, partial / "pgserver" / "pginstall", symlinks=True)
        libs = pginstall.parent.parent / "pgserver.libs"
        if libs.is_dir():
            shutil.copytree(libs, partial / "pgserver.libs", symlinks=True)
        for folder in (partial, partial / "pgserver"):
            folder.chmod(0o755)
        try:
            partial.rename(copy)
        except OSError:  # another syncd made it meanwhile
            shutil.rmtree(partial, ignore_errors=True)
    return copy / "pgserver" / "pginstall" / "bin"


def _prepare_as_root(data_dir: Path) -> Path:
    """Check and prepare what pgserver would otherwise change (module docstring); returns
    the binaries to run the server from."""
    pgserver = _pgserver()
    closed = closed_folders(data_dir)
    if len(os.fsencode(data_dir / ".s.PGSQL.5432")) >= SOCKET_PATH_MAX:
        # too long a path for a socket: pgserver would put it in the runtime folder instead
        closed += closed_folders(pgserver.PostgresServer.runtime_path / "socket")
    if closed:
        folders = ", ".join(f"{f} (mode {stat.S_IMODE(f.stat().st_mode):04o})" for f in closed)
        raise ConfigError(
            f"as root, the embedded PostgreSQL runs as the system user {SYSTEM_USER!r}, which"
            f" must reach the data directory {data_dir}; syncd will not open {folders} to"
            " everyone (pgserver would chmod g+rx,o+rx every folder above it): use a"
            " --data-dir (SYNCD_DATA_DIR) under folders others can already traverse (as root"
            " the default is /var/lib/syncd/postgres), open the folder yourself, or set"
            " DATABASE_URL"
        )
    _make_folders(data_dir)
    _ensure_system_user()
    bin_dir = _reachable_bin(data_dir)
    # pgserver reads its binary folder from these two module globals at each call
    pgserver.postgres_server.POSTGRES_BIN_PATH = bin_dir
    pgserver._commands.POSTGRES_BIN_PATH = bin_dir
    return bin_dir


def _server(data_dir: Path, cleanup_mode: str | None) -> tuple[Any, Path]:
    """pgserver's handle on the server of ``data_dir`` (started if it is not running) and
    the binaries it runs from."""
    data_dir = data_dir.expanduser().resolve()  # as pgserver sees it
    if is_root():
        bin_dir = _prepare_as_root(data_dir)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        bin_dir = installed_bin()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _pgserver().get_server(data_dir, cleanup_mode=cleanup_mode), bin_dir


def start(data_dir: Path) -> EmbeddedServer:
    """Start (or reuse) the server in ``data_dir``; returns how to reach it."""
    try:
        server, bin_dir = _server(data_dir, None)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"could not start the embedded PostgreSQL in {data_dir}: {exc}") from exc
    dsn = server.get_uri()
    return EmbeddedServer(data_dir, dsn, f"{bin_dir / 'psql'} '{dsn}'")


def stop(data_dir: Path) -> bool:
    """Stop the server of ``data_dir`` if one runs there."""
    if not (data_dir / "postmaster.pid").exists():
        return False
    server, _ = _server(data_dir, "stop")
    server.cleanup_mode = "stop"  # a handle this process opened before (start) is reused
    server.cleanup()
    return True
