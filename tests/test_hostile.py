"""Hostile input against one running daemon: every case is its own course, mutated after a
good baseline was synced. Each asserts that the daemon keeps running, that a bad file is
reported once by path and reason, that every other file of that course and of other
courses still syncs, and that nothing already in the database is damaged."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import Server
from tests.daemon_harness import DaemonProcess
from tests.helpers import lesson_text, write

# Under xdist (./test.sh) the module's tests share one worker: they all read the one daemon
# of the module fixture ``hostile_run``, which would otherwise start again on each worker.
pytestmark = pytest.mark.xdist_group("hostile")

MAX_BYTES = 65_536
BASELINE_CURRICULUM = (
    'title: "Baseline"\nmodules:\n  - module_id: 1\n    module_title: "Baseline module"\n'
)
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n"
    for i in range(8)
)


@dataclass(frozen=True)
class Case:
    name: str
    mutate: Callable[[Path], None]
    rejected: str | None = None  # path inside the course folder that must be rejected
    reason: str = ""
    check: Callable[[psycopg.Connection[Any], str], None] | None = None
    course: str | None = None  # a case that creates its own (invalid) course folder


def lesson(n: int) -> str:
    return f"lessons/1.{n}-l{n}.md"


def overwrite(rel: str, data: str | bytes) -> Callable[[Path], None]:
    return lambda course: write(course / rel, data)


def add(rel: str, data: str | bytes) -> Callable[[Path], None]:
    return overwrite(rel, data)


def symlink(rel: str, target: str | None) -> Callable[[Path], None]:
    def make(course: Path) -> None:
        link = course / rel
        os.symlink(target or link, link)

    return make


def unreadable(rel: str) -> Callable[[Path], None]:
    def make(course: Path) -> None:
        path = course / rel
        if os.geteuid() == 0:  # root reads any mode: a socket file cannot be opened at all
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(str(path))
        else:
            write(path, lesson_text(1, 5))
            path.chmod(0)

    return make


def created_then_deleted(course: Path) -> None:
    path = write(course / "lessons/1.6-flash.md", lesson_text(1, 6))
    path.unlink()


def binary(_: Path) -> bytes:
    return random.Random(7).randbytes(4096)


def row(conn: psycopg.Connection[Any], path: str) -> tuple[Any, ...] | None:
    return conn.execute(
        "select title, content, fidelity_score, status, slug, deleted_at, metadata from contents where file_path = %s",
        (path,),
    ).fetchone()


def kept_baseline(rel: str) -> Callable[[psycopg.Connection[Any], str], None]:
    def check(conn: psycopg.Connection[Any], course: str) -> None:
        found = row(conn, f"{course}/{rel}")
        assert found is not None and found[1] == lesson_text(1, 2) and found[5] is None

    return check


def module_title_kept(conn: psycopg.Connection[Any], course: str) -> None:
    titles = conn.execute(
        "select title from contents where slug = %s and deleted_at is null", (f"{course}-modulo-1",)
    ).fetchall()
    assert titles == [("Baseline module",)]


def project_kept(conn: psycopg.Connection[Any], course: str) -> None:
    assert conn.execute(
        "select name, status from content_projects where slug = %s", (course,)
    ).fetchone() == (
        "Baseline",
        "planning",
    )


def accepted_with(
    title: str, content: str | None = None
) -> Callable[[psycopg.Connection[Any], str], None]:
    def check(conn: psycopg.Connection[Any], course: str) -> None:
        found = row(conn, f"{course}/{lesson(2)}")
        assert found is not None and found[0] == title
        if content is not None:
            assert found[1] == content

    return check


def field_dropped(conn: psycopg.Connection[Any], course: str) -> None:
    found = row(conn, f"{course}/{lesson(2)}")
    assert (
        found is not None
        and found[0] == "Still a lesson"
        and found[2] is None
        and found[3] == "draft"
    )


def accepted_path(rel: str) -> Callable[[psycopg.Connection[Any], str], None]:
    def check(conn: psycopg.Connection[Any], course: str) -> None:
        found = row(conn, f"{course}/{rel}")
        assert found is not None and found[5] is None, rel

    return check


def no_row(rel: str) -> Callable[[psycopg.Connection[Any], str], None]:
    def check(conn: psycopg.Connection[Any], course: str) -> None:
        assert row(conn, f"{course}/{rel}") is None

    return check


def literal_title(conn: psycopg.Connection[Any], course: str) -> None:
    found = row(conn, f"{course}/{lesson(2)}")
    assert found is not None and found[0] == "'; DROP TABLE contents; --"
    assert conn.execute("select count(*) from contents").fetchone()[0] > 0  # type: ignore[index]


def traversal_is_just_text(conn: psycopg.Connection[Any], course: str) -> None:
    found = row(conn, f"{course}/{lesson(2)}")
    assert found is not None and found[0] == "../../../etc/passwd"
    assert found[4].startswith(f"{course}--") and "/" not in found[4] and ".." not in found[4]


def no_file_outside_root_read(conn: psycopg.Connection[Any], course: str) -> None:
    assert conn.execute(
        "select count(*) from contents where content like '%%root:x:0:0%%'"
    ).fetchone() == (0,)


def both_duplicates(conn: psycopg.Connection[Any], course: str) -> None:
    orders = conn.execute(
        """select sequence_order from contents where file_path in (%s, %s) and deleted_at is null""",
        (f"{course}/{lesson(2)}", f"{course}/lessons/1.2-duplicate.md"),
    ).fetchall()
    assert orders == [(2,), (2,)]


def repaired_text(conn: psycopg.Connection[Any], course: str) -> None:
    found = row(conn, f"{course}/{lesson(2)}")
    assert found is not None and found[0] == "Aula 1.2 - Introdução" and "\x00" not in found[1]
    assert found[6]["encoding"] == "cp1252" and found[6]["text_repaired"] is True


CASES = [
    Case(
        "malformed-frontmatter",
        overwrite(lesson(2), "---\ntitle: [unclosed\n---\n# x\n"),
        lesson(2),
        "invalid frontmatter YAML",
        kept_baseline(lesson(2)),
    ),
    Case(
        "frontmatter-list",
        overwrite(lesson(2), "---\n- a\n- b\n---\n# x\n"),
        lesson(2),
        "frontmatter is a list",
        kept_baseline(lesson(2)),
    ),
    Case(
        "frontmatter-scalar",
        overwrite(lesson(2), "---\njust a sentence\n---\n# x\n"),
        lesson(2),
        "frontmatter is a str",
        kept_baseline(lesson(2)),
    ),
    Case(
        "alias-bomb-frontmatter",
        overwrite(lesson(2), f"---\n{BOMB}---\n# x\n"),
        lesson(2),
        "YAML expands",
        kept_baseline(lesson(2)),
    ),
    Case(
        "alias-bomb-curriculum",
        overwrite("curriculum.yaml", BOMB),
        "curriculum.yaml",
        "YAML expands",
        module_title_kept,
    ),
    Case(
        "malformed-curriculum",
        overwrite("curriculum.yaml", "modules: [unclosed\n"),
        "curriculum.yaml",
        "invalid YAML",
        module_title_kept,
    ),
    Case(
        "empty-curriculum",
        overwrite("curriculum.yaml", ""),
        "curriculum.yaml",
        "curriculum.yaml is empty",
        module_title_kept,
    ),
    Case(
        "curriculum-not-a-mapping",
        overwrite("curriculum.yaml", "- a\n- b\n"),
        "curriculum.yaml",
        "holds a list",
        module_title_kept,
    ),
    Case(
        "deep-nesting",
        overwrite(lesson(2), "---\nx: " + "[" * 5000 + "]" * 5000 + "\n---\n# x\n"),
        lesson(2),
        "invalid frontmatter YAML",  # PyYAML refuses flow nesting this deep
        kept_baseline(lesson(2)),
    ),
    Case(
        "binary-named-md",
        lambda c: write(c / lesson(2), binary(c)),
        lesson(2),
        "binary",
        kept_baseline(lesson(2)),
    ),
    Case(
        "empty-file", overwrite(lesson(2), b""), lesson(2), "empty file", kept_baseline(lesson(2))
    ),
    Case(
        "over-size-limit",
        add("lessons/1.4-big.md", "# Big\n" + "x" * MAX_BYTES),
        "lessons/1.4-big.md",
        "larger than the size limit",
        no_row("lessons/1.4-big.md"),
    ),
    Case(
        "symlink-loop", symlink("lessons/1.5-loop.md", None), "lessons/1.5-loop.md", "symbolic link"
    ),
    Case(
        "symlink-outside-root",
        symlink("lessons/1.5-passwd.md", "/etc/passwd"),
        "lessons/1.5-passwd.md",
        "symbolic link",
        no_file_outside_root_read,
    ),
    Case(
        "unreadable-file",
        unreadable("lessons/1.5-locked.md"),
        "lessons/1.5-locked.md",
        "",
        no_row("lessons/1.5-locked.md"),
    ),
    Case(
        "invalid-course-slug",
        lambda root: write(root / "¿¡!" / lesson(1), lesson_text(1, 1)),
        "",
        "no slug can be derived",
        course="¿¡!",
    ),
    Case(
        "bad-metadata-json",
        overwrite(".metadata.json", "{not json"),
        ".metadata.json",
        "invalid JSON",
        project_kept,
    ),
    Case(
        "bad-brief",
        overwrite("COURSE-BRIEF.md", "---\n[1, 2]\n---\n# Brief\n"),
        "COURSE-BRIEF.md",
        "frontmatter is a list",
        project_kept,
    ),
    Case(
        "lesson-number-too-large",
        add("lessons/40000.1-huge.md", lesson_text(1, 9)),
        "lessons/40000.1-huge.md",
        "larger than 32767",
        no_row("lessons/40000.1-huge.md"),
    ),
    # accepted: valid text in an unusual form is a lesson, not an attack
    Case(
        "utf8-bom",
        overwrite(lesson(2), "\ufeff# Título com BOM\n\ncorpo\n"),
        None,
        "",
        accepted_with("Título com BOM", "\ufeff# Título com BOM\n\ncorpo\n"),
    ),
    Case(
        "crlf-line-ends",
        overwrite(lesson(2), "# Windows\r\n\r\ncorpo\r\n"),
        None,
        "",
        accepted_with("Windows", "# Windows\r\n\r\ncorpo\r\n"),
    ),
    Case(
        "deleted-between-event-and-read",
        created_then_deleted,
        None,
        "",
        no_row("lessons/1.6-flash.md"),
    ),
    Case(
        "name-with-spaces",
        add("lessons/1.6 Nome Com Espaços.md", lesson_text(1, 6)),
        None,
        "",
        accepted_path("lessons/1.6 Nome Com Espaços.md"),
    ),
    Case(
        "unicode-name",
        add("lessons/1.6-ação-📚.md", lesson_text(1, 6)),
        None,
        "",
        accepted_path("lessons/1.6-ação-📚.md"),
    ),
    Case(
        "newline-in-name",
        add("lessons/1.6-new\nline.md", lesson_text(1, 6)),
        None,
        "",
        accepted_path("lessons/1.6-new\nline.md"),
    ),
    Case(
        "sql-in-title",
        overwrite(lesson(2), "# '; DROP TABLE contents; --\n"),
        None,
        "",
        literal_title,
    ),
    Case(
        "path-traversal-in-title-and-slug",
        overwrite(lesson(2), "---\ntitle: ../../../etc/passwd\nslug: ../../evil\n---\nbody\n"),
        None,
        "",
        traversal_is_just_text,
    ),
    Case(
        "fidelity-out-of-range",
        overwrite(lesson(2), "---\ntitle: Still a lesson\nfidelity_score: 1.7\n---\nbody\n"),
        None,
        "",
        field_dropped,
    ),
    Case(
        "fidelity-not-a-number",
        overwrite(lesson(2), "---\ntitle: Still a lesson\nfidelity_score: high\n---\nbody\n"),
        None,
        "",
        field_dropped,
    ),
    Case(
        "status-outside-check",
        overwrite(lesson(2), "---\ntitle: Still a lesson\nstatus: shipped\n---\nb\n"),
        None,
        "",
        field_dropped,
    ),
    Case(
        "two-lessons-same-number",
        add("lessons/1.2-duplicate.md", lesson_text(1, 2)),
        None,
        "",
        both_duplicates,
    ),
    Case(
        "legacy-encoding-with-nul",
        overwrite(
            lesson(2), "# Aula 1.2 - Introdução\n\nVocê está pronto.\n".encode("cp1252") + b"\x00"
        ),
        None,
        "",
        repaired_text,
    ),
]


def course_name(index: int, case: Case) -> str:
    return case.course or f"h{index:02d}-{case.name}"


@pytest.fixture(scope="module")
def hostile_run(
    pg_server: Server, migrated_template: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[DaemonProcess, str, Path]]:
    name = pg_server.create_database(template=migrated_template)
    dsn = pg_server.dsn(name)
    root = tmp_path_factory.mktemp("hostile") / "courses"
    for index, case in enumerate([*CASES, Case("bystander", lambda c: None)]):
        if case.course:
            continue
        course = root / course_name(index, case)
        write(course / "COURSE-BRIEF.md", "---\ncreator_mind: owner_a\n---\n# Brief\n")
        write(course / "curriculum.yaml", BASELINE_CURRICULUM)
        write(course / ".metadata.json", '{"stage": "baseline"}')
        for n in (1, 2):
            write(course / lesson(n), lesson_text(1, n))
    daemon = DaemonProcess(root, dsn, "--quiet-ms", "300", "--max-file-bytes", str(MAX_BYTES))
    try:
        daemon.wait_event("daemon ready", timeout=60)
        for index, case in enumerate(CASES):
            target = root if case.course else root / course_name(index, case)
            case.mutate(target)
            if not case.course:
                write(target / lesson(3), lesson_text(1, 3))
        write(root / f"h{len(CASES):02d}-bystander" / lesson(3), lesson_text(1, 3))

        def converged() -> bool:
            with psycopg.connect(dsn) as conn:
                synced = conn.execute(
                    "select count(*) from contents where file_path like %s and deleted_at is null",
                    ("%/lessons/1.3-l3.md",),
                ).fetchone()
            return synced == (
                len(CASES),
            )  # every case course but the invalid one, plus the bystander

        daemon.wait_for(converged, timeout=90, what="every course's new lesson synced")

        def logged() -> set[str]:
            """Courses with a `course synced` line, inserting, since the daemon was ready: a
            course's `file rejected` and `field ignored` lines come before it."""
            events = list(daemon.events)
            ready = next(i for i, e in enumerate(events) if e.get("event") == "daemon ready")
            return {
                e["course"]
                for e in events[ready + 1 :]
                if e.get("event") == "course synced" and e["inserted"] >= 1
            }

        # the rows are seen a moment before the lines of their syncs are read
        expected = {course_name(i, c) for i, c in enumerate(CASES) if not c.course}
        expected.add(f"h{len(CASES):02d}-bystander")
        daemon.wait_for(lambda: expected <= logged(), what="every course's sync in the log")
        daemon.wait_for(
            lambda: (
                daemon.named("file rejected")
                and any("¿¡!" in e["path"] for e in daemon.named("file rejected"))
            ),
            timeout=30,
            what="invalid slug",
        )
        yield daemon, dsn, root
    finally:
        daemon.kill()
        pg_server.drop_database(name)


@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES)), ids=[c.name for c in CASES])
def test_hostile_input(
    hostile_run: tuple[DaemonProcess, str, Path], index: int, case: Case
) -> None:
    daemon, dsn, _ = hostile_run
    assert daemon.proc.poll() is None, "the daemon must keep running"
    course = course_name(index, case)
    rejections = [e for e in daemon.named("file rejected") if e["path"].startswith(course)]
    if case.rejected is None:
        assert rejections == [], rejections
    else:
        expected = f"{course}/{case.rejected}" if case.rejected else course
        assert rejections, f"no 'file rejected' for {expected}"
        assert {e["path"] for e in rejections} == {expected}
        assert all(case.reason in e["reason"] for e in rejections), rejections
    with psycopg.connect(dsn) as conn:
        if not case.course:
            baseline = row(conn, f"{course}/{lesson(1)}")
            assert baseline is not None and baseline[1] == lesson_text(1, 1) and baseline[5] is None
            new = row(conn, f"{course}/{lesson(3)}")
            assert new is not None and new[5] is None, "the rest of the course still syncs"
        bystander = row(conn, f"h{len(CASES):02d}-bystander/{lesson(3)}")
        assert bystander is not None
        if case.check is not None:
            case.check(conn, course)


def test_invalid_fields_are_reported_as_ignored(
    hostile_run: tuple[DaemonProcess, str, Path],
) -> None:
    daemon, _, _ = hostile_run
    ignored = {e["path"].split("/")[0]: e["reason"] for e in daemon.named("field ignored")}
    assert "is not a number from 0 to 1" in ignored[course_name(27, CASES[27])]
    assert "is not a number from 0 to 1" in ignored[course_name(28, CASES[28])]
    assert "is not one of draft" in ignored[course_name(29, CASES[29])]
    assert len(CASES) >= 25
