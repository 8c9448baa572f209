"""Pure: a course's content fingerprint. One hash over its relevant files and the parse
options; equal to the one recorded means the course has nothing to write."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from syncd.course import ParseOptions
from syncd.layout import is_relevant

# Bump when the mapping changes, so that every course is re-synced once.
PARSER_VERSION = "1"


def options_salt(options: ParseOptions) -> str:
    """What besides the files decides the records: a change re-syncs every course."""
    return f"v{PARSER_VERSION}|{options.default_creator_mind}"


def fingerprint(files: Mapping[str, bytes], options: ParseOptions) -> bytes:
    """One hash over every relevant file and the options: equal means nothing to do."""
    digest = hashlib.sha256(options_salt(options).encode())
    for rel in sorted(files):
        if is_relevant(rel):
            digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            digest.update(hashlib.sha256(files[rel]).digest())
    return digest.digest()
