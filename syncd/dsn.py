"""DATABASE_URL: its password found in any shape a person may type (a URL, key=value pairs,
or a malformed one) and kept out of every message (``redact_dsn``, ``redact``); a label that
names the database without it; and a DSN libpq would refuse or misread, refused before any
connection (``check_database_url``)."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict

from syncd.errors import ConfigError

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
