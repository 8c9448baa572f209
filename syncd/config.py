"""Settings: built once from environment + flags, validated, frozen. Secrets stay out of
every repr and every message (``redact``)."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import platformdirs
import psycopg
from psycopg.conninfo import conninfo_to_dict

from syncd.errors import ConfigError
from syncd.layout import MIND_SLUG

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


ROOT_DATA_DIR = Path("/var/lib/syncd/postgres")


def default_data_dir() -> Path:
    """The user's data folder; as root, /var/lib/syncd (whose parents every user can
    traverse, as the embedded server's own user must: see embedded.py), unless a database
    is already in root's data folder from before."""
    own = Path(platformdirs.user_data_dir("syncd")) / "postgres"
    if hasattr(os, "geteuid") and os.geteuid() == 0 and not (own / "PG_VERSION").exists():
        return ROOT_DATA_DIR
    return own


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
    no_embedded: bool = False  # never start the embedded server: no DATABASE_URL is exit 2
    # The settings that shape rows (source_settings.ROW_SETTINGS) given by a flag or an
    # environment variable; the others are the source's recorded ones, when it has any.
    explicit: frozenset[str] = frozenset()
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


def check_database(settings: Settings) -> None:
    """With --no-embedded, a command that needs a database and has no DATABASE_URL stops
    here (exit 2) instead of starting the embedded server and answering for that one."""
    if settings.no_embedded and settings.database_url is None:
        raise ConfigError(
            "DATABASE_URL is not set in syncd's environment, and --no-embedded"
            " (SYNCD_NO_EMBEDDED) forbids the embedded database: export DATABASE_URL (a shell"
            " variable assigned without `export` is not passed to the programs it starts)"
        )


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


# --------------------------------------------------------------------------- DSNs

URI_PREFIXES = ("postgresql://", "postgres://")  # what libpq reads as a URL; else key=value
_KEY_VALUE = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*=")
_SCHEME = re.compile(r"\s*[A-Za-z][A-Za-z0-9+.-]*:")
_SCHEME_SLASHES = re.compile(r"\s*(?:[A-Za-z][A-Za-z0-9+.-]*:?)?//")
# key=value: a quoted value (to its closing quote, or to the end when unclosed), or an
# unquoted one up to the next ` keyword=` (so that `password=two words` hides both)
_KV_PASSWORD = re.compile(
    r"(?P<key>password\s*=\s*)(?P<value>'(?:[^'\\]|\\.)*(?:'|$)|.*?(?=\s+\w+\s*=|\s*$))",
    re.IGNORECASE | re.DOTALL,
)
_QUERY_PASSWORD = re.compile(r"(?P<key>[?&][A-Za-z_]*password=)(?P<value>[^&#]*)", re.IGNORECASE)


def _is_key_value(dsn: str) -> bool:
    return not dsn.lstrip().startswith(URI_PREFIXES) and _KEY_VALUE.match(dsn) is not None


def _url_password_span(dsn: str) -> tuple[int, int] | None:
    """Where the password of ``[scheme:][//]user:password@host...`` is, for any shape a
    person may type (``postgresql//``, ``//``, ``postgresql:``, none, unclosed ``[``): from
    the first ``:`` of the user info to its last ``@`` before the path, so that a password
    holding ``@``, ``/`` or ``:`` is covered whole."""
    slashes = _SCHEME_SLASHES.match(dsn)
    if slashes:
        starts = [slashes.end()]
    else:
        scheme = _SCHEME.match(dsn)
        starts = [scheme.end(), 0] if scheme else [0]
    for start in starts:
        first_at = dsn.find("@", start)
        if first_at < 0:
            return None
        path = dsn.find("/", first_at)
        at = dsn.rfind("@", start, len(dsn) if path < 0 else path)
        user, colon, _ = dsn[start:at].partition(":")
        if colon and not any(c in user for c in "/?#[]"):
            return start + len(user) + 1, at
    return None


def dsn_secrets(dsn: str) -> list[str]:
    """Every form of the password inside a DSN of any shape (URL, key=value, or a
    malformed one), longest first: raw, percent-decoded, unquoted."""
    found: list[str] = []
    if _is_key_value(dsn):
        for match in _KV_PASSWORD.finditer(dsn):
            value = match.group("value")
            if value.startswith("'"):
                found += [value, value.strip("'"), value.strip("'").replace("\\'", "'")]
            else:  # unquoted: libpq reads its first word as the password, then the rest
                found += [value, *value.split()]
    else:
        span = _url_password_span(dsn)
        if span:
            found.append(dsn[span[0] : span[1]])
        for match in _QUERY_PASSWORD.finditer(dsn):
            found.append(match.group("value"))
    found += [unquote(s) for s in found]
    return sorted({s for s in found if s.strip()}, key=len, reverse=True)


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ***, safe to log, whatever its shape."""
    if _is_key_value(dsn):
        text = _KV_PASSWORD.sub(r"\g<key>***", dsn)
    else:
        span = _url_password_span(dsn)
        text = dsn if not span or span[0] == span[1] else f"{dsn[: span[0]]}***{dsn[span[1] :]}"
        text = _QUERY_PASSWORD.sub(r"\g<key>***", text)
    return redact(text, dsn_secrets(dsn))


def database_label(dsn: str) -> str:
    """``user@host:port/dbname`` of a DSN, never its password (for messages that say which
    database a command answered for)."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error:
        return redact_dsn(dsn)
    user = f"{info['user']}@" if info.get("user") else ""
    host = str(info.get("host") or info.get("hostaddr") or "localhost")
    return redact(
        f"{user}{host}:{info.get('port') or 5432}/{info.get('dbname') or ''}", dsn_secrets(dsn)
    )


def redact(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):  # "ab@cd" before "ab"
        if secret:
            text = text.replace(secret, "***")
    return text


# libpq's accepted values (it compares them case-sensitively, except the TLS versions)
_CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "sslcertmode": ("disable", "allow", "require"),
    "sslnegotiation": ("postgres", "direct"),
    "load_balance_hosts": ("disable", "random"),
    "target_session_attrs": (
        "any",
        "read-write",
        "read-only",
        "primary",
        "standby",
        "prefer-standby",
    ),
}
_TLS_VERSIONS = ("", "tlsv1", "tlsv1.1", "tlsv1.2", "tlsv1.3")
_PORT = re.compile(r"\s*\+?\d+\s*")
_LIBPQ_QUOTED = re.compile(r'"([^"]*)"')


def _libpq_token(token: str, dsn: str, shown: str) -> str:
    """A string libpq's message quotes: the DSN whole (shown redacted), a single character
    or a word the redacted DSN shows too (an option's name); else hidden."""
    if token in (dsn, dsn.strip()):
        return f'"{shown}"'
    return f'"{token}"' if len(token) <= 1 or token in shown else "(hidden)"


def check_database_url(dsn: str) -> None:
    """Refuse, before any connection, a DATABASE_URL that libpq would reject (or would
    misread): a ConfigError that says what is wrong and shows the DSN only redacted."""
    shown = redact_dsn(dsn)
    secrets = dsn_secrets(dsn)

    def bad(what: str) -> ConfigError:
        where = "" if shown in what else f" (DATABASE_URL={shown})"
        return ConfigError(redact(f"DATABASE_URL {what}{where}", secrets))

    def quoted(value: str) -> str:  # a value of the DSN, only if its redacted form shows it
        return repr(value) if value in shown else "(hidden)"

    if not dsn.lstrip().startswith(URI_PREFIXES) and not _KEY_VALUE.match(dsn):
        raise bad(
            "is neither a URL starting with postgresql:// (or postgres://) nor key=value"
            " pairs (host=... dbname=...)"
        )
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = _LIBPQ_QUOTED.sub(lambda m: _libpq_token(m.group(1), dsn, shown), reason)
        raise bad(f"cannot be read: {reason}") from None
    ports = str(info.get("port") or "").split(",")
    for port in ports:
        if port.strip() and (not _PORT.fullmatch(port) or not 1 <= int(port) <= 65535):
            raise bad(f"has port {quoted(port.strip())}: a port is a number from 1 to 65535")
    hosts = str(info.get("host") or "").split(",")
    if any("@" in host for host in hosts):  # libpq ended the password at its first @
        raise bad("has an @ in its host: write an @ of the password as %40")
    if len(ports) > 1 and len(ports) != len(hosts):
        raise bad(f"has {len(ports)} ports for {len(hosts)} hosts: give one, or one per host")
    for address in filter(None, (a.strip() for a in str(info.get("hostaddr") or "").split(","))):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise bad(f"has hostaddr {quoted(address)}: hostaddr is a numeric IP address") from None
    for key, choices in _CHOICES.items():
        value = info.get(key)
        if value is not None and value not in choices:
            raise bad(f"has {key} {quoted(str(value))}: it is one of {', '.join(choices)}")
    for key in ("ssl_min_protocol_version", "ssl_max_protocol_version"):
        value = info.get(key)
        if value is not None and str(value).lower() not in _TLS_VERSIONS:
            raise bad(f"has {key} {quoted(str(value))}: it is one of TLSv1.2, TLSv1.3")


def check(settings: Settings) -> Settings:
    if settings.quiet_ms < 0 or settings.max_delay_ms < settings.quiet_ms:
        raise ConfigError("--max-delay-ms must be at least --quiet-ms, both non-negative")
    if not 1 <= settings.workers <= 64:
        raise ConfigError("--workers must be between 1 and 64")
    if settings.auth_grace_s <= 0:
        raise ConfigError("--auth-grace (SYNCD_AUTH_GRACE) must be a positive number of seconds")
    if settings.max_file_bytes <= 0:
        raise ConfigError("--max-file-bytes must be positive")
    if settings.watch_retry_s <= 0:
        raise ConfigError("--watch-retry must be positive")
    if settings.log_format not in ("auto", "json", "console"):
        raise ConfigError("--log-format must be auto, json or console")
    if settings.creator_mind is not None and not MIND_SLUG.match(settings.creator_mind):
        raise ConfigError("SYNCD_CREATOR_MIND must be a mind slug (a-z, 0-9, _ and -)")
    if settings.database_url is not None:
        check_database_url(settings.database_url.reveal())
    return settings


def environ() -> Mapping[str, str]:
    return os.environ
