"""The records one course folder turns into. Plain immutable data, no behaviour.

Every content row has a ``key`` that identifies it inside its project and never
depends on titles or slugs:

- ``outline``                   the course outline (one per course)
- ``module:<n>``                the module with number ``n``
- ``file:<path from the root>`` a lesson or other output file, e.g.
  ``file:claude-code/lessons/1.1-x.md``
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

OUTLINE_KEY = "outline"

JSON = dict[str, Any]


@dataclass(frozen=True)
class ParseOptions:
    """What besides the files decides a course's records (part of its fingerprint)."""

    default_creator_mind: str | None = None  # SYNCD_CREATOR_MIND


def module_key(number: int) -> str:
    return f"module:{number}"


def file_key(file_path: str) -> str:
    return f"file:{file_path}"


@dataclass(frozen=True)
class Mind:
    slug: str
    display_name: str


@dataclass(frozen=True)
class Audience:
    slug: str
    name: str
    description: str
    technical_level: str | None = None


@dataclass(frozen=True)
class Project:
    slug: str
    name: str
    description: str | None
    metadata: JSON
    creator_mind: Mind | None
    persona_mind: Mind | None
    audience: Audience | None
    tags: tuple[str, ...] = ()
    project_type: str = "course"


@dataclass(frozen=True)
class Content:
    key: str
    content_type: str
    slug: str
    title: str
    content: str | None
    parent_key: str | None
    sequence_order: int | None
    file_path: str | None
    metadata: JSON
    source_hash: bytes | None = None
    fidelity_score: float | None = None
    status: str | None = None
    tags: tuple[str, ...] = ()
    legacy_slug: str | None = None  # a pre-syncd row with this slug and no file_path is adopted


@dataclass(frozen=True)
class FileIssue:
    """A file that was rejected (``rejected``) or repaired with a warning. ``kind`` says
    why it is not in the database, for ``syncd verify``: rejected (by the parser),
    unreadable, link, too-large, refused (by the database)."""

    path: str
    reason: str
    kind: str = "rejected"


@dataclass(frozen=True)
class CourseSnapshot:
    """Everything one course folder says, ready to be planned against the database."""

    course: str
    project: Project
    contents: tuple[Content, ...]
    fingerprint: bytes
    rejected: tuple[FileIssue, ...] = ()
    # Parts whose source file was rejected: their existing rows are kept as they are
    # ("project", "outline", "modules"), so bad input never overwrites good data.
    protected: frozenset[str] = frozenset()
    ignored: tuple[FileIssue, ...] = ()  # invalid field values dropped from an accepted file
    repaired: tuple[FileIssue, ...] = ()
    source_hashes: dict[str, bytes] = field(default_factory=dict)
