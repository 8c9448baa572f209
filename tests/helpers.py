"""Small helpers shared by tests: write course folders, run the CLI, read its JSON logs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest

from syncd.cli import main

T = TypeVar("T")
REPO = Path(__file__).resolve().parent.parent
# The suite's own copy of examples/courses: the README's tour edits examples/ in place (an
# edit, a new lesson, a course folder renamed), so no test reads that working copy.
EXAMPLES = REPO / "tests" / "fixtures" / "courses"


def doc_section(file: str, heading: str) -> str:
    """One section of a guide (``docs/supabase.md``, ``README.md``): from the heading whose
    title is ``heading`` (at any level) to the next heading of the same or a higher level,
    lines inside fenced blocks never taken for headings. A test that runs a documented block
    fails here, naming the file and the heading, when the guide or the section is gone."""
    path = REPO / file
    assert path.is_file(), f"{file} is missing: the suite runs its command blocks as written"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    fenced, start, level = False, -1, 0
    for number, line in enumerate(lines):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        hashes = len(line) - len(line.lstrip("#"))
        if fenced or not hashes or not line[hashes:].startswith(" "):
            continue
        if start < 0 and line[hashes:].strip() == heading:
            start, level = number, hashes
        elif start >= 0 and hashes <= level:
            return "".join(lines[start:number])
    assert start >= 0, f"{file} has no section {heading!r}: the suite runs its blocks as written"
    return "".join(lines[start:])


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == event]


def run_cli(
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    dsn: str | None,
    env: Mapping[str, str] | None = None,
) -> Run:
    full_env = {"SYNCD_LOG_FORMAT": "json"}
    if dsn is not None:
        full_env["DATABASE_URL"] = dsn
    full_env.update(env or {})
    capsys.readouterr()
    code = main(argv, full_env)
    out, err = capsys.readouterr()
    return Run(code, out, err)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def lesson_text(module: int, lesson: int, body: str = "") -> str:
    return (
        f"# Aula {module}.{lesson} - Lesson {module}.{lesson}\n\n"
        f"**Módulo:** {module} - Module title {module}\n**Duração:** 10 minutos\n\n"
        f"Body of lesson {module}.{lesson}. {body}\n"
    )


def make_course(root: Path, name: str, lessons: int = 3, per_module: int = 5) -> Path:
    """A course with a curriculum and ``lessons`` lesson files, ``per_module`` per module."""
    folder = root / name
    modules = (lessons + per_module - 1) // per_module
    curriculum = [f'title: "Course {name}"', "modules:"]
    for m in range(1, modules + 1):
        curriculum += [f"  - module_id: {m}", f'    module_title: "Module {m} of {name}"']
    write(folder / "curriculum.yaml", "\n".join(curriculum) + "\n")
    for i in range(lessons):
        m, n = i // per_module + 1, i % per_module + 1
        write(folder / "lessons" / f"{m}.{n}-lesson-{m}-{n}.md", lesson_text(m, n))
    return folder


def make_tree(root: Path, lessons: int, per_course: int = 20) -> list[str]:
    """A generated tree of ``lessons`` lessons in courses of ``per_course``."""
    courses = []
    for index in range((lessons + per_course - 1) // per_course):
        name = f"gen-{index:05d}"
        make_course(root, name, lessons=min(per_course, lessons - index * per_course))
        courses.append(name)
    return courses


def atomic_write(path: Path, text: str) -> None:
    """What an editor or a generator does: a hidden temporary file renamed over ``path``."""
    temp = path.parent / f".{path.name}.tmp"
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def landed(admin_dsn: str, tokens: list[str]) -> set[str]:
    """The tokens found in the content of a live (not deleted) row."""
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute(
            "select t from unnest(%s::text[]) t where exists (select 1 from public.contents c"
            " where c.deleted_at is null and strpos(c.content, t) > 0)",
            (tokens,),
        ).fetchall()
    return {row[0] for row in rows}


class InlineExecutor(Executor):
    """Runs each job at once on the caller's thread (in-process tests, dry runs)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


class Clock:
    """A clock the test moves: ``now`` seconds, ``advance`` by some."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Log:
    """A structlog stand-in that keeps every event: ``named(event)`` gives their fields."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.events if name == event]

    def __getattr__(self, _level: str) -> Callable[..., None]:
        def record(event: str, **fields: Any) -> None:
            self.events.append((event, fields))

        return record
