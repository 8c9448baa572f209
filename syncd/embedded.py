"""The embedded default: with no DATABASE_URL, a local PostgreSQL from the pgserver
wheel (real server binaries) in a data directory of ours. It keeps running after syncd
exits so that psql can look at what was written; ``syncd embedded-stop`` stops it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from syncd.errors import ConfigError


@dataclass(frozen=True)
class EmbeddedServer:
    data_dir: Path
    dsn: str
    psql_command: str


def start(data_dir: Path) -> EmbeddedServer:
    """Start (or reuse) the server in ``data_dir``; returns how to reach it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        try:
            import pgserver
        except ImportError as exc:  # pragma: no cover - pgserver is a dependency
            raise ConfigError(f"embedded PostgreSQL needs the pgserver package: {exc}") from exc
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            server = pgserver.get_server(data_dir, cleanup_mode=None)
        except Exception as exc:
            raise ConfigError(
                f"could not start the embedded PostgreSQL in {data_dir}: {exc}"
            ) from exc
    dsn = server.get_uri()
    psql = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    return EmbeddedServer(data_dir, dsn, f"{psql} '{dsn}'")


def stop(data_dir: Path) -> bool:
    """Stop the server of ``data_dir`` if one runs there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        if not (data_dir / "postmaster.pid").exists():
            return False
        server = pgserver.get_server(data_dir, cleanup_mode="stop")
        server.cleanup()
        return True
