"""Bytes → text, YAML and frontmatter, safely. Pure functions; every failure is a ParseError."""

from __future__ import annotations

import codecs
import math
from dataclasses import dataclass
from typing import Any

import charset_normalizer
import yaml
from frontmatter.default_handlers import YAMLHandler

from syncd.errors import ParseError

# Legacy 8-bit encodings seen in real course files; restricting the detector to them
# keeps it from picking exotic code pages (mac_iceland, cp1250) for Portuguese text.
LEGACY_ENCODINGS = ["cp1252", "mac_roman", "iso8859_15", "cp850"]
# A decoded text with more control characters than this share is binary, not prose.
MAX_CONTROL_SHARE = 0.05
# libyaml's C loader is ten times faster than the pure-Python one, with the same safety.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# YAML aliases can make a small file expand into an enormous structure ("billion laughs").
MAX_YAML_NODES = 50_000
_ALLOWED_CONTROLS = frozenset("\t\n\r\f\v")


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str  # "utf-8" or the legacy encoding that was detected
    repaired: bool  # True when the text is not the file's bytes read as UTF-8


def decode(path: str, raw: bytes) -> DecodedText:
    """Return the file's text. UTF-8 is taken as is; a legacy encoding is detected and
    repaired (NUL bytes dropped); a file that is really binary raises ParseError."""
    if b"\x00" not in raw:
        try:
            return DecodedText(raw.decode("utf-8"), "utf-8", repaired=False)
        except UnicodeDecodeError:
            pass
    cleaned = raw.replace(b"\x00", b"")
    if _looks_binary(raw):
        raise ParseError(path, "binary file: not text in any known encoding")
    try:
        text = cleaned.decode("utf-8")
        encoding = "utf-8"
    except UnicodeDecodeError:
        best = charset_normalizer.from_bytes(cleaned, cp_isolation=LEGACY_ENCODINGS).best()
        encoding = codecs.lookup(best.encoding).name if best is not None else "cp1252"
        text = cleaned.decode(encoding, errors="replace")
    if _control_share(text) > MAX_CONTROL_SHARE:
        raise ParseError(path, "binary file: too many control characters for text")
    return DecodedText(text, encoding, repaired=True)


def _looks_binary(raw: bytes) -> bool:
    if not raw:
        return False
    return raw.count(b"\x00") / len(raw) > MAX_CONTROL_SHARE


def _control_share(text: str) -> float:
    if not text:
        return 0.0
    controls = sum(1 for ch in text if ch < " " and ch not in _ALLOWED_CONTROLS)
    return controls / len(text)


def load_yaml_documents(path: str, text: str) -> list[Any]:
    """All YAML documents of a file (some curricula hold a metadata document first)."""
    try:
        documents = [doc for doc in yaml.load_all(text, Loader=SAFE_LOADER) if doc is not None]
    except yaml.YAMLError as exc:
        raise ParseError(path, f"invalid YAML: {_first_line(exc)}") from exc
    except RecursionError as exc:
        raise ParseError(path, "invalid YAML: nested too deeply") from exc
    for doc in documents:
        _check_size(path, doc)
    return documents


def split_frontmatter(path: str, text: str) -> tuple[dict[str, Any], str]:
    """(frontmatter mapping, body without a BOM). No frontmatter gives an empty mapping."""
    handler = YAMLHandler()
    probe = text.lstrip("\ufeff")
    if not handler.detect(probe):
        return {}, probe
    try:
        block, body = handler.split(probe)
    except ValueError:
        return {}, probe
    try:
        data = handler.load(block, Loader=SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise ParseError(path, f"invalid frontmatter YAML: {_first_line(exc)}") from exc
    except RecursionError as exc:
        raise ParseError(path, "invalid frontmatter YAML: nested too deeply") from exc
    if data is None:
        return {}, body
    if not isinstance(data, dict):
        raise ParseError(path, f"frontmatter is a {type(data).__name__}, not a mapping")
    _check_size(path, data)
    return {str(k): v for k, v in data.items()}, body


def _check_size(path: str, value: Any) -> None:
    """Reject YAML whose aliases expand past MAX_YAML_NODES nodes."""
    budget = MAX_YAML_NODES
    stack = [value]
    while stack:
        item = stack.pop()
        budget -= 1
        if budget < 0:
            raise ParseError(path, f"YAML expands to more than {MAX_YAML_NODES} nodes")
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def jsonable(value: Any) -> Any:
    """A copy of YAML data that PostgreSQL jsonb accepts: string keys, dates as ISO
    strings, no NaN/Infinity, no NUL characters, sets as sorted lists."""
    if isinstance(value, dict):
        return {_clean_str(str(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return _clean_str(str(value))


def _clean_str(value: str) -> str:
    return value.replace("\x00", "")
