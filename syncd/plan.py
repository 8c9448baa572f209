"""Pure: what one course folder says vs what the database holds → the writes to make.

Matching an existing row to a record, in order: syncd's own row key, then the file
path (identity of a file-backed row), then the legacy slug of a pre-syncd row with no
file path (adopted in place), then, for the outline and modules, their position in the
hierarchy. A matched row keeps its id and its slug forever.

A new row's slug, when another row holds it (``slug_holders``): a slug of syncd's
namespace (``<course>--...``) held by a row no syncd wrote is taken back (that row gets
another slug); one held by a row a syncd wrote (a renamed course's) is never taken: the new
row gets a derived slug, the project's id appended.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from syncd.course import OUTLINE_KEY, Content, CourseSnapshot, FileIssue, Project

# Roles the content_minds CHECK allows: the creator owns the course, the persona is the
# voice the lessons are written in, which CreatorOS records as their author.
CREATOR_ROLE = "creator"
PERSONA_ROLE = "author"


@dataclass(frozen=True)
class RowFields:
    """The values syncd owns in one contents row, as the database holds them now (read for
    verify, and for a row someone else changed: a real difference, or bookkeeping only?).
    content_type, parent, order, file path and deletion are in ``ExistingRow`` itself."""

    title: str | None
    content_md5: str | None
    metadata: Any
    fidelity_score: Decimal | float | None
    status: str | None
    in_project: bool


@dataclass(frozen=True)
class ExistingRow:
    id: uuid.UUID
    slug: str
    file_path: str | None
    content_type: str
    sequence_order: int | None
    parent_id: uuid.UUID | None
    deleted: bool
    row_key: str | None
    row_hash: bytes | None
    fm_status: str | None = None  # status last taken from the frontmatter; "": none; None: unknown
    changed: bool = False  # written by someone else since syncd wrote it: rewrite it
    source_hash: bytes | None = None  # of the file's bytes when syncd last wrote the row
    fields: RowFields | None = None  # None: not read (the row hash speaks for them)
    tags: frozenset[str] | None = None  # tag names linked now; None: not read
    minds: frozenset[tuple[uuid.UUID, str]] | None = None  # (mind id, role) linked now


@dataclass(frozen=True)
class RowWrite:
    id: uuid.UUID
    record: Content
    slug: str
    parent_id: uuid.UUID | None
    row_hash: bytes
    tags: tuple[str, ...]
    minds: tuple[tuple[uuid.UUID, str], ...]
    status: str | None = None  # the status to write; None keeps the row's (set in the app)
    differs: tuple[str, ...] = ()  # the syncd-owned fields the row holds otherwise (when read)


@dataclass(frozen=True)
class SlugHolder:
    """A row, of any project, that holds a slug a new row of this course would take."""

    id: uuid.UUID
    syncd: bool  # written by a syncd (it has syncd.rows bookkeeping): its slug is its own


@dataclass(frozen=True)
class Reclaim:
    """A slug of syncd's namespace taken back from a row no syncd wrote, for a new row."""

    holder: uuid.UUID
    slug: str
    write: RowWrite


@dataclass(frozen=True)
class DerivedSlug:
    """A new row that could not have the slug its file derives: another syncd row has it."""

    wanted: str
    write: RowWrite


@dataclass
class Plan:
    inserts: list[RowWrite] = field(default_factory=list)
    updates: list[RowWrite] = field(default_factory=list)
    deletes: list[uuid.UUID] = field(default_factory=list)
    unchanged: int = 0
    rejected: list[FileIssue] = field(default_factory=list)
    ids: dict[str, uuid.UUID] = field(default_factory=dict)  # record key -> row id
    repaired: list[RowWrite] = field(default_factory=list)  # writes that undo others' edits
    # rows whose fields are as the file says but whose tag or mind links are not: the links
    # are written again, the row is not
    relinks: list[RowWrite] = field(default_factory=list)
    # rows as the file says whose bookkeeping (syncd.rows: hash, key, write mark) is not, e.g.
    # after a restore: only syncd.rows is written, silently
    remarks: list[RowWrite] = field(default_factory=list)
    # slugs of new rows taken back from rows no syncd wrote (written before the inserts)
    reclaims: list[Reclaim] = field(default_factory=list)
    derived: list[DerivedSlug] = field(default_factory=list)  # new rows under a derived slug
    # each written row's kind of change, for its content history: created, updated, deleted,
    # revived, moved, repaired (migration 20251201001500)
    changes: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not (self.inserts or self.updates or self.deletes or self.relinks or self.remarks)


def plan_course(
    snapshot: CourseSnapshot,
    existing: Iterable[ExistingRow],
    *,
    creator_mind_id: uuid.UUID | None,
    persona_mind_id: uuid.UUID | None,
    slug_holders: Mapping[str, SlugHolder] | None = None,
    project_id: uuid.UUID | None = None,
    new_id: Callable[[], uuid.UUID] = uuid.uuid4,
) -> Plan:
    """Writes that make the database hold exactly ``snapshot`` for this course.

    ``slug_holders``: the rows that hold the slugs new rows would take (see
    ``slug_candidates``), by slug; ``project_id``: the course's project (derived slugs
    append it). A new row whose every candidate is held (never in practice) is rejected,
    the rest of the course still syncs."""
    plan = Plan()
    rows = list(existing)
    slugs = _Slugs(slug_holders or {}, rows, snapshot.project.slug, project_id)
    matcher = _Matcher(rows)
    # A rejected file keeps whatever row it already has: bad input never destroys data.
    matcher.protect({issue.path for issue in snapshot.rejected})
    ids = plan.ids
    minds = _minds(creator_mind_id, persona_mind_id)
    project_tags = snapshot.project.tags

    moved_away = _moved_away(snapshot, rows, matcher)
    for record in snapshot.contents:
        row = matcher.claim(record) or _moved_here(record, moved_away, matcher)
        if row is not None and _protected(record, snapshot.protected):
            ids[record.key] = row.id  # its source was rejected: keep the row as it is
            plan.unchanged += 1
            continue
        slug, holder = (row.slug, None) if row else (record.slug, None)
        if row is None and slugs.holders:
            found = slugs.choose(record)
            if found is None:
                plan.rejected.append(_slug_taken(snapshot.course, record))
                continue
            slug, holder = found
        row_id = row.id if row else new_id()
        ids[record.key] = row_id
        parent_id = ids.get(record.parent_key) if record.parent_key else None
        tags = _merge(project_tags, record.tags) if record.key == OUTLINE_KEY else record.tags
        write = RowWrite(
            id=row_id,
            record=record,
            slug=slug,
            parent_id=parent_id,
            row_hash=_row_hash(record, slug, parent_id, tags, minds),
            tags=tags,
            minds=minds,
            status=record.status if row is None else _status_change(record, row),
        )
        if row is None:
            _insert(plan, write, holder)
            continue
        differs = row_differences(write, row)
        write = dataclasses.replace(write, differs=differs)
        marks_off = row.changed or row.row_hash != write.row_hash or row.row_key != record.key
        if any(name not in LINK_FIELDS for name in differs) or (row.fields is None and marks_off):
            plan.updates.append(write)
            plan.changes[row_id] = _change(row, record)
            if row.changed:
                plan.repaired.append(write)
        elif differs:  # only its links: someone else's edit (the file's are in the row hash)
            plan.relinks.append(write)
            plan.repaired.append(write)
        elif marks_off:  # the row is as the file says: only syncd's bookkeeping is off
            plan.remarks.append(write)
            plan.unchanged += 1
        else:
            plan.unchanged += 1

    _plan_deletes(plan, snapshot, rows, matcher)
    return plan


def _plan_deletes(
    plan: Plan, snapshot: CourseSnapshot, rows: list[ExistingRow], matcher: _Matcher
) -> None:
    """The course's live rows no record claimed: soft-deleted (a module row its kept
    curriculum still names stays)."""
    course_prefix = f"{snapshot.course}/"
    for row in rows:
        managed = row.row_key is not None or (row.file_path or "").startswith(course_prefix)
        kept = row.content_type == "course_module" and "modules" in snapshot.protected
        if managed and not kept and not row.deleted and not matcher.is_claimed(row):
            plan.deletes.append(row.id)
            plan.changes[row.id] = "deleted"


def _change(row: ExistingRow, record: Content) -> str:
    """What an update of ``row`` to ``record`` is, for the row's history."""
    if row.deleted:
        return "revived"
    if row.changed:  # someone else's edit put back (moved too, maybe: the path says so)
        return "repaired"
    return "moved" if row.file_path != record.file_path else "updated"


def plan_checking_slugs(
    snapshot: CourseSnapshot,
    existing: list[ExistingRow],
    *,
    creator_mind_id: uuid.UUID | None,
    persona_mind_id: uuid.UUID | None,
    project_id: uuid.UUID | None,
    slug_holders_of: Callable[[set[str]], Mapping[str, SlugHolder]] | None,
) -> Plan:
    """``plan_course``; with ``slug_holders_of`` (which rows hold these slugs: the store's
    lookup), the slugs its new rows could take are looked up, and when any is held the
    course is planned again around them."""
    plan = plan_course(
        snapshot, existing, creator_mind_id=creator_mind_id, persona_mind_id=persona_mind_id
    )
    if slug_holders_of is None or not plan.inserts:
        return plan
    wanted = {
        slug
        for w in plan.inserts
        for slug in slug_candidates(w.record, snapshot.project.slug, project_id)
    }
    holders = slug_holders_of(wanted)
    if not holders:
        return plan
    return plan_course(
        snapshot,
        existing,
        creator_mind_id=creator_mind_id,
        persona_mind_id=persona_mind_id,
        slug_holders=holders,
        project_id=project_id,
    )


LINK_FIELDS = frozenset({"tags", "minds"})


def row_differences(write: RowWrite, row: ExistingRow) -> tuple[str, ...]:
    """The syncd-owned fields of ``row`` that differ from what ``write`` would write, as
    far as they were read: never bookkeeping (hashes, write marks), never a field the app
    owns (a status is compared only when the file's status changed and is to be written)."""
    record, found = write.record, row.fields
    names: list[str] = []
    if row.deleted:
        names.append("deleted_at")
    if found is not None:
        checks = (
            ("project", not found.in_project),
            ("content_type", row.content_type != record.content_type),
            ("title", found.title != record.title),
            ("content", found.content_md5 != _md5(record.content)),
            ("parent", row.parent_id != write.parent_id),
            ("sequence_order", row.sequence_order != record.sequence_order),
            ("file_path", row.file_path != record.file_path),
            ("metadata", found.metadata != json_value(record.metadata)),
            (
                "fidelity_score",
                record.fidelity_score is not None
                and not _same_score(found.fidelity_score, record.fidelity_score),
            ),
            ("status", write.status is not None and found.status != write.status),
        )
        names.extend(name for name, differs in checks if differs)
    if row.tags is not None and row.tags != frozenset(write.tags):
        names.append("tags")
    if row.minds is not None and row.minds != frozenset(write.minds):
        names.append("minds")
    return tuple(names)


@dataclass(frozen=True)
class ProjectState:
    """What the project row (and the audience row of the brief's audience slug) hold now."""

    name: str | None
    description: str | None
    project_type: str | None
    metadata: Any
    creator: str | None  # slugs of the linked minds and audience
    persona: str | None
    audience: str | None
    audience_name: str | None = None  # the fields of the audience row syncd writes
    audience_description: str | None = None
    audience_technical_level: str | None = None
    changed: bool = False  # written by someone else since syncd wrote it (its write marks)


def project_differences(project: Project, state: ProjectState) -> tuple[str, ...]:
    """The fields of the project (and its audience) that differ from what a sync writes."""
    audience = project.audience
    checks = [
        ("name", state.name != project.name),
        ("description", state.description != project.description),
        ("project_type", state.project_type != project.project_type),
        ("metadata", state.metadata != json_value(project.metadata)),
        (
            "creator_mind",
            state.creator != (project.creator_mind.slug if project.creator_mind else None),
        ),
        (
            "persona_mind",
            state.persona != (project.persona_mind.slug if project.persona_mind else None),
        ),
        ("audience", state.audience != (audience.slug if audience else None)),
    ]
    if audience is not None:
        checks += [
            ("audience.name", state.audience_name != audience.name),
            ("audience.description", state.audience_description != audience.description),
            (
                "audience.technical_level",
                state.audience_technical_level != audience.technical_level,
            ),
        ]
    return tuple(name for name, differs in checks if differs)


def json_value(value: Any) -> Any:
    """``value`` as it reads back from a jsonb column (tuples become lists, and so on)."""
    return json.loads(json.dumps(value, ensure_ascii=False))


def _md5(text: str | None) -> str | None:
    if text is None:
        return None
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - compared with PostgreSQL md5()


def _same_score(stored: Decimal | float | None, wanted: float) -> bool:
    """numeric(3, 2) rounds half away from zero: compare as the column stores it."""
    if stored is None:
        return False
    try:
        cents = Decimal(str(wanted)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return False
    return Decimal(str(stored)) == cents


def _moved_away(
    snapshot: CourseSnapshot, rows: list[ExistingRow], matcher: _Matcher
) -> dict[tuple[str, bytes], list[ExistingRow]]:
    """Live file-backed rows whose file is not in the snapshot, by (kind, bytes hash): a new
    file with the same bytes is the same file, moved (renamed, or into another folder)."""
    paths = {record.file_path for record in snapshot.contents if record.file_path}
    found: dict[tuple[str, bytes], list[ExistingRow]] = {}
    for row in rows:
        if (
            row.file_path
            and row.file_path not in paths
            and row.source_hash
            and not row.deleted
            and (row.row_key or "").startswith("file:")
            and not matcher.is_claimed(row)
        ):
            found.setdefault((row.content_type, row.source_hash), []).append(row)
    return found


def _moved_here(
    record: Content, moved_away: dict[tuple[str, bytes], list[ExistingRow]], matcher: _Matcher
) -> ExistingRow | None:
    """The row of a file that moved to ``record``'s path in this sync, if any: it keeps its
    id, slug and app-set fields; its path, parent and order follow the new place."""
    if not record.file_path or record.source_hash is None:
        return None
    for row in moved_away.get((record.content_type, record.source_hash), []):
        if not matcher.is_claimed(row):
            matcher.claimed.add(row.id)
            return row
    return None


class _Matcher:
    def __init__(self, rows: list[ExistingRow]) -> None:
        live_first = sorted(rows, key=lambda r: r.deleted)  # prefer a live row over a deleted twin
        self.by_key: dict[str, ExistingRow] = {}
        self.by_file: dict[str, ExistingRow] = {}
        self.by_slug: dict[str, ExistingRow] = {}
        self.by_position: dict[tuple[str, int | None], ExistingRow] = {}
        for row in live_first:
            if row.row_key:
                self.by_key.setdefault(row.row_key, row)
            if row.file_path:
                self.by_file.setdefault(row.file_path, row)
            self.by_slug.setdefault(row.slug, row)
            if row.content_type in ("course_outline", "course_module"):
                self.by_position.setdefault((row.content_type, row.sequence_order), row)
        self.claimed: set[uuid.UUID] = set()

    def claim(self, record: Content) -> ExistingRow | None:
        candidates = [self.by_key.get(record.key)]
        if record.key != OUTLINE_KEY and record.file_path:
            candidates.append(self.by_file.get(record.file_path))
        if record.legacy_slug:
            legacy = self.by_slug.get(record.legacy_slug)
            if legacy is not None and (legacy.file_path is None or legacy.row_key == record.key):
                candidates.append(legacy)
        if record.content_type in ("course_outline", "course_module"):
            sequence = None if record.content_type == "course_outline" else record.sequence_order
            candidates.append(self.by_position.get((record.content_type, sequence)))
        for row in candidates:
            if row is not None and row.id not in self.claimed and _compatible(row, record):
                self.claimed.add(row.id)
                return row
        return None

    def protect(self, file_paths: set[str]) -> None:
        """Keep the rows of these files, and of every file under these paths (an unreadable
        or linked folder is there: its rows are not gone)."""
        folders = tuple(f"{path}/" for path in file_paths)
        for path, row in self.by_file.items():
            if row.content_type == "course_outline":  # see _protected
                continue
            if path in file_paths or (folders and path.startswith(folders)):
                self.claimed.add(row.id)

    def is_claimed(self, row: ExistingRow) -> bool:
        return row.id in self.claimed


def _status_change(record: Content, row: ExistingRow) -> str | None:
    """The app owns a row's status, unless the frontmatter sets one: a frontmatter status is
    written when it changes (not on every edit of the file), so that a status set in the
    app survives edits that leave the frontmatter's status as it was."""
    if row.fm_status is None:  # synced before syncd remembered it: the app's status stays
        return None
    before = row.fm_status or None
    return record.status if record.status != before else None


def _protected(record: Content, protected: frozenset[str]) -> bool:
    if record.key == OUTLINE_KEY:
        return "outline" in protected
    return record.content_type == "course_module" and "modules" in protected


def _compatible(row: ExistingRow, record: Content) -> bool:
    """A row keeps its kind: a module row is never reused as a lesson."""
    return row.content_type == record.content_type or row.row_key == record.key


def _insert(plan: Plan, write: RowWrite, holder: SlugHolder | None) -> None:
    plan.inserts.append(write)
    plan.changes[write.id] = "created"
    if holder is not None:
        plan.reclaims.append(Reclaim(holder.id, write.slug, write))
    elif write.slug != write.record.slug:
        plan.derived.append(DerivedSlug(write.record.slug, write))


def _slug_taken(course: str, record: Content) -> FileIssue:
    path = record.file_path or f"{course}:{record.key}"
    return FileIssue(path, f"slug {record.slug!r} is already used by another project")


def slug_candidates(record: Content, course: str, project_id: uuid.UUID | None) -> list[str]:
    """The slugs a new row may take, in order. The outline and modules follow the legacy
    convention (``<course>-outline``, ``<course>-modulo-<n>``), then the ``--`` form, which
    only syncd writes; a file its own slug. Last, the ``--`` slug with the project's id
    appended: another project's syncd rows cannot have it."""
    reserved = record.slug
    if record.file_path is None or record.key == OUTLINE_KEY:
        suffix = "outline" if record.key == OUTLINE_KEY else f"module-{record.sequence_order}"
        reserved = f"{course}--{suffix}"
    found = list(dict.fromkeys([record.slug, reserved]))
    if project_id is not None:
        found.append(f"{reserved}-{project_id.hex[:8]}")
    return found


def is_syncds(slug: str) -> bool:
    """A slug of syncd's namespace: ``<course>--...``, written by syncd alone (the database
    refuses it to everyone else since migration 20251201001300)."""
    return "--" in slug


class _Slugs:
    """Chooses the slugs of new rows when others hold some: the first candidate nobody
    holds, or that syncd takes back (a slug of its namespace held by a row of another
    project that no syncd wrote), never one chosen for another row of this plan."""

    def __init__(
        self,
        holders: Mapping[str, SlugHolder],
        rows: list[ExistingRow],
        course: str,
        project_id: uuid.UUID | None,
    ) -> None:
        self.holders = holders
        self.own_rows = {row.id for row in rows}
        self.course = course
        self.project_id = project_id
        self.chosen: set[str] = set()

    def choose(self, record: Content) -> tuple[str, SlugHolder | None] | None:
        for slug in slug_candidates(record, self.course, self.project_id):
            if slug in self.chosen:
                continue
            holder = self.holders.get(slug)
            if holder is not None and (
                not is_syncds(slug) or holder.syncd or holder.id in self.own_rows
            ):
                continue
            self.chosen.add(slug)
            return slug, holder
        return None


def _minds(
    creator: uuid.UUID | None, persona: uuid.UUID | None
) -> tuple[tuple[uuid.UUID, str], ...]:
    minds: list[tuple[uuid.UUID, str]] = []
    if creator is not None:
        minds.append((creator, CREATOR_ROLE))
    if persona is not None and persona != creator:
        minds.append((persona, PERSONA_ROLE))
    return tuple(minds)


def _merge(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*first, *second)))


def _row_hash(
    record: Content,
    slug: str,
    parent_id: uuid.UUID | None,
    tags: tuple[str, ...],
    minds: tuple[tuple[uuid.UUID, str], ...],
) -> bytes:
    """Hash of every value syncd writes for this row: equal means no write at all."""
    payload = json.dumps(
        [
            record.key,
            record.content_type,
            slug,
            record.title,
            record.content,
            str(parent_id),
            record.sequence_order,
            record.file_path,
            record.metadata,
            record.fidelity_score,
            record.status,
            list(tags),
            [[str(m), role] for m, role in minds],
        ],
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).digest()
