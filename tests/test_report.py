"""`syncd report`: the operator's monitoring queries as readable tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from tests.helpers import EXAMPLES, doc_section, run_cli


def test_report_shows_writes_hierarchy_quality_rls_and_attribution(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    root = tmp_path / "courses"
    shutil.copytree(EXAMPLES, root)
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn).code == 0
    with psycopg.connect(db_dsn) as conn:  # one broken hierarchy row for the report to find
        conn.execute(
            "update contents set parent_content_id = null where file_path like '%%1.1-por-que-python.md'"
        )
    report = run_cli(capsys, ["report"], db_dsn)
    assert report.code == 0
    out = report.stdout
    for title in (
        "Writes in the last 24 hours",
        "Hierarchy problems",
        "Data quality of live lessons",
        "Row-level security",
        "Mind attribution",
    ):
        assert f"== {title}" in out
    lines = out.splitlines()
    assert any(line.startswith("course_lesson") and line.split()[1] == "7" for line in lines)
    assert any(
        line.startswith("lesson without a module or outline parent") and line.split()[-1] == "1"
        for line in lines
    )
    rls = [line.split() for line in lines if line.startswith(("content", "audience_profiles"))]
    assert {row[0]: row[1] for row in rls if row[1] in ("True", "False")} == {
        t: "True"
        for t in (
            "audience_profiles",
            "content_minds",
            "content_projects",
            "content_tags",
            "contents",
        )
    }
    python_quality = next(line.split() for line in lines if line.startswith("python-em-30-dias"))
    assert python_quality[1:3] == ["4", "0"]  # 4 lessons, none empty


def test_the_documented_outline_query_prints_outline_modules_and_lessons_in_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, db_dsn: str
) -> None:
    section = doc_section("docs/mapping.md", "A course's outline → modules → lessons")
    assert "```sql\n" in section, "the outline query is gone from docs/mapping.md"
    query = section.split("```sql\n", 1)[1].split("```", 1)[0]
    root = tmp_path / "courses"
    shutil.copytree(EXAMPLES, root)
    assert run_cli(capsys, ["--rescan", "--root", str(root)], db_dsn).code == 0
    with psycopg.connect(db_dsn) as conn:
        outline = [line for (line,) in conn.execute(query)]
    assert outline == [
        "Python em 30 Dias: do Zero à Primeira Automação",
        "    1. Fundamentos",
        "        1. Aula 1.1 - Por que Python?",
        "        2. Instalando tudo em 10 minutos",
        "    2. Automação na prática",
        "        1. Aula 2.1 - Lendo planilhas",
        "    Bônus: atalhos do editor que economizam horas",
        "    Cheatsheet de Python",
        "    quiz-modulo-1",
    ]
