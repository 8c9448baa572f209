"""The real CreatorOS corpus (SYNCD_CORPUS): counts, hierarchy, exact contents, idempotence."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from tests.helpers import run_cli


def test_backfill_of_the_real_corpus(
    capsys: pytest.CaptureFixture[str], corpus_root: Path, db_dsn: str
) -> None:
    first = run_cli(capsys, ["--rescan", "--root", str(corpus_root)], db_dsn)
    assert first.code == 0, first.stderr
    assert "no-migration" in [e["folder"] for e in first.named("folder skipped")]
    assert len(first.named("file repaired")) == 10

    with psycopg.connect(db_dsn) as conn:
        projects = conn.execute("select count(*) from content_projects").fetchone()
        assert projects == (8,)
        lessons = conn.execute(
            """select l.file_path, l.content, l.metadata->>'encoding', l.sequence_order,
                      m.content_type, m.sequence_order, m.project_id = l.project_id
               from contents l left join contents m on m.id = l.parent_content_id
               where l.content_type = 'course_lesson' and l.deleted_at is null"""
        ).fetchall()
    assert len(lessons) == 161

    for path, content, encoding, number, parent_type, parent_number, same_project in lessons:
        raw = (corpus_root / path).read_bytes()
        name = Path(path).name
        if name[0].isdigit():
            module = int(name.split(".", 1)[0])
            assert (parent_type, parent_number, same_project) == ("course_module", module, True), (
                path
            )
            assert number is not None
        else:
            assert parent_type == "course_outline", path
        if encoding is None:
            assert content.encode("utf-8") == raw, f"{path} differs from the file"
        else:
            assert encoding in ("cp1252", "mac-roman"), path
            assert "\x00" not in content and "Duração" in content, path

    second = run_cli(capsys, ["--rescan", "--root", str(corpus_root)], db_dsn)
    total = second.named("reconcile finished")[0]
    assert (total["inserted"], total["updated"], total["deleted"]) == (0, 0, 0)
    assert run_cli(capsys, ["verify", "--root", str(corpus_root)], db_dsn).code == 0
