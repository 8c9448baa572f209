"""A course's writes, queued on the transaction's connection (the pipeline sends them with
the commit): the project, the rows of a plan, their tag and mind links, and the minds and
tags they name (sorted: one lock order for every transaction)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from syncd.course import CourseSnapshot
from syncd.database import Queries
from syncd.history import Retention
from syncd.plan import Plan, RowWrite


def queue_project(sql: Queries, snapshot: CourseSnapshot) -> Any:
    p, a = snapshot.project, snapshot.project.audience
    creator = p.creator_mind.slug if p.creator_mind else None
    if a is not None:
        sql.queue(
            "upsert_audience",
            slug=a.slug,
            name=a.name,
            description=a.description,
            technical_level=a.technical_level,
            creator=creator,
        )
    return sql.queue(
        "upsert_project",
        slug=p.slug,
        name=p.name,
        description=p.description,
        project_type=p.project_type,
        metadata=Jsonb(p.metadata),
        course=snapshot.course,
        creator=creator,
        persona=p.persona_mind.slug if p.persona_mind else None,
        audience=a.slug if a else None,
    )


def queue_plan(
    sql: Queries,
    project_id: uuid.UUID,
    plan: Plan,
    *,
    history: History,
    rows_only: bool = False,
    rows_done: bool = False,
    tags_done: bool = False,
) -> None:
    """Queue every write of the plan (the pipeline sends them with the commit).
    ``rows_only``: just the inserts and updates of contents rows; ``rows_done``: all but
    those (already written, one by one); ``tags_done``: its tags are inserted already.
    ``history``: who writes, and how long versions are kept (``queue_versions``)."""
    repairs = [w.id for w in plan.updates if plan.changes.get(w.id) == "repaired"]
    if repairs and not rows_done:  # the app's edit, before it is written over
        queue_app_edits(sql, repairs)
    if plan.inserts and not rows_done:
        ins = plan.inserts
        sql.queue(
            "insert_contents",
            project_id=project_id,
            ids=[w.id for w in ins],
            types=[w.record.content_type for w in ins],
            parents=[w.parent_id for w in ins],
            orders=[w.record.sequence_order for w in ins],
            slugs=[w.slug for w in ins],
            titles=[w.record.title for w in ins],
            contents=[w.record.content for w in ins],
            metadata=[Jsonb(w.record.metadata) for w in ins],
            fidelity=[w.record.fidelity_score for w in ins],
            statuses=[w.status for w in ins],
            paths=[w.record.file_path for w in ins],
        )
    if plan.updates and not rows_done:
        sql.many(
            "update_content",
            [
                {
                    "id": w.id,
                    "project_id": project_id,
                    "content_type": w.record.content_type,
                    "parent_id": w.parent_id,
                    "sequence_order": w.record.sequence_order,
                    "title": w.record.title,
                    "content": w.record.content,
                    "metadata": Jsonb(w.record.metadata),
                    "fidelity_score": w.record.fidelity_score,
                    "status": w.status,
                    "file_path": w.record.file_path,
                }
                for w in plan.updates
            ],
        )
    if rows_only:
        return
    if plan.deletes:
        sql.queue("soft_delete", ids=plan.deletes)
    queue_versions(sql, plan, history)
    linked = plan.inserts + plan.updates + plan.relinks
    if linked:
        queue_links(sql, linked, pruned=plan.updates + plan.relinks, tags_done=tags_done)
    written = linked + plan.remarks  # remarks: syncd.rows only
    if not written:
        return
    ids = [w.id for w in written]
    keys = [w.record.key for w in written]
    sql.queue("release_row_keys", project_id=project_id, keys=keys, ids=ids)
    sql.queue(
        "upsert_rows",
        ids=ids,
        project_id=project_id,
        keys=keys,
        hashes=[w.row_hash for w in written],
        source_hashes=[w.record.source_hash for w in written],
        fm_statuses=[w.record.status or "" for w in written],  # "": none in the file
    )


@dataclass(frozen=True)
class History:
    """What a course's writes record in its rows' history: the source, and the retention."""

    source: str | None = None
    keep: Retention = Retention()


def queue_app_edits(sql: Queries, ids: list[uuid.UUID]) -> None:
    """A version of each of these rows as the app left it, when its content or title is not
    its last version's (before syncd writes over it)."""
    sql.queue(
        "record_versions",
        ids=ids,
        kinds=["app-edit"] * len(ids),
        fields=[""] * len(ids),
        source=None,
    )


def queue_versions(sql: Queries, plan: Plan, history: History) -> None:
    """A version of each row the plan changes (sql/course.sql ``record_versions``: an update
    only when its content or title changed), then the retention applied to those rows."""
    changed = [w for w in plan.inserts + plan.updates if w.id in plan.changes]
    ids = [w.id for w in changed] + plan.deletes
    if not ids:
        return
    fields = {w.id: ",".join(w.differs) for w in changed if plan.changes[w.id] == "repaired"}
    sql.queue(
        "record_versions",
        ids=ids,
        kinds=[plan.changes.get(i, "deleted") for i in ids],
        fields=[fields.get(i, "") for i in ids],
        source=history.source,
    )
    if history.keep.versions is not None:
        sql.queue("keep_last_versions", ids=ids, keep=history.keep.versions)
    elif history.keep.days is not None:
        sql.queue("keep_recent_versions", ids=ids, days=history.keep.days)


def queue_links(
    sql: Queries, written: list[RowWrite], *, pruned: list[RowWrite], tags_done: bool
) -> None:
    """The tag and mind links of ``written`` rows; those of ``pruned`` rows that the
    files do not name are deleted first (a new row has none)."""
    ids = [w.id for w in pruned]
    tag_pairs = [(w.id, t) for w in written for t in w.tags]
    mind_rows = [(w.id, m, role) for w in written for m, role in w.minds]
    if not tags_done:
        queue_tags(sql, [written])
    if ids:
        sql.queue(
            "prune_content_tags",
            ids=ids,
            content_ids=[c for c, _ in tag_pairs],
            names=[t for _, t in tag_pairs],
        )
        sql.queue(
            "prune_content_minds",
            ids=ids,
            content_ids=[c for c, _, _ in mind_rows],
            mind_ids=[m for _, m, _ in mind_rows],
        )
    if tag_pairs:
        sql.queue(
            "insert_content_tags",
            content_ids=[c for c, _ in tag_pairs],
            names=[t for _, t in tag_pairs],
        )
    if mind_rows:
        sql.queue(
            "insert_content_minds",
            content_ids=[c for c, _, _ in mind_rows],
            mind_ids=[m for _, m, _ in mind_rows],
            roles=[r for _, _, r in mind_rows],
        )


def queue_minds(sql: Queries, snapshots: list[CourseSnapshot]) -> None:
    """Insert the minds these courses name (sorted: one lock order for every transaction)."""
    named = {
        m.slug: m for s in snapshots for m in (s.project.creator_mind, s.project.persona_mind) if m
    }
    minds = [named[slug] for slug in sorted(named)]
    if minds:
        sql.queue(
            "insert_minds", slugs=[m.slug for m in minds], names=[m.display_name for m in minds]
        )


def queue_tags(sql: Queries, written: list[list[RowWrite]]) -> None:
    """Insert the tags these rows name (sorted: one lock order for every transaction)."""
    names = sorted({t for rows in written for w in rows for t in w.tags})
    if names:
        sql.queue("insert_tags", names=names)
