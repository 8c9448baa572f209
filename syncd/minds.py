"""`syncd minds`: who owns what, and linking a signed-in user to their mind.

In CreatorOS a course belongs to its creator mind (``content_projects.creator_mind_id``), and
a signed-in user reads the courses of the mind their ``user_profiles`` row names
(``public.current_mind_id()``). syncd sets the first from a brief's ``creator_mind:`` or
SYNCD_CREATOR_MIND; ``link`` sets the second, so that nobody writes SQL against
``auth.users`` by hand. Run as the schema owner (Supabase's ``postgres``); the SQL is in
``sql/minds.sql``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from syncd.errors import ConfigError
from syncd.layout import MIND_SLUG
from syncd.sqlfiles import query

SHOWN_COURSES = 5  # a mind's courses listed by name; the rest counted


@dataclass(frozen=True)
class Linked:
    user: str  # the e-mail, else the id
    user_id: uuid.UUID
    mind: str
    created: bool  # the mind was made by this link
    before: str | None  # the mind the user was linked to before (None: none)

    def __str__(self) -> str:
        if self.before == self.mind:
            return f"{self.user} is already linked to mind {self.mind}"
        said = f"linked {self.user} ({self.user_id}) to mind {self.mind}"
        if self.created:
            said += " (mind created)"
        if self.before is not None:
            said += f", was {self.before}"
        return said


def _as_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def link(conn: Any, user: str, mind: str, name: str | None = None) -> Linked:
    """Link auth user ``user`` (an id or an e-mail) to mind ``mind`` (a slug), making the mind
    when missing, inside the caller's transaction. Refused (ConfigError): an unknown user, an
    e-mail of two users, a slug that is not one, a mind linked to another user (one user per
    mind: user_profiles.mind_id is unique)."""
    if not MIND_SLUG.match(mind):
        raise ConfigError(f"--mind {mind!r} is not a mind slug (a-z, 0-9, _ and -)")
    cur = conn.cursor(row_factory=dict_row)
    found = cur.execute(
        query("minds.sql", "find_user"), {"id": _as_uuid(user), "email": user}
    ).fetchall()
    if not found:
        raise ConfigError(
            f"no signed-in user {user!r} (auth.users, by id or e-mail): the user signs up in the"
            " app first"
        )
    if len(found) > 1:
        raise ConfigError(f"two users have the e-mail {user!r}: give the user's id")
    user_id, email = found[0]["id"], found[0]["email"]
    shown = email or str(user_id)
    holder = cur.execute(query("minds.sql", "mind_holder"), {"slug": mind}).fetchone()
    if holder is not None and holder["id"] != user_id:
        other = holder["email"] or str(holder["id"])
        raise ConfigError(
            f"mind {mind!r} is linked to another user, {other}: a mind has one user"
            " (user_profiles.mind_id is unique); link that user to another mind first"
        )
    before = cur.execute(query("minds.sql", "user_mind"), {"user": user_id}).fetchone()
    made = cur.execute(
        query("minds.sql", "ensure_mind"), {"slug": mind, "name": name or mind}
    ).fetchone()
    if made is None:  # pragma: no cover - the query returns the mind, made or found
        raise ConfigError(f"mind {mind!r} could be neither found nor made")
    cur.execute(query("minds.sql", "link_user"), {"user": user_id, "mind": made["id"]})
    return Linked(shown, user_id, mind, bool(made["created"]), before["slug"] if before else None)


def _names(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN_COURSES])
    more = len(items) - SHOWN_COURSES
    return f"{shown}, +{more} more" if more > 0 else shown


def listing(conn: Any) -> tuple[list[tuple[Any, ...]], list[str]]:
    """(mind, users, courses, persona of) of every mind a user is linked to or a live course
    names; and the live courses no signed-in user reads as their creator, with why."""
    cur = conn.cursor(row_factory=dict_row)
    rows: list[tuple[Any, ...]] = [
        (
            str(r["mind"]),
            ", ".join(r["users"]) or "(no user)",
            _names(r["courses"]),
            _names(r["persona_of"]),
        )
        for r in cur.execute(query("minds.sql", "list_minds")).fetchall()
    ]
    unread = [
        f"{r['slug']} ({'no creator mind' if r['mind'] is None else 'mind ' + r['mind']})"
        for r in cur.execute(query("minds.sql", "unread_courses")).fetchall()
    ]
    return rows, unread
