"""The README and docs/: the README's tour leaves the suite's courses alone (issue 19 item 7),
the sections the suite runs are found where the guides put them, links lead somewhere, and
bench/report.py writes its table into docs/benchmarks.md (issue 19 item 5)."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.report import BEGIN, DOCS, END, write_docs
from tests.helpers import EXAMPLES, REPO, doc_section

GUIDES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def tree_digest(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def tour_changes() -> list[str]:
    """The shell lines of the README's tour that change files (not the syncd commands)."""
    tour = doc_section("README.md", "A five-minute tour")
    lines = [
        line
        for block in re.findall(r"^```sh\n(.*?)^```", tour, re.S | re.M)
        for line in block.splitlines()
        if line.strip() and not line.startswith(("#", ".venv/bin/syncd"))
    ]
    return lines


def test_the_tour_leaves_the_courses_the_suite_reads_alone(tmp_path: Path) -> None:
    """Problem (issue 19): after the README's walkthrough on examples/courses (an edit, a new
    lesson, escrita-criativa renamed), ./test.sh failed 9 tests, 'escrita-oficina' !=
    'escrita-criativa'. The tour's file changes, run as written in a copy of the clone, leave
    every file the suite reads as it was."""
    changes = tour_changes()
    assert len(changes) >= 3, changes  # an edit, a new lesson, a rename
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "examples", clone / "examples")
    suite_copy = clone / EXAMPLES.relative_to(REPO)
    if not suite_copy.exists():  # the suite's courses live outside examples/
        shutil.copytree(EXAMPLES, suite_copy)
    before = tree_digest(suite_copy)
    shown = tree_digest(clone / "examples")
    subprocess.run(
        ["bash", "-euo", "pipefail", "-c", "\n".join(changes)], cwd=clone, check=True, timeout=30
    )
    assert tree_digest(clone / "examples") != shown, "the tour changed nothing"
    assert tree_digest(suite_copy) == before


def test_the_suite_reads_its_own_copy_of_the_example_courses() -> None:
    assert (EXAMPLES / "escrita-criativa").is_dir() and (EXAMPLES / "python-em-30-dias").is_dir()
    assert not EXAMPLES.is_relative_to(REPO / "examples")


def test_the_first_command_backfills_the_examples_the_tour_then_watches() -> None:
    first = doc_section("README.md", "Two commands (fresh machine, Python 3.11+ only)")
    assert ".venv/bin/syncd --rescan --root examples/courses\n" in first
    assert ".venv/bin/syncd --root examples/courses " in doc_section(
        "README.md", "A five-minute tour"
    )


def test_the_readme_stays_short_and_links_to_the_supabase_guide_near_its_top() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, len(lines)
    assert any("(docs/supabase.md)" in line for line in lines[:20])


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^ *```.*?^ *```", "", path.read_text(encoding="utf-8"), flags=re.S | re.M)
    return {anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("guide", GUIDES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_link_of_the_guides_leads_to_a_file_and_heading(guide: Path) -> None:
    text = re.sub(r"^ *```.*?^ *```", "", guide.read_text(encoding="utf-8"), flags=re.S | re.M)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # https://...
        file, _, fragment = target.partition("#")
        path = (guide.parent / file).resolve() if file else guide
        if not path.exists() or (path.suffix == ".md" and fragment not in {"", *anchors(path)}):
            broken.append(target)
    assert broken == []


def test_a_section_ends_at_the_next_heading_of_its_level_and_code_is_not_a_heading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guide = tmp_path / "guide.md"
    guide.write_text(
        "# Title\n\n## One\n\n```sh\n# a comment, not a heading\n```\n\n### Inside\n\ntext\n\n"
        "## Two\n\nmore\n",
        encoding="utf-8",
    )
    monkeypatch.setattr("tests.helpers.REPO", tmp_path)
    one = doc_section("guide.md", "One")
    assert one.startswith("## One\n") and "### Inside" in one and "# a comment" in one
    assert "## Two" not in one
    assert doc_section("guide.md", "Two") == "## Two\n\nmore\n"
    assert doc_section("guide.md", "Title").endswith("more\n")
    with pytest.raises(AssertionError, match="has no section 'Three'"):
        doc_section("guide.md", "Three")
    with pytest.raises(AssertionError, match=r"gone\.md is missing"):
        doc_section("gone.md", "One")


def test_the_benchmark_table_is_written_between_the_markers_and_the_rest_stays(
    tmp_path: Path,
) -> None:
    assert BEGIN in DOCS.read_text(encoding="utf-8") and END in DOCS.read_text(encoding="utf-8")
    guide = tmp_path / "benchmarks.md"
    shutil.copyfile(DOCS, guide)
    text = guide.read_text(encoding="utf-8")
    head, tail = text.split(BEGIN, 1)[0], text.split(END, 1)[1]
    write_docs("Machine: new\n\n| measurement |\n|---|\n| a figure |\n", guide)
    written = guide.read_text(encoding="utf-8")
    assert written.startswith(head) and written.endswith(tail)
    between = written.split(BEGIN, 1)[1].split(END, 1)[0]
    assert between.split("\n", 1)[1] == "Machine: new\n\n| measurement |\n|---|\n| a figure |\n"
    guide.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(ValueError, match="markers"):
        write_docs("Machine: new\n", guide)
