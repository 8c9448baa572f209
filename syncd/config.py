"""Settings: built once from environment + flags, validated, frozen. Secrets stay out of
every repr and every message (``redact``)."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import platformdirs

from syncd.errors import ConfigError
from syncd.parser import MIND_SLUG

DEFAULT_ROOT = Path("outputs/courses")
FALSE_WORDS = ("false", "0", "no", "off")
TRUE_WORDS = ("true", "1", "yes", "on", "")


class Secret:
    """A string that never shows itself in a repr, str or f-string."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def host_name() -> str:
    return socket.gethostname()


def default_source(root: Path) -> str:
    """One source per host and root: ``<host>:<absolute root>``."""
    return f"{host_name()}:{root.absolute()}"


CONTAINER_MARKERS = (Path("/run/.containerenv"), Path("/.dockerenv"))  # podman, Docker
CONTAINER_ID_HOSTNAME = re.compile(r"[0-9a-f]{12}")  # Docker's and podman's default


def host_name_changes_with_container(env: Mapping[str, str] | None = None) -> bool:
    """Is the host name one that a recreated container does not keep: a Docker or podman
    container named by its id, or a Kubernetes pod? (A container with a host name of its
    own, like a long-lived development box, keeps it.)"""
    env = os.environ if env is None else env
    if "KUBERNETES_SERVICE_HOST" in env:
        return True
    in_container = any(marker.exists() for marker in CONTAINER_MARKERS)
    return in_container and CONTAINER_ID_HOSTNAME.fullmatch(host_name()) is not None


def check_source(settings: Settings, env: Mapping[str, str]) -> None:
    """A default source (``<host>:<root>``) would change with every recreated container,
    and the courses it synced before would then be refused as another source's (nothing
    written, no error); and every container of one host on its network would share one
    (``<host>:/courses``) and archive each other's courses. The image sets
    SYNCD_SOURCE_REQUIRED=1; there, and where the host name changes with the container, a
    source must be named."""
    required = parse_bool("SYNCD_SOURCE_REQUIRED", env.get("SYNCD_SOURCE_REQUIRED", "false"))
    if not settings.source and (required or host_name_changes_with_container(env)):
        raise ConfigError(
            f"in a container the default source name ({settings.source_name!r}) changes "
            "whenever the container is recreated (the courses synced before would then be "
            "refused as another source's), or is shared by every container of the host: set "
            "SYNCD_SOURCE (--source) to a name of this tree's own that stays"
        )


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("syncd")) / "postgres"


@dataclass(frozen=True)
class Settings:
    root: Path = DEFAULT_ROOT
    database_url: Secret | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    creator_mind: str | None = None
    persist: bool = True
    migrate: bool = False
    max_file_bytes: int = 2 * 1024 * 1024
    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    connect_timeout_s: int = 5
    workers: int = 4  # courses synced at once (events and full reconciles); connections
    statement_timeout_ms: int = 30_000
    follow_symlinks: bool = False  # follow every symbolic link under the root
    source: str = ""  # this syncd's name in the database; "" = default_source(root)
    # daemon
    quiet_ms: int = 500
    max_delay_ms: int = 5_000
    reconcile_interval_s: float = 600.0
    polling: bool = False
    shutdown_timeout_s: float = 20.0
    breaker_failures: int = 3
    breaker_reset_s: float = 5.0
    heartbeat_s: float = 30.0
    auth_grace_s: float = 300.0  # a password the database rejects this long ends the daemon
    watch_retry_s: float = 30.0  # a folder the inotify watch limit left unwatched: retried
    # health (`syncd health`, the image's HEALTHCHECK)
    health_file: Path | None = None  # None: health.json beside the data dir
    stalled_after_s: float = 30.0  # state not written, or writer/watcher stuck, this long
    unreachable_after_s: float = 60.0  # database unreachable (breaker not closed) this long

    @property
    def health_path(self) -> Path:
        return self.health_file or self.data_dir.parent / "health.json"

    @property
    def source_name(self) -> str:
        return self.source or default_source(self.root)

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    def secrets(self) -> list[str]:
        """Every secret value, so that the log redactor can scrub them anywhere."""
        found: list[str] = []
        if self.database_url is not None:
            found.extend(dsn_secrets(self.database_url.reveal()))
        return found


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in FALSE_WORDS:
        return False
    if lowered in TRUE_WORDS:
        return True
    raise ConfigError(f"{name}: expected true/false, got {value!r}")


def persist_from_env(env: Mapping[str, str]) -> bool:
    """CREATOR_OS_DB_PERSIST: unset or true writes; false/0/no writes nothing."""
    raw = env.get("CREATOR_OS_DB_PERSIST")
    return True if raw is None else parse_bool("CREATOR_OS_DB_PERSIST", raw)


def database_url_from_env(env: Mapping[str, str]) -> Secret | None:
    raw = env.get("DATABASE_URL", "").strip()
    return Secret(raw) if raw else None


def dsn_secrets(dsn: str) -> list[str]:
    """Passwords inside a URL DSN or a key=value DSN."""
    found = []
    if "://" in dsn:
        try:
            password = urlsplit(dsn).password
        except ValueError:
            password = None
        if password:
            found.append(password)
            found.append(unquote(password))
    for match in re.finditer(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", dsn):
        found.append(match.group(1).strip("'"))
    return [s for s in dict.fromkeys(found) if s]


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ***, safe to log."""
    text = dsn
    if "://" in dsn:
        try:
            parts = urlsplit(dsn)
            if parts.password:
                netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
                text = urlunsplit(parts._replace(netloc=netloc))
        except ValueError:
            text = re.sub(r"//[^@/]*@", "//***@", dsn)
    return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text)


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def check(settings: Settings) -> Settings:
    if settings.quiet_ms < 0 or settings.max_delay_ms < settings.quiet_ms:
        raise ConfigError("--max-delay-ms must be at least --quiet-ms, both non-negative")
    if not 1 <= settings.workers <= 64:
        raise ConfigError("--workers must be between 1 and 64")
    if settings.max_file_bytes <= 0:
        raise ConfigError("--max-file-bytes must be positive")
    if settings.watch_retry_s <= 0:
        raise ConfigError("--watch-retry must be positive")
    if settings.log_format not in ("auto", "json", "console"):
        raise ConfigError("--log-format must be auto, json or console")
    if settings.creator_mind is not None and not MIND_SLUG.match(settings.creator_mind):
        raise ConfigError("SYNCD_CREATOR_MIND must be a mind slug (a-z, 0-9, _ and -)")
    return settings


def environ() -> Mapping[str, str]:
    return os.environ
