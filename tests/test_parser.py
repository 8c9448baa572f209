"""The course model as a pure function of a folder's bytes."""

from __future__ import annotations

import pytest

from syncd.course import OUTLINE_KEY, Content, CourseSnapshot, ParseOptions
from syncd.errors import ParseError
from syncd.layout import content_slug, course_slug, is_relevant, slug_conflicts
from syncd.parser import parse_course
from syncd.text import decode


def parse(
    files: dict[str, str | bytes], course: str = "curso", creator: str | None = None
) -> CourseSnapshot:
    raw = {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}
    return parse_course(course, raw, ParseOptions(default_creator_mind=creator))


def modules(snapshot: CourseSnapshot) -> list[tuple[int | None, str]]:
    return [
        (c.sequence_order, c.title) for c in snapshot.contents if c.content_type == "course_module"
    ]


def lesson(snapshot: CourseSnapshot, name: str) -> Content:
    return next(c for c in snapshot.contents if c.file_path == f"{snapshot.course}/lessons/{name}")


@pytest.mark.parametrize(
    ("curriculum", "expected"),
    [
        (
            "modules:\n  - module_id: 1\n    module_title: A\n  - module_id: 2\n    module_title: B\n",
            [(1, "A"), (2, "B")],
        ),
        ("course:\n  title: T\n  modules:\n    - number: '3'\n      title: C\n", [(3, "C")]),
        (
            "modules:\n  - id: modulo-1\n    title: A\n    lessons: 4\nlessons:\n  - id: '1.1'\n    module: modulo-1\n",
            [(1, "A")],
        ),
        ("modules:\n  - id: module_2\n    title: B\n", [(2, "B")]),
        (
            "---\nversion: '1'\n---\nmodules:\n  - id: week_1\n    title: Semana 1\n",
            [(1, "Semana 1")],
        ),
        ("modules:\n  - id: '0'\n    name: Onboarding\n", [(0, "Onboarding")]),
    ],
    ids=["module_id", "course-block", "modulo-n", "module_n", "multi-document-weeks", "name-key"],
)
def test_every_curriculum_shape_yields_numbered_modules(
    curriculum: str, expected: list[tuple[int, str]]
) -> None:
    assert modules(parse({"curriculum.yaml": curriculum})) == expected


def test_lesson_numbers_come_from_the_file_name_prefix() -> None:
    snapshot = parse(
        {
            "lessons/1.2-a.md": "# A",
            "lessons/01.3-b.md": "# B",
            "lessons/1.4- Com Espaço.md": "# C",
            "lessons/12.10-d.md": "# D",
            "lessons/BONUS-extra.md": "# E",
        }
    )
    got = {
        c.file_path.split("/")[-1]: (c.parent_key, c.sequence_order)
        for c in snapshot.contents
        if c.content_type == "course_lesson" and c.file_path
    }
    assert got == {
        "1.2-a.md": ("module:1", 2),
        "01.3-b.md": ("module:1", 3),
        "1.4- Com Espaço.md": ("module:1", 4),
        "12.10-d.md": ("module:12", 10),
        "BONUS-extra.md": (OUTLINE_KEY, None),
    }
    assert modules(snapshot) == [(1, "Module 1"), (12, "Module 12")]


def test_titles_prefer_frontmatter_then_first_heading_then_file_name() -> None:
    snapshot = parse(
        {
            "lessons/1.1-a.md": "---\ntitle: From FM\n---\n# Heading",
            "lessons/1.2-b.md": "---\nlesson_title: Lesson Title\n---\nno heading",
            "lessons/1.3-c.md": "intro\n\n# The Heading #\n",
            "lessons/1.4-d.md": "no heading at all",
        }
    )
    assert [
        lesson(snapshot, n).title for n in ("1.1-a.md", "1.2-b.md", "1.3-c.md", "1.4-d.md")
    ] == ["From FM", "Lesson Title", "The Heading", "1.4-d"]


def test_module_titles_come_from_curriculum_then_lesson_frontmatter_then_bold_label() -> None:
    snapshot = parse(
        {
            "curriculum.yaml": "modules:\n  - module_id: 1\n    module_title: From Curriculum\n",
            "lessons/1.1-a.md": "# A\n\n**Módulo:** 1 - Ignored\n",
            "lessons/2.1-b.md": "---\nmodule_name: From Frontmatter\n---\n# B\n",
            "lessons/3.1-c.md": "# C\n\n**Módulo:** 3 - Fundamentos  \n**Duração:** 15 minutos\n",
            "lessons/4.1-d.md": "# D\n\n**Duração:** 12 minutos | **Módulo 4:** Estrutura de Aula\n",
        }
    )
    assert modules(snapshot) == [
        (1, "From Curriculum"),
        (2, "From Frontmatter"),
        (3, "Fundamentos"),
        (4, "Estrutura de Aula"),
    ]
    assert lesson(snapshot, "4.1-d.md").metadata["labels"] == {
        "Duração": "12 minutos",
        "Módulo 4": "Estrutura de Aula",
    }


def test_fidelity_and_status_are_taken_only_when_valid() -> None:
    snapshot = parse(
        {
            "lessons/1.1-a.md": "---\nfidelity_score: 0.875\nstatus: published\n---\n# A",
            "lessons/1.2-b.md": "---\nfidelity_score: 87\nstatus: shipped\n---\n# B",
            "lessons/1.3-c.md": "---\nfidelity_score: high\n---\n# C",
        }
    )
    assert [
        (lesson(snapshot, n).fidelity_score, lesson(snapshot, n).status)
        for n in ("1.1-a.md", "1.2-b.md", "1.3-c.md")
    ] == [(0.88, "published"), (None, None), (None, None)]


def test_hidden_editor_temp_and_source_files_are_ignored() -> None:
    assert is_relevant("lessons/1.1-a.md") and is_relevant(".metadata.json")
    for ignored in (
        "lessons/.1.1-a.md.swp",
        "lessons/1.1-a.md~",
        "lessons/#1.1-a.md#",
        "sources/raw.md",
        ".git/x.md",
        "README.md",
        "resources/img.png",
        "lessons/4913",
    ):
        assert not is_relevant(ignored), ignored


def test_slugs_are_stable_and_cannot_collide_across_courses() -> None:
    assert content_slug("a", "lessons/b-x.md") == content_slug("a", "lessons/b-x.md")
    assert content_slug("a", "lessons/b-x.md") != content_slug("a-b", "lessons/x.md")
    assert content_slug("a", "lessons/1.1-X.md") != content_slug("a", "lessons/1-1-x.md")
    assert content_slug("claude-code", "lessons/1.1-nao-e-magia.md").startswith(
        "claude-code--1-1-nao-e-magia-"
    )


def test_a_course_folder_with_any_name_gets_a_derived_stable_slug() -> None:
    snapshot = parse({"lessons/1.1-a.md": "# A"}, course="Meu Curso Avançado!")
    assert snapshot.project.slug == "meu-curso-avancado"
    row = lesson(snapshot, "1.1-a.md")
    assert row.file_path == "Meu Curso Avançado!/lessons/1.1-a.md"  # the path stays the folder's
    assert row.slug.startswith("meu-curso-avancado--1-1-a-")
    assert course_slug("claude_code") == "claude_code"  # a slug already is kept as it is
    assert course_slug("Curso  Novo") == course_slug("curso-novo") == "curso-novo"
    with pytest.raises(ParseError, match="no slug can be derived"):
        parse({"lessons/1.1-a.md": "# A"}, course="¿¡!")


def test_folders_that_derive_one_slug_are_a_conflict_the_first_owner_wins() -> None:
    assert slug_conflicts(["Curso Novo", "curso-novo", "outro"]) == {"Curso Novo": "curso-novo"}
    assert slug_conflicts(["Curso Novo", "curso-novo"], known=["Curso Novo"]) == {
        "curso-novo": "Curso Novo"
    }
    assert slug_conflicts(["B b", "b-B"]) == {"b-B": "B b"}


def test_a_bad_file_is_rejected_alone_and_the_course_still_parses() -> None:
    snapshot = parse(
        {
            "curriculum.yaml": "modules: [unclosed",
            "lessons/1.1-a.md": "---\n- a list\n- not a mapping\n---\n# A",
            "lessons/1.2-b.md": "# B",
        }
    )
    assert [(r.path, r.reason.split(":")[0]) for r in snapshot.rejected] == [
        ("curso/curriculum.yaml", "invalid YAML"),
        ("curso/lessons/1.1-a.md", "frontmatter is a list, not a mapping"),
    ]
    assert [c.file_path for c in snapshot.contents if c.content_type == "course_lesson"] == [
        "curso/lessons/1.2-b.md"
    ]


def test_a_yaml_alias_bomb_is_rejected() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    snapshot = parse({"curriculum.yaml": bomb, "lessons/1.1-a.md": "# A"})
    assert [r.reason for r in snapshot.rejected] == ["YAML expands to more than 50000 nodes"]


def test_text_is_kept_exactly_utf8_with_bom_and_crlf() -> None:
    text = "\ufeff---\r\ntitle: Com BOM\r\n---\r\n# Olá\r\n"
    snapshot = parse({"lessons/1.1-a.md": text})
    assert (lesson(snapshot, "1.1-a.md").content, lesson(snapshot, "1.1-a.md").title) == (
        text,
        "Com BOM",
    )


def test_legacy_encodings_are_repaired_and_binary_is_rejected() -> None:
    decoded = decode("x.md", "Aula de Introdução: você já está pronto?".encode("cp1252") + b"\x00")
    assert (decoded.text, decoded.encoding, decoded.repaired) == (
        "Aula de Introdução: você já está pronto?",
        "cp1252",
        True,
    )
    assert decode("y.md", "já".encode()).repaired is False
    with pytest.raises(ParseError, match="binary"):
        decode("z.md", bytes(range(256)) * 8)


def test_creator_mind_defaults_to_the_setting_and_the_brief_overrides_it() -> None:
    brief = "---\ncreator_mind: owner_b\nmmos_persona:\n  mind_slug: voice_c\n  mind_name: Voice C\n---\n# Brief\n"
    assert (
        parse({"lessons/1.1-a.md": "# A"}, creator="owner_a").project.creator_mind.slug == "owner_a"
    )  # type: ignore[union-attr]
    project = parse({"COURSE-BRIEF.md": brief}, creator="owner_a").project
    assert (
        project.creator_mind.slug,
        project.persona_mind.slug,
        project.persona_mind.display_name,
    ) == (  # type: ignore[union-attr]
        "owner_b",
        "voice_c",
        "Voice C",
    )


# -- issue 9: lessons at any depth, module from the name or the folder, ignore rules -----------


@pytest.mark.parametrize(
    ("path", "module", "number"),
    [
        ("lessons/modulo-03/aula-3.2-exemplo.md", 3, 2),  # the name wins, prefix allowed
        ("lessons/modulo-03/glossario.md", 3, None),  # no number in the name: the folder's
        ("lessons/module-2/01-intro.md", 2, 1),
        ("lessons/m4/licao-7.md", 4, 7),
        ("lessons/05-avancado/03-final.md", 5, 3),
        ("lessons/Modulo 6/lesson-6.1 titulo.md", 6, 1),
        ("lessons/extras/bonus.md", None, None),  # neither: under the outline
        ("lessons/1.4-direct.md", 1, 4),  # direct children as before
        ("lessons/aula-2.3-x.md", 2, 3),
        ("lessons/parte-a/modulo-08/deep/8.9-deeper.md", 8, 9),
    ],
)
def test_a_lesson_at_any_depth_gets_its_module_from_its_name_else_its_folder(
    path: str, module: int | None, number: int | None
) -> None:
    snapshot = parse({path: "# T\n\nbody\n"})
    row = next(c for c in snapshot.contents if c.file_path == f"curso/{path}")
    assert row.content_type == "course_lesson"
    expected_parent = f"module:{module}" if module is not None else OUTLINE_KEY
    assert (row.parent_key, row.sequence_order) == (expected_parent, number)
    if module is not None:
        assert (module, f"Module {module}") in modules(snapshot) or any(
            m == module for m, _ in modules(snapshot)
        )


@pytest.mark.parametrize(
    "path",
    [
        "lessons/README.md",
        "lessons/readme.md",
        "lessons/README_notes.md",
        "lessons/QA-REPORT.md",
        "lessons/modulo-01/QA-REPORT-FINAL.md",
        "lessons/modulo-01/validation-report.md",
        "lessons/modulo-01/.hidden.md",
        "lessons/modulo-01/1.1-x.md~",
        "lessons/modulo-01/#1.1-x.md#",
        "lessons/modulo-01/1.1-x.md.bak",
        "lessons/.drafts/1.1-x.md",
        "resources/README.md",
    ],
)
def test_readmes_reports_and_temp_files_are_ignored_at_every_depth(path: str) -> None:
    assert not is_relevant(path)


def test_a_file_that_only_mentions_readme_is_not_ignored() -> None:
    assert is_relevant("resources/template-readme-projeto.md")
    assert is_relevant("lessons/modulo-01/reporting-basics.md")
