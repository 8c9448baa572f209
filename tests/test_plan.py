"""The planner as a pure function: records vs rows → writes."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid

from syncd.course import FileIssue
from syncd.parser import parse_course
from syncd.plan import ExistingRow, Plan, RowFields, SlugHolder, plan_course

FILES = {"lessons/1.1-a.md": b"# A", "lessons/1.2-b.md": b"# B"}


def snapshot(files: dict[str, bytes] = FILES):  # type: ignore[no-untyped-def]
    return parse_course("c", files)


def rows_from(plan: Plan) -> list[ExistingRow]:
    """What the database holds after ``plan`` was applied to an empty project."""
    return [
        ExistingRow(
            w.id,
            w.slug,
            w.record.file_path,
            w.record.content_type,
            w.record.sequence_order,
            w.parent_id,
            False,
            w.record.key,
            w.row_hash,
        )
        for w in plan.inserts
    ]


def test_an_empty_database_gets_every_record_inserted_parents_first() -> None:
    plan = plan_course(snapshot(), [], creator_mind_id=None, persona_mind_id=None)
    assert [w.record.content_type for w in plan.inserts] == [
        "course_outline",
        "course_module",
        "course_lesson",
        "course_lesson",
    ]
    outline, module, *lessons = plan.inserts
    assert module.parent_id == outline.id and all(w.parent_id == module.id for w in lessons)


def test_nothing_changed_means_nothing_to_write() -> None:
    first = plan_course(snapshot(), [], creator_mind_id=None, persona_mind_id=None)
    again = plan_course(snapshot(), rows_from(first), creator_mind_id=None, persona_mind_id=None)
    assert again.is_empty and again.unchanged == 4


def test_an_edit_updates_one_row_and_a_vanished_file_is_soft_deleted() -> None:
    existing = rows_from(plan_course(snapshot(), [], creator_mind_id=None, persona_mind_id=None))
    plan = plan_course(
        snapshot({"lessons/1.1-a.md": b"# A edited"}),
        existing,
        creator_mind_id=None,
        persona_mind_id=None,
    )
    assert [w.record.file_path for w in plan.updates] == ["c/lessons/1.1-a.md"]
    assert plan.deletes == [next(r.id for r in existing if r.file_path == "c/lessons/1.2-b.md")]


def test_a_rejected_file_keeps_its_existing_row() -> None:
    existing = rows_from(plan_course(snapshot(), [], creator_mind_id=None, persona_mind_id=None))
    broken = snapshot({"lessons/1.1-a.md": b"# A", "lessons/1.2-b.md": b"---\n[1, 2]\n---\n"})
    assert broken.rejected == (
        FileIssue("c/lessons/1.2-b.md", "frontmatter is a list, not a mapping"),
    )
    plan = plan_course(broken, existing, creator_mind_id=None, persona_mind_id=None)
    assert plan.is_empty


def test_a_row_not_written_by_syncd_is_left_alone() -> None:
    foreign = ExistingRow(uuid.uuid4(), "hand-made", None, "article", None, None, False, None, None)
    plan = plan_course(snapshot(), [foreign], creator_mind_id=None, persona_mind_id=None)
    assert foreign.id not in plan.deletes and len(plan.inserts) == 4


def test_a_deleted_row_is_revived_when_its_file_returns() -> None:
    existing = rows_from(plan_course(snapshot(), [], creator_mind_id=None, persona_mind_id=None))
    dead = [
        ExistingRow(**{**r.__dict__, "deleted": True}) if r.file_path == "c/lessons/1.2-b.md" else r
        for r in existing
    ]
    plan = plan_course(snapshot(), dead, creator_mind_id=None, persona_mind_id=None)
    assert [w.record.file_path for w in plan.updates] == ["c/lessons/1.2-b.md"] and not plan.inserts


def test_a_minds_change_rewrites_every_row_of_the_course() -> None:
    existing = rows_from(plan_course(snapshot(), [], creator_mind_id=None, persona_mind_id=None))
    plan = plan_course(snapshot(), existing, creator_mind_id=uuid.uuid4(), persona_mind_id=None)
    assert len(plan.updates) == 4


def test_slugs_held_elsewhere_are_taken_back_or_derived() -> None:
    """A slug of syncd's namespace held by a row no syncd wrote is taken back; one a syncd
    row holds is never taken: the new row's slug is derived (the project id appended); the
    legacy outline and module slugs fall back to the "--" forms."""
    snap = snapshot()
    project = uuid.uuid4()
    first = next(c.slug for c in snap.contents if c.file_path == "c/lessons/1.1-a.md")
    second = next(c.slug for c in snap.contents if c.file_path == "c/lessons/1.2-b.md")
    squatter, renamed = uuid.uuid4(), uuid.uuid4()
    holders = {
        "c-outline": SlugHolder(uuid.uuid4(), syncd=False),
        first: SlugHolder(squatter, syncd=False),
        second: SlugHolder(renamed, syncd=True),
    }
    plan = plan_course(
        snap,
        [],
        creator_mind_id=None,
        persona_mind_id=None,
        slug_holders=holders,
        project_id=project,
    )
    slugs = {w.record.key: w.slug for w in plan.inserts}
    assert slugs["outline"] == "c--outline"
    assert slugs["file:c/lessons/1.1-a.md"] == first
    assert slugs["file:c/lessons/1.2-b.md"] == f"{second}-{project.hex[:8]}"
    assert [(r.holder, r.slug) for r in plan.reclaims] == [(squatter, first)]
    assert [(d.wanted, d.write.slug) for d in plan.derived] == [
        ("c-outline", "c--outline"),
        (second, f"{second}-{project.hex[:8]}"),
    ]
    assert not plan.rejected
    # Every candidate held by syncd rows (never in practice): that file alone is rejected.
    held = {
        s: SlugHolder(uuid.uuid4(), syncd=True) for s in (second, f"{second}-{project.hex[:8]}")
    }
    plan = plan_course(
        snap, [], creator_mind_id=None, persona_mind_id=None, slug_holders=held, project_id=project
    )
    assert [r.path for r in plan.rejected] == ["c/lessons/1.2-b.md"]


def test_a_rejected_curriculum_keeps_the_outline_and_module_rows_as_they_are() -> None:
    files = {
        "curriculum.yaml": b"modules:\n  - module_id: 1\n    module_title: Real title\n",
        **FILES,
    }
    existing = rows_from(
        plan_course(snapshot(files), [], creator_mind_id=None, persona_mind_id=None)
    )
    broken = snapshot(
        {**files, "curriculum.yaml": b"modules: [unclosed", "lessons/2.1-c.md": b"# C"}
    )
    assert broken.protected == {"project", "outline", "modules"}
    plan = plan_course(broken, existing, creator_mind_id=None, persona_mind_id=None)
    assert [w.record.key for w in plan.inserts] == ["module:2", "file:c/lessons/2.1-c.md"]
    assert not plan.updates and not plan.deletes


def read_back(plan: Plan, **changes: object) -> list[ExistingRow]:
    """What the database holds after ``plan`` was applied, every syncd-owned field read (as
    verify reads them, and a sync for a row someone else changed), with ``changes``."""
    rows = []
    for w in plan.inserts:
        content = w.record.content
        row = ExistingRow(
            w.id,
            w.slug,
            w.record.file_path,
            w.record.content_type,
            w.record.sequence_order,
            w.parent_id,
            False,
            w.record.key,
            w.row_hash,
            fields=RowFields(
                title=w.record.title,
                content_md5=hashlib.md5(content.encode()).hexdigest() if content else None,  # noqa: S324
                metadata=w.record.metadata,
                fidelity_score=None,
                status=w.status,
                in_project=True,
            ),
            tags=frozenset(w.tags),
            minds=frozenset(w.minds),
        )
        rows.append(dataclasses.replace(row, **changes))  # type: ignore[arg-type]
    return rows


MIND = uuid.uuid4()


def test_rows_as_the_file_says_whose_bookkeeping_is_off_are_only_re_marked() -> None:
    """After a restore every xmin moved and syncd.rows may be older: nothing is rewritten
    and nothing is called a repair; only syncd.rows is written again."""
    first = plan_course(snapshot(), [], creator_mind_id=MIND, persona_mind_id=None)
    restored = read_back(first, changed=True, row_hash=None, row_key=None)
    plan = plan_course(snapshot(), restored, creator_mind_id=MIND, persona_mind_id=None)
    assert (plan.updates, plan.relinks, plan.repaired) == ([], [], [])
    assert len(plan.remarks) == plan.unchanged == 4


def test_a_row_changed_elsewhere_is_rewritten_naming_the_fields_that_differ() -> None:
    first = plan_course(snapshot(), [], creator_mind_id=MIND, persona_mind_id=None)
    rows = read_back(first)
    lesson = rows[2]
    assert lesson.fields is not None
    rows[2] = dataclasses.replace(
        lesson,
        changed=True,
        sequence_order=7,
        fields=dataclasses.replace(lesson.fields, title="edited", status="published"),
    )
    plan = plan_course(snapshot(), rows, creator_mind_id=MIND, persona_mind_id=None)
    assert [(w.record.file_path, w.differs) for w in plan.updates] == [
        ("c/lessons/1.1-a.md", ("title", "sequence_order"))  # the app's status is not named
    ]
    assert plan.repaired == plan.updates


def test_a_link_deleted_elsewhere_is_written_again_without_rewriting_its_row() -> None:
    first = plan_course(snapshot(), [], creator_mind_id=MIND, persona_mind_id=None)
    rows = read_back(first)
    rows[3] = dataclasses.replace(rows[3], minds=frozenset())
    plan = plan_course(snapshot(), rows, creator_mind_id=MIND, persona_mind_id=None)
    assert plan.updates == []
    assert [(w.record.file_path, w.differs) for w in plan.relinks] == [
        ("c/lessons/1.2-b.md", ("minds",))
    ]
    assert plan.repaired == plan.relinks
