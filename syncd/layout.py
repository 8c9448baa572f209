"""Pure: the layout of a course tree. Which folder is a course, which of its files feed a
record (and which are ignored: hidden, editor temp files, sources/, READMEs and reports),
where a lesson file sits (module and lesson numbers), and the slug rules (a course folder's
project slug, a file-backed row's slug). Shared by the tree reader, the watcher, the
parser, reconcile and verify, so that they never disagree about a path.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from pathlib import PurePosixPath

BRIEF = "COURSE-BRIEF.md"
CURRICULUM = "curriculum.yaml"
OUTLINE = "course-outline.md"
METADATA_JSON = ".metadata.json"
LESSONS = "lessons"
SOURCES = "sources"  # raw material (transcripts, notes) beside a course's content
OUTPUT_FOLDERS = ("assessments", "resources", "research")
OUTPUT_SUFFIXES = (".md", ".yaml", ".yml")
COURSE_SLUG = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")
MIND_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
# A lesson's file name (without its suffix): "3.2-x", "03.2-x", "aula-3.2-x", "lesson_3.2 x".
LESSON_PREFIX = r"(?:(?:aula|li[cç][aã]o|lesson|lecture)[-_ ]?)?"
LESSON_NUMBER = re.compile(rf"^{LESSON_PREFIX}(\d+)\.(\d+)(?!\d)", re.IGNORECASE)
# Only a lesson number ("01-intro", "licao-7"), read when the folder gives the module.
LESSON_ONLY_NUMBER = re.compile(rf"^{LESSON_PREFIX}(\d+)(?![\d.])", re.IGNORECASE)
# A module folder under lessons/: "modulo-02", "módulo 2", "module-2", "mod2", "m2", "02-...".
MODULE_FOLDER = re.compile(
    r"^(?:m[óo]dulo|module|mod|m)[-_ ]?(\d+)(?!\d)|^(\d+)(?:$|[-_ .])", re.IGNORECASE
)
# Free-form files beside the content, at any depth: README*, *-REPORT*, *_report …
IGNORED_STEM = re.compile(r"^readme(?:$|[-_ .])|(?:^|[-_ .])report(?:$|[-_ .])", re.IGNORECASE)
EDITOR_TEMP = re.compile(r"(~$|^#.*#$|\.sw[a-p]$|\.tmp$|\.bak$|\.orig$|\.part$|^4913$)")


# ---------------------------------------------------------------- what is a course


def is_course_folder(names: Iterable[str]) -> bool:
    """A direct child of the root is a course when it holds a brief, a curriculum or lessons."""
    present = set(names)
    return BRIEF in present or CURRICULUM in present or LESSONS in present


def is_valid_course_slug(name: str) -> bool:
    return bool(COURSE_SLUG.match(name)) and len(name) <= 100


def is_relevant(rel: str) -> bool:
    """Does this path (relative to the course folder) feed a record? Everything else,
    hidden files, editor temp files and ``sources/`` included, is ignored."""
    parts = rel.split("/")  # hot path: plain string work, no PurePosixPath
    name = parts[-1]
    if not name:
        return False
    if rel == METADATA_JSON:
        return True
    if any(p.startswith(".") or p == SOURCES for p in parts) or EDITOR_TEMP.search(name):
        return False  # hidden, editor temp files and raw sources/, at every depth
    if IGNORED_STEM.search(name.rsplit(".", 1)[0]):
        return False
    if len(parts) == 1:
        return name in (CURRICULUM, OUTLINE) or (
            name.startswith("COURSE-BRIEF") and name.endswith(".md")
        )
    if parts[0] == LESSONS:
        return name.endswith(".md")  # at any depth
    return parts[0] in OUTPUT_FOLDERS and name.endswith(OUTPUT_SUFFIXES)


# ---------------------------------------------------------------- slugs


def course_slug(folder: str) -> str:
    """The project slug of a course folder: its name when that is a slug already; else the
    name in lower case, accents folded, every run of other characters (spaces included)
    turned into one "-", at most 100 characters ("Curso Novo" → "curso-novo"). Empty when
    nothing is left. Stable: it depends on the name only."""
    if is_valid_course_slug(folder):
        return folder
    return slugify(folder)[:100].strip("-")


def slug_conflicts(folders: Iterable[str], known: Iterable[str] = ()) -> dict[str, str]:
    """Folders whose course slug another folder also derives: folder -> the folder that keeps
    the course (one syncd has synced before, else the one named exactly like the slug, else
    the first by name). The others are reported, never synced over it."""
    by_slug: dict[str, list[str]] = {}
    for folder in folders:
        by_slug.setdefault(course_slug(folder), []).append(folder)
    synced = set(known)
    losers: dict[str, str] = {}
    for slug, names in by_slug.items():
        if len(names) < 2 or not slug:
            continue
        owner = min(names, key=lambda n: (n not in synced, n != slug, n))
        losers.update({name: owner for name in names if name != owner})
    return losers


def slugify(text: str) -> str:
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def content_slug(course: str, rel: str) -> str:
    """Slug of a file-backed row: ``<course>--<readable path>-<hash of the path>``.

    The course slug never contains ``--``, so two courses cannot collide; the hash of
    the path relative to the root keeps two files of one course apart even when their
    names read alike. It depends only on the path, so it never changes while the
    file stays."""
    shown = rel.removeprefix(f"{LESSONS}/")
    readable = slugify(str(PurePosixPath(shown).with_suffix("")))[:80].strip("-") or "file"
    digest = hashlib.sha256(f"{course}/{rel}".encode()).hexdigest()[:8]
    return f"{course}--{readable}-{digest}"


def outline_slug(course: str) -> str:
    return f"{course}-outline"


def module_slug(course: str, number: int) -> str:
    return f"{course}-modulo-{number}"


def legacy_lesson_slug(course: str, module: int, lesson: int) -> str:
    return f"{course}-licao-{module}-{lesson}"


# ---------------------------------------------------------------- lesson placement


def lesson_place(rel: str) -> tuple[int | None, int | None]:
    """(module number, lesson number) of a file under lessons/, at any depth: both from its
    name when it reads "M.L" (a word prefix such as aula-, licao-, lesson- allowed); else the
    module from the nearest folder that names one (modulo-02, module-2, m2, 02-...) and the
    lesson from a number leading its name; else neither (it hangs under the outline)."""
    path = PurePosixPath(rel)
    stem = path.name.rsplit(".", 1)[0]
    both = LESSON_NUMBER.match(stem)
    if both:
        return int(both.group(1)), int(both.group(2))
    for folder in reversed(path.parts[1:-1]):
        named = MODULE_FOLDER.match(folder)
        if named:
            only = LESSON_ONLY_NUMBER.match(stem)
            return int(named.group(1) or named.group(2)), int(only.group(1)) if only else None
    return None, None
