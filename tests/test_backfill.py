"""`syncd --rescan` on a real PostgreSQL: the hierarchy, idempotence, drift, adoption."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest

from syncd import migrate
from syncd.layout import content_slug
from tests.helpers import EXAMPLES, Run, lesson_text, make_course, run_cli, write


def rescan(
    capsys: pytest.CaptureFixture[str],
    root: Path,
    dsn: str,
    *extra: str,
    env: dict[str, str] | None = None,
) -> Run:
    return run_cli(capsys, ["--rescan", "--root", str(root), *extra], dsn, env)


def verify(capsys: pytest.CaptureFixture[str], root: Path, dsn: str) -> Run:
    return run_cli(capsys, ["verify", "--root", str(root)], dsn)


def rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(sql, params or None).fetchall()


@pytest.fixture
def examples(tmp_path: Path) -> Path:
    root = tmp_path / "courses"
    shutil.copytree(EXAMPLES, root)
    return root


def test_rescan_turns_example_courses_into_a_linked_hierarchy(
    capsys: pytest.CaptureFixture[str], examples: Path, db_dsn: str
) -> None:
    run = rescan(capsys, examples, db_dsn, env={"SYNCD_CREATOR_MIND": "team_lead"})
    assert run.code == 0, run.stderr
    # courses are written by parallel workers: they finish in any order
    assert sorted(e["course"] for e in run.named("course synced")) == [
        "escrita-criativa",
        "python-em-30-dias",
    ]

    projects = dict(rows(db_dsn, "select slug, name from content_projects"))
    assert projects == {
        "python-em-30-dias": "Python em 30 Dias: do Zero à Primeira Automação",
        "escrita-criativa": "Escrita Criativa para Redes Sociais",
    }
    lessons = rows(
        db_dsn,
        """
        select l.file_path, l.sequence_order, m.content_type, m.sequence_order, l.title
        from contents l join contents m on m.id = l.parent_content_id
        where l.content_type = 'course_lesson' order by l.file_path""",
    )
    assert lessons == [
        (
            "escrita-criativa/lessons/01.1-voz-autoral.md",
            1,
            "course_module",
            1,
            "Aula 1.1 - O que é voz autoral",
        ),
        (
            "escrita-criativa/lessons/01.2-Exercicio de Diario.md",
            2,
            "course_module",
            1,
            "Aula 1.2 - Exercício de diário",
        ),
        (
            "escrita-criativa/lessons/02.1-primeira-linha.md",
            1,
            "course_module",
            2,
            "Aula 2.1 - A primeira linha",
        ),
        (
            "python-em-30-dias/lessons/1.1-por-que-python.md",
            1,
            "course_module",
            1,
            "Aula 1.1 - Por que Python?",
        ),
        (
            "python-em-30-dias/lessons/1.2-instalando.md",
            2,
            "course_module",
            1,
            "Instalando tudo em 10 minutos",
        ),
        (
            "python-em-30-dias/lessons/2.1-lendo-planilhas.md",
            1,
            "course_module",
            2,
            "Aula 2.1 - Lendo planilhas",
        ),
        (
            "python-em-30-dias/lessons/BONUS-atalhos-do-editor.md",
            None,
            "course_outline",
            None,
            "Bônus: atalhos do editor que economizam horas",
        ),
    ]
    modules = rows(
        db_dsn,
        """select p.slug, c.sequence_order, c.title from contents c
        join content_projects p on p.id = c.project_id where c.content_type = 'course_module'
        order by 1, 2""",
    )
    assert modules == [
        ("escrita-criativa", 1, "Encontrando sua voz"),
        ("escrita-criativa", 2, "Ganchos que prendem"),
        ("python-em-30-dias", 1, "Fundamentos"),
        ("python-em-30-dias", 2, "Automação na prática"),
    ]
    others = rows(
        db_dsn,
        "select file_path, metadata->>'kind' from contents where content_type = 'other' order by 1",
    )
    assert others == [
        ("escrita-criativa/research/referencias.md", "research"),
        ("python-em-30-dias/assessments/quiz-modulo-1.yaml", "assessments"),
        ("python-em-30-dias/resources/cheatsheet.md", "resources"),
    ]
    on_disk = (examples / "python-em-30-dias/lessons/1.2-instalando.md").read_text(encoding="utf-8")
    lesson = rows(
        db_dsn,
        """select content, status, fidelity_score, metadata->>'module_name', ai_generated
        from contents where file_path = 'python-em-30-dias/lessons/1.2-instalando.md'""",
    )
    assert lesson == [(on_disk, "reviewed", Decimal("0.91"), "Fundamentos", True)]
    labels = rows(
        db_dsn,
        """select metadata->'labels' from contents
        where file_path = 'python-em-30-dias/lessons/1.1-por-que-python.md'""",
    )[0][0]
    assert labels == {
        "Módulo": "1 - Fundamentos",
        "Duração": "10 minutos",
        "Nível Bloom": "Understand",
    }


def test_courses_link_to_their_creator_persona_audience_and_tags(
    capsys: pytest.CaptureFixture[str], examples: Path, db_dsn: str
) -> None:
    assert rescan(capsys, examples, db_dsn, env={"SYNCD_CREATOR_MIND": "team_lead"}).code == 0
    linked = rows(
        db_dsn,
        """select p.slug, c.slug, s.slug, a.slug is not null, p.description
        from content_projects p left join minds c on c.id = p.creator_mind_id
        left join minds s on s.id = p.persona_mind_id
        left join audience_profiles a on a.id = p.target_audience_id order by 1""",
    )
    assert linked == [
        ("escrita-criativa", "team_lead", None, False, None),
        # the brief's creator_mind: overrides SYNCD_CREATOR_MIND
        (
            "python-em-30-dias",
            "ana_souza",
            "ana_souza",
            True,
            "Aprenda Python resolvendo problemas reais do seu trabalho, uma aula curta por dia.",
        ),
    ]
    roles = rows(
        db_dsn,
        """select distinct m.slug, cm.role from content_minds cm
        join minds m on m.id = cm.mind_id order by 1""",
    )
    assert roles == [("ana_souza", "creator"), ("team_lead", "creator")]
    outline_tags = rows(
        db_dsn,
        """select t.name from content_tags ct join tags t on t.id = ct.tag_id
        join contents c on c.id = ct.content_id
        where c.slug = 'python-em-30-dias-outline' order by 1""",
    )
    assert [t for (t,) in outline_tags] == ["Automação", "Iniciantes", "Programação", "Python"]
    untracked = rows(
        db_dsn,
        "select count(*) from contents where file_path like '%/sources/%' or file_path like '%README%'",
    )
    assert untracked == [(0,)]


def test_second_rescan_writes_nothing(
    capsys: pytest.CaptureFixture[str], examples: Path, db_dsn: str
) -> None:
    assert rescan(capsys, examples, db_dsn).code == 0
    before = rows(db_dsn, "select id, xmin::text, updated_at from contents order by id")
    second = rescan(capsys, examples, db_dsn)
    assert second.code == 0
    total = second.named("reconcile finished")[0]
    assert (total["inserted"], total["updated"], total["deleted"]) == (0, 0, 0)
    assert rows(db_dsn, "select id, xmin::text, updated_at from contents order by id") == before


def test_a_twenty_lesson_course_lands_in_one_transaction(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    make_course(tmp_path, "big-course", lessons=20)
    run = rescan(capsys, tmp_path, db_dsn)
    line = run.named("course synced")[0]
    assert (line["course"], line["transactions"], line["inserted"]) == ("big-course", 1, 20 + 4 + 1)
    writers = rows(db_dsn, "select count(distinct xmin::text), count(*) from contents")
    assert writers == [(1, 25)]


def test_verify_names_an_edited_and_a_deleted_lesson_and_rescan_converges(
    capsys: pytest.CaptureFixture[str], examples: Path, db_dsn: str
) -> None:
    assert rescan(capsys, examples, db_dsn).code == 0
    assert verify(capsys, examples, db_dsn).code == 0
    edited = examples / "python-em-30-dias/lessons/1.1-por-que-python.md"
    deleted = examples / "escrita-criativa/lessons/02.1-primeira-linha.md"
    edited.write_text(edited.read_text(encoding="utf-8") + "\nNova seção.\n", encoding="utf-8")
    deleted_text = deleted.read_text(encoding="utf-8")
    deleted.unlink()

    drift = verify(capsys, examples, db_dsn)
    assert drift.code == 1
    assert (
        "stale" in drift.stdout
        and "python-em-30-dias/lessons/1.1-por-que-python.md" in drift.stdout
    )
    assert (
        "gone" in drift.stdout and "escrita-criativa/lessons/02.1-primeira-linha.md" in drift.stdout
    )

    (row_id,) = rows(
        db_dsn,
        "select id from contents where file_path = %s",
        "escrita-criativa/lessons/02.1-primeira-linha.md",
    )[0]
    third = rescan(capsys, examples, db_dsn)
    assert third.named("reconcile finished")[0]["updated"] >= 1
    assert rows(db_dsn, "select deleted_at is not null from contents where id = %s", row_id) == [
        (True,)
    ]
    assert verify(capsys, examples, db_dsn).code == 0

    write(deleted, deleted_text)  # the file returns: the same row comes back to life
    assert rescan(capsys, examples, db_dsn).code == 0
    assert rows(
        db_dsn,
        "select id, deleted_at from contents where file_path = %s",
        "escrita-criativa/lessons/02.1-primeira-linha.md",
    ) == [(row_id, None)]


def test_legacy_rows_are_adopted_in_place(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    make_course(tmp_path, "legacy", lessons=2)
    with psycopg.connect(db_dsn) as conn:
        project = conn.execute("""insert into content_projects (slug, name, project_type)
            values ('legacy', 'Legacy', 'course') returning id""").fetchone()[0]
        outline = conn.execute(
            """insert into contents (slug, title, content_type, project_id)
            values ('legacy-outline', 'old', 'course_outline', %s) returning id""",
            (project,),
        ).fetchone()[0]
        module = conn.execute(
            """insert into contents (slug, title, content_type, project_id,
            parent_content_id, sequence_order) values ('legacy-modulo-1', 'old', 'course_module', %s, %s, 1)
            returning id""",
            (project, outline),
        ).fetchone()[0]
        lesson = conn.execute(
            """insert into contents (slug, title, content_type, project_id,
            parent_content_id, sequence_order) values ('legacy-licao-1-2', 'old', 'course_lesson', %s, %s, 2)
            returning id""",
            (project, module),
        ).fetchone()[0]
    assert rescan(capsys, tmp_path, db_dsn).code == 0
    adopted = rows(db_dsn, "select id, slug, file_path from contents order by slug")
    assert len(adopted) == 4
    by_slug = {slug: (row_id, path) for row_id, slug, path in adopted}
    assert by_slug["legacy-outline"][0] == outline
    assert by_slug["legacy-modulo-1"][0] == module
    assert by_slug["legacy-licao-1-2"] == (lesson, "legacy/lessons/1.2-lesson-1-2.md")
    assert verify(capsys, tmp_path, db_dsn).code == 0


def test_a_slug_held_by_a_row_no_syncd_wrote_is_taken_back(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    """A row of another project holds the slug of a file (written before the namespace was
    reserved, or by the owner): the file syncs under its slug, the other row gets a new
    one (tests/test_tenants.py has the tenants' story)."""
    make_course(tmp_path, "clash", lessons=3)
    taken = content_slug("clash", "lessons/1.2-lesson-1-2.md")
    with psycopg.connect(db_dsn) as conn:
        other = conn.execute("""insert into content_projects (slug, name, project_type)
            values ('someone-else', 'Other', 'course') returning id""").fetchone()[0]
        theirs = conn.execute(
            """insert into contents (slug, title, content_type, project_id)
            values (%s, 'theirs', 'article', %s) returning id""",
            (taken, other),
        ).fetchone()[0]
    run = rescan(capsys, tmp_path, db_dsn)
    assert run.code == 0
    assert run.named("file rejected") == []
    assert [(e["path"], e["slug"]) for e in run.named("slug reclaimed")] == [
        ("clash/lessons/1.2-lesson-1-2.md", taken)
    ]
    synced = rows(
        db_dsn,
        """select file_path, slug = %s from contents where project_id =
        (select id from content_projects where slug = 'clash') and content_type = 'course_lesson'
        order by 1""",
        taken,
    )
    assert synced == [
        ("clash/lessons/1.1-lesson-1-1.md", False),
        ("clash/lessons/1.2-lesson-1-2.md", True),
        ("clash/lessons/1.3-lesson-1-3.md", False),
    ]
    [(title, project, slug)] = rows(
        db_dsn, "select title, project_id, slug from contents where id = %s", theirs
    )
    assert (title, project) == ("theirs", other) and slug.startswith("reclaimed--")
    assert verify(capsys, tmp_path, db_dsn).code == 0


def test_a_vanished_course_folder_archives_its_project_and_comes_back(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    make_course(tmp_path, "stays", lessons=1)
    gone = make_course(tmp_path, "goes", lessons=2)
    assert rescan(capsys, tmp_path, db_dsn).code == 0
    parked = tmp_path.parent / "parked"
    gone.rename(parked)
    run = rescan(capsys, tmp_path, db_dsn)
    assert run.named("course archived")[0]["course"] == "goes"
    assert rows(db_dsn, "select slug, status from content_projects order by 1") == [
        ("goes", "archived"),
        ("stays", "planning"),
    ]
    assert rows(
        db_dsn,
        """select count(*) filter (where deleted_at is null) from contents
        where project_id = (select id from content_projects where slug = 'goes')""",
    ) == [(0,)]
    parked.rename(gone)
    assert rescan(capsys, tmp_path, db_dsn).code == 0
    assert rows(db_dsn, "select status from content_projects where slug = 'goes'") == [
        ("planning",)
    ]
    assert verify(capsys, tmp_path, db_dsn).code == 0


def test_an_emptied_root_is_refused_instead_of_archiving_everything(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    make_course(root, "precious", lessons=2)
    assert rescan(capsys, root, db_dsn).code == 0
    shutil.rmtree(root / "precious")
    run = rescan(capsys, root, db_dsn)
    assert run.code == 5
    assert "refusing to archive" in run.named("course root unavailable")[0]["reason"]
    assert rows(db_dsn, "select status from content_projects") == [("planning",)]
    missing = rescan(capsys, tmp_path / "not-mounted", db_dsn)
    assert missing.code == 5


def test_kill_switch_and_dry_run_write_nothing(
    capsys: pytest.CaptureFixture[str], examples: Path, db_dsn: str
) -> None:
    off = rescan(capsys, examples, db_dsn, env={"CREATOR_OS_DB_PERSIST": "false"})
    assert off.code == 0
    assert off.named("course planned (nothing written)")
    dry = rescan(capsys, examples, db_dsn, "--dry-run")
    assert dry.code == 0
    assert "+ python-em-30-dias/lessons/1.1-por-que-python.md" in dry.stdout
    assert rows(db_dsn, "select count(*) from contents") == [(0,)]
    assert rows(db_dsn, "select count(*) from content_projects") == [(0,)]


def test_a_legacy_encoded_lesson_is_repaired_not_rejected(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    course = make_course(tmp_path, "legado", lessons=1)
    raw = "# Aula 1.2 - Introdução\n\n**Duração:** 5 minutos\n\nVocê não está sozinho.\n"
    write(course / "lessons/1.2-introducao.md", raw.encode("cp1252") + b"\x00\n")
    run = rescan(capsys, tmp_path, db_dsn)
    assert run.code == 0
    assert [w["path"] for w in run.named("file repaired")] == ["legado/lessons/1.2-introducao.md"]
    stored = rows(
        db_dsn,
        """select title, content, metadata->>'encoding', metadata->>'text_repaired'
        from contents where file_path = 'legado/lessons/1.2-introducao.md'""",
    )
    assert stored == [("Aula 1.2 - Introdução", raw + "\n", "cp1252", "true")]
    assert verify(capsys, tmp_path, db_dsn).code == 0


def test_exit_codes_for_configuration_unreachable_database_and_unmigrated_schema(
    capsys: pytest.CaptureFixture[str], examples: Path, empty_dsn: str
) -> None:
    bad_config = rescan(capsys, examples, empty_dsn, env={"SYNCD_CREATOR_MIND": "Not A Slug!"})
    assert bad_config.code == 2
    unreachable = rescan(
        capsys, examples, "postgresql://syncd@127.0.0.1:1/nowhere?connect_timeout=2"
    )
    assert unreachable.code == 3
    assert unreachable.named("database unavailable")
    unmigrated = rescan(capsys, examples, empty_dsn)
    assert unmigrated.code == 4
    assert "syncd migrate" in unmigrated.named("database refused syncd")[0]["reason"]
    status = run_cli(capsys, ["migrate", "--status"], empty_dsn)
    assert status.code == 0 and status.stdout.count("pending") == len(migrate.discover())
    assert run_cli(capsys, ["migrate"], empty_dsn).code == 0
    assert rescan(capsys, examples, empty_dsn).code == 0


def test_lesson_rows_follow_the_lesson_number_prefix(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    course = tmp_path / "numbers"
    write(course / "lessons/00.1-zero.md", lesson_text(0, 1))
    write(course / "lessons/01.10-ten.md", lesson_text(1, 10))
    write(course / "lessons/3.2-gap.md", lesson_text(3, 2))
    assert rescan(capsys, tmp_path, db_dsn).code == 0
    got = rows(
        db_dsn,
        """select l.sequence_order, m.sequence_order, m.title from contents l
        join contents m on m.id = l.parent_content_id where l.content_type = 'course_lesson' order by 2, 1""",
    )
    assert got == [(1, 0, "Module title 0"), (10, 1, "Module title 1"), (2, 3, "Module title 3")]


def test_a_role_without_the_writer_privileges_is_refused_at_start_naming_them(
    capsys: pytest.CaptureFixture[str], examples: Path, db_dsn: str
) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        conn.execute("create role weak_writer login")
        conn.execute("grant usage on schema syncd to weak_writer")
        conn.execute("grant select on syncd.schema_migrations to weak_writer")
    weak = psycopg.conninfo.make_conninfo(db_dsn, user="weak_writer")
    run = rescan(capsys, examples, weak)
    assert run.code == 4
    reason = run.named("database refused syncd")[0]["reason"]
    assert "INSERT on public.contents" in reason
    assert (
        "row access to public.contents (every row, through a policy for syncd_writer, or BYPASSRLS)"
        in reason
    )
    assert rows(db_dsn, "select count(*) from contents") == [(0,)]


def test_unchanged_files_are_not_reread_but_an_edit_hidden_behind_an_old_mtime_is_caught(
    capsys: pytest.CaptureFixture[str], examples: Path, db_dsn: str
) -> None:
    assert rescan(capsys, examples, db_dsn).code == 0
    stats = dict(rows(db_dsn, "select course, stat_fingerprint from syncd.courses"))
    assert all(stats.values())
    for path in (examples / "python-em-30-dias").rglob("*.md"):
        path.touch()  # new mtime, same bytes: read again, nothing written, new stat kept
    touched = rescan(capsys, examples, db_dsn)
    total = touched.named("reconcile finished")[0]
    assert (total["inserted"], total["updated"], total["skipped"]) == (0, 0, 2)
    after = dict(rows(db_dsn, "select course, stat_fingerprint from syncd.courses"))
    assert after["python-em-30-dias"] != stats["python-em-30-dias"]
    assert after["escrita-criativa"] == stats["escrita-criativa"]

    lesson = examples / "python-em-30-dias/lessons/2.1-lendo-planilhas.md"
    old = lesson.stat()
    lesson.write_text(
        lesson.read_text(encoding="utf-8").replace("somar", "SOMAR"), encoding="utf-8"
    )
    os.utime(lesson, ns=(old.st_atime_ns, old.st_mtime_ns))  # same size and mtime: only ctime moved
    edited = rescan(capsys, examples, db_dsn)
    assert edited.named("reconcile finished")[0]["updated"] == 1
    assert verify(capsys, examples, db_dsn).code == 0
