"""Settings: every setting declared once (``Settings``, read by settings.py for the flags,
the values and the docs table), built once per command from flags + environment
(``build``), validated (``check``), frozen. Secrets stay out of every repr and every
message (``Secret``; dsn.py for DATABASE_URL)."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from syncd.dsn import (  # DSN reading and redaction, named here too for their callers
    check_database_url,
    database_label,
    dsn_secrets,
    redact,
    redact_dsn,
)
from syncd.errors import ConfigError
from syncd.history import Retention
from syncd.layout import MIND_SLUG
from syncd.settings import (
    ALL,
    DATABASE,
    MIGRATING,
    ROWS,
    RUN,
    SOURCE,
    Setting,
    declared,
    given,
    parse_bool,
    setting,
)

DEFAULT_ROOT = Path("outputs/courses")


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


STATEMENT_TIMEOUT_NOTES = (
    ": every transaction syncd runs (a course's sync, the reconcile's reads, `verify`,"
    " `report`, each migration) begins with `SET LOCAL statement_timeout` to this and"
    " `lock_timeout` to a third of it (at most 10 s), so syncd's value applies to all its"
    " statements and the role's `statement_timeout` (Supabase sets one per role) to none of"
    " them, and nothing is left on the server connection when the transaction ends: a"
    " pooler's next client there gets the role's own settings. Per transaction and not per"
    " session because a transaction pooler (Supabase's port 6543) gives each transaction"
    " whichever server connection is free, where a session `SET` would be missing, or would"
    " leak to another client. The lock timeout makes a row the app holds locked fail that one"
    " course fast (`course failed`, SQLSTATE 55P03) instead of holding a worker. A client-side"
    " deadline of twice this plus the connect timeout cuts a call whose network path went"
    " silent. The only statement outside a transaction is the pool's health check (an empty"
    " query), under the role's timeout"
)


def _secret(raw: str) -> Secret:
    return Secret(raw.strip())


@dataclass(frozen=True)
class Settings:
    """Every setting, declared once: the field gives its name, type and default, the
    ``setting`` beside it the rest (settings.py). ``--help``, each command's flags, the values
    it runs with and docs/configuration.md's table all come from here."""

    database_url: Secret | None = setting(
        env="DATABASE_URL",
        commands=DATABASE,
        parse=_secret,
        shown_default="(embedded)",
        help="PostgreSQL DSN (a `postgresql://` URL or `key=value` pairs)",
        notes="Never logged: passwords are redacted from every log line and message. Checked"
        " before any connection: one libpq would refuse (or misread) exits 2. TLS is libpq's:"
        ' `sslmode=verify-full&sslrootcert=<CA file>` checks who answers (see "Deploying on'
        ' Supabase"); a TLS set-up that cannot work exits 2 at once, naming the setting',
    )
    persist: bool = setting(
        True,
        env="CREATOR_OS_DB_PERSIST",
        commands=RUN,
        help="kill switch: `false`/`0`/`no` = log what would be written, write nothing",
    )
    root: Path = setting(
        DEFAULT_ROOT,
        env="SYNCD_ROOT",
        flag="--root",
        commands=SOURCE | {"history"},
        help="the course tree",
    )
    data_dir: Path = setting(
        factory=default_data_dir,
        env="SYNCD_DATA_DIR",
        flag="--data-dir",
        commands=ALL,
        shown_default="`~/.local/share/syncd/postgres`; as root `/var/lib/syncd/postgres`",
        help="embedded PostgreSQL data directory",
        notes='(as root: see "Two commands")',
    )
    migrate: bool = setting(
        False,
        env="SYNCD_MIGRATE",
        flag="--migrate",
        commands=MIGRATING,
        help="apply pending migrations first (always on for the embedded database)",
    )
    creator_mind: str | None = setting(
        None,
        env="SYNCD_CREATOR_MIND",
        flag="--creator-mind",
        commands=ROWS,
        recorded=True,
        help="slug of the mind that owns synced courses (a brief's creator_mind: overrides it);"
        " empty: none",
    )
    no_embedded: bool = setting(
        False,
        env="SYNCD_NO_EMBEDDED",
        flag="--no-embedded",
        commands=DATABASE,
        help="never start the embedded PostgreSQL: without DATABASE_URL in the environment, exit 2",
        notes="saying so (a variable assigned without `export` never reaches syncd). Every"
        ' command of "Deploying on Supabase" carries it',
    )
    max_file_bytes: int = setting(
        2 * 1024 * 1024,
        env="SYNCD_MAX_FILE_BYTES",
        flag="--max-file-bytes",
        unit="bytes",
        commands=ROWS,
        recorded=True,
        help="files larger than this are rejected",
    )
    log_format: str = setting(
        "auto",
        env="SYNCD_LOG_FORMAT",
        flag="--log-format",
        choices=("auto", "json", "console"),
        commands=ALL,
        help="auto (console on a terminal, JSON lines otherwise), json or console",
    )
    log_level: str = setting(
        "info",
        env="SYNCD_LOG_LEVEL",
        flag="--log-level",
        commands=ALL,
        help="debug, info, warning or error",
    )
    connect_timeout_s: int = setting(
        5,
        env="SYNCD_CONNECT_TIMEOUT",
        flag="--connect-timeout",
        unit="seconds",
        commands=DATABASE,
        help="how long to wait for a connection",
    )
    workers: int = setting(
        4,
        env="SYNCD_WORKERS",
        flag="--workers",
        commands=RUN,
        help="courses synced at once, by live events and full reconciles alike (one database"
        " connection each)",
        notes="; it is also the most database connections the daemon holds (sizing for a"
        " plan's limit: Deploying on Supabase, step 5)",
    )
    history_keep: str = setting(
        "all",
        env="SYNCD_HISTORY_KEEP",
        flag="--history-keep",
        commands=RUN,
        help="versions of each contents row kept in its history (public.content_versions):"
        " all, the last N (e.g. 10), or those of the last N days (e.g. 30d; the latest always"
        " stays); applied as rows are written",
    )
    statement_timeout_ms: int = setting(
        30_000,
        env="SYNCD_STATEMENT_TIMEOUT_MS",
        flag="--statement-timeout-ms",
        unit="ms",
        commands=DATABASE,
        help="server-side statement timeout, per transaction",
        notes=STATEMENT_TIMEOUT_NOTES,
    )
    quiet_ms: int = setting(
        500,
        env="SYNCD_QUIET_MS",
        flag="--quiet-ms",
        unit="ms",
        commands=RUN,
        help="debounce quiet period with --polling: a course syncs after this long without"
        " events (inotify syncs a file when its writer closes it)",
        notes='(see "When a save lands")',
    )
    max_delay_ms: int = setting(
        5_000,
        env="SYNCD_MAX_DELAY_MS",
        flag="--max-delay-ms",
        unit="ms",
        commands=RUN,
        help="debounce maximum delay: a course syncs at the latest this long after its first"
        " pending event",
    )
    reconcile_interval_s: float = setting(
        600.0,
        env="SYNCD_RECONCILE_INTERVAL",
        flag="--reconcile-interval",
        unit="seconds",
        commands=RUN,
        help="time between safety reconciles, 0 = off",
    )
    polling: bool = setting(
        False,
        env="SYNCD_POLLING",
        flag="--polling",
        commands=RUN,
        help="use the polling observer (network and Docker Desktop mounts)",
    )
    shutdown_timeout_s: float = setting(
        20.0,
        env="SYNCD_SHUTDOWN_TIMEOUT",
        flag="--shutdown-timeout",
        unit="seconds",
        commands=RUN,
        help="on SIGTERM, for the syncs under way and the flush of pending courses together (a"
        " database call still running then is cut)",
        notes="; closing takes at most 5 s more, so the stop fits the unit's"
        " `TimeoutStopSec=45` with room",
    )
    breaker_failures: int = setting(
        3,
        env="SYNCD_BREAKER_FAILURES",
        flag="--breaker-failures",
        commands=RUN,
        help="consecutive failed attempts (each retry counts) that open the circuit breaker"
        " and end the retries",
    )
    breaker_reset_s: float = setting(
        5.0,
        env="SYNCD_BREAKER_RESET",
        flag="--breaker-reset",
        unit="seconds",
        commands=RUN,
        help="how long the breaker stays open before a trial call",
    )
    heartbeat_s: float = setting(
        30.0,
        env="SYNCD_HEARTBEAT",
        flag="--heartbeat",
        unit="seconds",
        commands=RUN,
        help="time between heartbeat log lines",
    )
    auth_grace_s: float = setting(  # a password the database rejects this long ends the daemon
        300.0,
        env="SYNCD_AUTH_GRACE",
        flag="--auth-grace",
        unit="seconds",
        commands=RUN,
        help="how long the database may reject the password (rotated while running) before"
        " the daemon exits 4",
        notes='(see "When something goes wrong")',
    )
    watch_retry_s: float = setting(
        30.0,
        env="SYNCD_WATCH_RETRY",
        flag="--watch-retry",
        unit="seconds",
        commands=RUN,
        help="time between tries to watch a folder the inotify watch limit left unwatched (it"
        " is polled every second meanwhile)",
    )
    source: str = setting(  # "" = default_source(root)
        "",
        env="SYNCD_SOURCE",
        flag="--source",
        commands=SOURCE,
        shown_default="`<host name>:<absolute root>`",
        help="this syncd's name in the database; a reconcile archives only what its own"
        " source synced",
        notes="(required in a container: see Docker)",
    )
    follow_symlinks: bool = setting(
        False,
        env="SYNCD_FOLLOW_SYMLINKS",
        flag="--follow-symlinks",
        commands=ROWS,
        recorded=True,
        help="follow symbolic links under the root (course folders, folders and files),"
        " wherever they point; without it a link is named and its rows kept, but nothing is"
        " read through it",
        notes="(see Symbolic links)",
    )
    health_file: Path | None = setting(
        None,
        env="SYNCD_HEALTH_FILE",
        flag="--health-file",
        commands=frozenset({"run", "verify", "health"}),
        shown_default="`health.json` beside `--data-dir`",
        help="where the daemon keeps its state (every 5 s) for `syncd health`",
    )
    stalled_after_s: float = setting(
        30.0,
        env="SYNCD_HEALTH_STALLED_AFTER",
        flag="--stalled-after",
        unit="seconds",
        commands=frozenset({"health"}),
        help="unhealthy when the daemon's state is older than this, or its writer or watcher"
        " is stuck",
    )
    unreachable_after_s: float = setting(
        60.0,
        env="SYNCD_HEALTH_UNREACHABLE_AFTER",
        flag="--unreachable-after",
        unit="seconds",
        commands=frozenset({"health"}),
        help="unhealthy when the database has been unreachable (breaker not closed) this long",
    )
    # Not a setting: which settings that shape rows (source_settings.ROW_SETTINGS) were given
    # by a flag or a variable; the others are the source's recorded ones, when it has any.
    explicit: frozenset[str] = frozenset()

    @property
    def health_path(self) -> Path:
        return self.health_file or self.data_dir.parent / "health.json"

    @property
    def source_name(self) -> str:
        return self.source or default_source(self.root)

    @property
    def history_retention(self) -> Retention:
        """``history_keep`` read (``check`` has refused a value it cannot be)."""
        return Retention.parse(self.history_keep)

    @property
    def embedded(self) -> bool:
        return self.database_url is None

    def secrets(self) -> list[str]:
        """Every secret value, so that the log redactor can scrub them anywhere."""
        found: list[str] = []
        if self.database_url is not None:
            found.extend(dsn_secrets(self.database_url.reveal()))
        return found


SETTINGS: tuple[Setting, ...] = declared(Settings)
_BY_NAME = {item.name: item for item in SETTINGS}
# Read where they are used, not through Settings; documented with the others.
READ_ELSEWHERE = (
    Setting(
        name="source_required",
        env="SYNCD_SOURCE_REQUIRED",
        kind=bool,
        default=False,
        commands=SOURCE,
        help="a source must be named (`--source`): the default one would change with every"
        " recreated container (the image sets it; `check_source`)",
    ),
    Setting(
        name="schema_dir",
        env="SYNCD_SCHEMA_DIR",
        commands=DATABASE,
        shown_default="`schema/`",
        help="where the migrations are (tests, custom deployments; `migrate.schema_dir`)",
    ),
)
DOCUMENTED = SETTINGS + READ_ELSEWHERE  # docs/configuration.md's table


def label(name: str) -> str:
    """How a message names a setting: ``--workers (SYNCD_WORKERS)``."""
    return _BY_NAME[name].label


def build(command: str, flags: Mapping[str, object], env: Mapping[str, str]) -> Settings:
    """The settings of one command: each it takes from its flag, else its variable, else
    its default; checked."""
    found = given(SETTINGS, command, flags, env)
    recorded = {item.name for item in SETTINGS if item.recorded}
    return check(Settings(**found, explicit=frozenset(found.keys() & recorded)))


def check_database(settings: Settings) -> None:
    """With --no-embedded, a command that needs a database and has no DATABASE_URL stops
    here (exit 2) instead of starting the embedded server and answering for that one."""
    if settings.no_embedded and settings.database_url is None:
        raise ConfigError(
            "DATABASE_URL is not set in syncd's environment, and --no-embedded"
            " (SYNCD_NO_EMBEDDED) forbids the embedded database: export DATABASE_URL (a shell"
            " variable assigned without `export` is not passed to the programs it starts)"
        )


def database_url_from_env(env: Mapping[str, str]) -> Secret | None:
    """DATABASE_URL, read before the command's settings (for the log redactor)."""
    raw = env.get("DATABASE_URL", "").strip()
    return Secret(raw) if raw else None


def check(settings: Settings) -> Settings:
    if settings.quiet_ms < 0 or settings.max_delay_ms < settings.quiet_ms:
        raise ConfigError(
            f"{label('max_delay_ms')} must be at least {label('quiet_ms')}, both non-negative"
        )
    if not 1 <= settings.workers <= 64:
        raise ConfigError(f"{label('workers')} must be between 1 and 64")
    if settings.auth_grace_s <= 0:
        raise ConfigError(f"{label('auth_grace_s')} must be a positive number of seconds")
    if settings.max_file_bytes <= 0:
        raise ConfigError(f"{label('max_file_bytes')} must be positive")
    if settings.watch_retry_s <= 0:
        raise ConfigError(f"{label('watch_retry_s')} must be positive")
    if settings.log_format not in ("auto", "json", "console"):
        raise ConfigError(f"{label('log_format')} must be auto, json or console")
    if settings.creator_mind is not None and not MIND_SLUG.match(settings.creator_mind):
        raise ConfigError(f"{label('creator_mind')} must be a mind slug (a-z, 0-9, _ and -)")
    try:
        Retention.parse(settings.history_keep)
    except ValueError as exc:
        raise ConfigError(f"{label('history_keep')}: {exc}") from None
    if settings.database_url is not None:
        check_database_url(settings.database_url.reveal())
    return settings


__all__ = [
    "Secret",
    "Settings",
    "check_database_url",
    "database_label",
    "dsn_secrets",
    "redact",
    "redact_dsn",
]


def environ() -> Mapping[str, str]:
    return os.environ
