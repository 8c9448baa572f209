"""Pure: the files of one course folder → a CourseSnapshot (project, outline, modules,
lessons, other outputs). No I/O: the caller hands in the bytes.

A bad file is rejected on its own (it lands in ``CourseSnapshot.rejected``); the rest
of the course still parses. Only a course folder whose name cannot be a slug is
rejected as a whole (ParseError).
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from syncd.course import (
    JSON,
    OUTLINE_KEY,
    Audience,
    Content,
    CourseSnapshot,
    FileIssue,
    Mind,
    Project,
    file_key,
    module_key,
)
from syncd.errors import ParseError
from syncd.text import decode, jsonable, load_yaml_documents, split_frontmatter

# Bump when the mapping changes, so that every course is re-synced once.
PARSER_VERSION = "1"

BRIEF = "COURSE-BRIEF.md"
CURRICULUM = "curriculum.yaml"
OUTLINE = "course-outline.md"
METADATA_JSON = ".metadata.json"
LESSONS = "lessons"
SOURCES = "sources"  # raw material (transcripts, notes) beside a course's content
OUTPUT_FOLDERS = ("assessments", "resources", "research")
OUTPUT_SUFFIXES = (".md", ".yaml", ".yml")
CONTENT_STATUSES = ("draft", "reviewed", "published", "archived")
TECHNICAL_LEVELS = ("beginner", "intermediate", "advanced", "expert")
SMALLINT_MAX = 32767

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
H1 = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
BOLD_LABEL = re.compile(r"\*\*([^*\n]{1,60}?):?\*\*:?[ \t]*([^|\n]*)")
MODULE_LABEL = re.compile(r"^m[óo]dulo(?:\s+(\d+))?$", re.IGNORECASE)
NUMBERED_TITLE = re.compile(r"^\s*(\d+)\s*[-\u2013\u2014:.]\s*(.+)$")  # -, en/em dash
LAST_INT = re.compile(r"(\d+)(?!.*\d)")
EDITOR_TEMP = re.compile(r"(~$|^#.*#$|\.sw[a-p]$|\.tmp$|\.bak$|\.orig$|\.part$|^4913$)")


@dataclass(frozen=True)
class ParseOptions:
    default_creator_mind: str | None = None  # SYNCD_CREATOR_MIND


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


# ---------------------------------------------------------------- entry point


def parse_course(
    course: str,
    files: Mapping[str, bytes],
    options: ParseOptions = ParseOptions(),
    unreadable: Iterable[FileIssue] = (),
) -> CourseSnapshot:
    """Map the relevant files of one course folder (paths relative to the folder) to records."""
    slug = course_slug(course)
    if not slug:
        raise ParseError(course, "no slug can be derived from the course folder name")
    parser = _CourseParser(
        course, {k: v for k, v in files.items() if is_relevant(k)}, options, slug=slug
    )
    for issue in unreadable:
        parser.rejected.append(issue)
        parser.protected.update(_held_by(issue.path.removeprefix(f"{course}/")))
    return parser.parse()


def _held_by(rel: str) -> set[str]:
    """What an unreadable (or linked) file or folder of a course feeds, and so must keep:
    the project, outline and modules it would have given, had it been read."""
    if rel == CURRICULUM:
        return {"project", "outline", "modules"}
    if rel == METADATA_JSON or rel.startswith("COURSE-BRIEF"):
        return {"project"}
    if rel == OUTLINE:
        return {"outline"}
    if rel == LESSONS or rel.startswith(f"{LESSONS}/"):
        return {"modules"}  # the modules its lessons name are still there
    return set()


def options_salt(options: ParseOptions) -> str:
    """What besides the files decides the records: a change re-syncs every course."""
    return f"v{PARSER_VERSION}|{options.default_creator_mind}"


def fingerprint(files: Mapping[str, bytes], options: ParseOptions) -> bytes:
    """One hash over every relevant file and the options: equal means nothing to do."""
    digest = hashlib.sha256(options_salt(options).encode())
    for rel in sorted(files):
        if is_relevant(rel):
            digest.update(rel.encode("utf-8", "surrogateescape") + b"\0")
            digest.update(hashlib.sha256(files[rel]).digest())
    return digest.digest()


@dataclass
class _Markdown:
    text: str
    frontmatter: dict[str, Any]
    body: str
    encoding: str
    repaired: bool


class _CourseParser:
    def __init__(
        self, course: str, files: dict[str, bytes], options: ParseOptions, *, slug: str
    ) -> None:
        self.course = course  # the folder's name: file paths start with it
        self.slug = slug  # the project's slug, and the prefix of its rows' slugs
        self.files = files
        self.options = options
        self.rejected: list[FileIssue] = []
        self.repaired: list[FileIssue] = []
        self.protected: set[str] = set()
        self.ignored: list[FileIssue] = []

    def root_path(self, rel: str) -> str:
        return f"{self.course}/{rel}"

    def reject(self, error: ParseError) -> None:
        self.rejected.append(FileIssue(self.root_path(error.path), error.reason))

    # -- reading one file -------------------------------------------------------

    def markdown(self, rel: str) -> _Markdown:
        if not self.files[rel]:
            raise ParseError(rel, "empty file (a generator may still be writing it)")
        decoded = decode(rel, self.files[rel])
        meta, body = split_frontmatter(rel, decoded.text)
        if decoded.repaired:
            nuls = self.files[rel].count(b"\x00")
            dropped = f", {nuls} NUL byte(s) dropped" if nuls else ""
            self.repaired.append(
                FileIssue(self.root_path(rel), f"not UTF-8: decoded as {decoded.encoding}{dropped}")
            )
        return _Markdown(decoded.text, meta, body, decoded.encoding, decoded.repaired)

    def try_markdown(self, rel: str | None) -> _Markdown | None:
        if rel is None or rel not in self.files:
            return None
        try:
            return self.markdown(rel)
        except ParseError as error:
            self.reject(error)
            return None

    def curriculum(self) -> tuple[dict[str, Any], str | None]:
        if CURRICULUM not in self.files:
            return {}, None
        try:
            decoded = decode(CURRICULUM, self.files[CURRICULUM])
            documents = load_yaml_documents(CURRICULUM, decoded.text)
            if not documents:
                raise ParseError(CURRICULUM, "curriculum.yaml is empty")
            merged: dict[str, Any] = {}
            for doc in documents:
                if not isinstance(doc, dict):
                    raise ParseError(
                        CURRICULUM, f"curriculum.yaml holds a {type(doc).__name__}, not a mapping"
                    )
                merged.update({str(k): v for k, v in doc.items()})
            return merged, decoded.text
        except ParseError as error:
            self.reject(error)
            self.protected.update(("project", "outline", "modules"))
            return {}, None

    def metadata_json(self) -> dict[str, Any]:
        if METADATA_JSON not in self.files:
            return {}
        try:
            data = json.loads(decode(METADATA_JSON, self.files[METADATA_JSON]).text)
        except (ValueError, RecursionError) as exc:
            error = ParseError(METADATA_JSON, f"invalid JSON: {exc}")
        except ParseError as exc:
            error = exc
        else:
            if isinstance(data, dict):
                return data
            error = ParseError(METADATA_JSON, "not a JSON object")
        self.reject(error)
        self.protected.add("project")
        return {}
        return data

    # -- the course ---------------------------------------------------------------

    def parse(self) -> CourseSnapshot:
        brief_rel = _find_brief(self.files)
        brief = self.try_markdown(brief_rel)
        if brief_rel is not None and brief is None:
            self.protected.add("project")
        brief_fm = brief.frontmatter if brief else {}
        brief_body = brief.body if brief else ""
        curriculum, curriculum_text = self.curriculum()
        course_block = _mapping(curriculum.get("course"))
        meta_json = self.metadata_json()

        title = (
            _first_str(
                curriculum.get("title"),
                course_block.get("title"),
                brief_fm.get("title"),
                brief_fm.get("course_title"),
                _labelled_block(brief_body, ("título do curso", "titulo do curso", "course title")),
                meta_json.get("course_title"),
            )
            or self.course
        )

        project = Project(
            slug=self.slug,
            name=title,
            description=_first_str(
                brief_fm.get("description"),
                _labelled_block(
                    brief_body, ("subtítulo/tagline", "tagline", "descrição", "subtítulo")
                ),
            )
            if brief
            else None,
            metadata=jsonable(
                {
                    k: v
                    for k, v in {
                        "brief": brief_fm,
                        "metadata_json": meta_json,
                        "curriculum": _curriculum_metadata(curriculum),
                    }.items()
                    if v
                }
            ),
            creator_mind=self.creator_mind(brief_fm),
            persona_mind=_persona_mind(brief_fm, curriculum),
            audience=_audience(self.slug, title, brief_body, curriculum) if brief else None,
            tags=_dedupe(
                [
                    *_str_list(brief_fm.get("tags")),
                    *_brief_tags(brief_body),
                    *_str_list(curriculum.get("tags")),
                    *_str_list(_mapping(curriculum.get("categories")).get("tags")),
                    *_str_list(course_block.get("tags")),
                ]
            ),
        )

        contents: list[Content] = [self.outline(title, curriculum_text)]
        lessons, lesson_modules = self.lessons()
        contents.extend(self.modules(curriculum, lesson_modules))
        contents.extend(lessons)
        contents.extend(self.other_outputs())
        return CourseSnapshot(
            course=self.course,
            project=project,
            contents=tuple(contents),
            fingerprint=fingerprint(self.files, self.options),
            rejected=tuple(self.rejected),
            protected=frozenset(self.protected),
            ignored=tuple(self.ignored),
            repaired=tuple(self.repaired),
            source_hashes={
                self.root_path(rel): hashlib.sha256(raw).digest() for rel, raw in self.files.items()
            },
        )

    def creator_mind(self, brief_fm: dict[str, Any]) -> Mind | None:
        slug = _mind_slug(brief_fm.get("creator_mind")) or _mind_slug(
            self.options.default_creator_mind
        )
        return Mind(slug, _display_name(slug)) if slug else None

    def outline(self, title: str, curriculum_text: str | None) -> Content:
        outline_md = self.try_markdown(OUTLINE if OUTLINE in self.files else None)
        if OUTLINE in self.files and outline_md is None:
            self.protected.add("outline")
        if outline_md is not None:
            text: str | None = outline_md.text
            rel: str | None = OUTLINE
        elif curriculum_text is not None:
            text, rel = curriculum_text, CURRICULUM
        else:
            text, rel = None, None
        return Content(
            key=OUTLINE_KEY,
            content_type="course_outline",
            slug=outline_slug(self.slug),
            title=title,
            content=text,
            parent_key=None,
            sequence_order=None,
            file_path=self.root_path(rel) if rel else None,
            metadata={"source": rel} if rel else {},
            source_hash=hashlib.sha256(self.files[rel]).digest() if rel else None,
            legacy_slug=outline_slug(self.slug),
        )

    def modules(self, curriculum: dict[str, Any], hints: dict[int, str | None]) -> list[Content]:
        """One module per number in the curriculum or in a lesson prefix; ``hints`` maps
        the lessons' module numbers to the title their files suggest, if any."""
        from_curriculum = _curriculum_modules(curriculum)
        numbers = sorted(set(from_curriculum) | set(hints))
        modules = []
        for number in numbers:
            info = from_curriculum.get(number, {})
            title = _first_str(info.get("title"), hints.get(number)) or f"Module {number}"
            modules.append(
                Content(
                    key=module_key(number),
                    content_type="course_module",
                    slug=module_slug(self.slug, number),
                    title=title,
                    content=_first_str(info.get("description")),
                    parent_key=OUTLINE_KEY,
                    sequence_order=number,
                    file_path=None,
                    metadata=jsonable(info.get("metadata", {})),
                    legacy_slug=module_slug(self.slug, number),
                )
            )
        return modules

    def lessons(self) -> tuple[list[Content], dict[int, str | None]]:
        lessons: list[Content] = []
        module_titles: dict[int, str | None] = {}
        for rel in sorted(r for r in self.files if r.startswith(f"{LESSONS}/")):
            module, lesson = lesson_place(rel)
            if module is not None and max(module, lesson or 0) > SMALLINT_MAX:
                self.reject(
                    ParseError(
                        rel, f"lesson number {module}.{lesson} is larger than {SMALLINT_MAX}"
                    )
                )
                continue
            md = self.try_markdown(rel)
            if md is None:
                continue
            labels = _labels(md.body)
            if module is not None and module_titles.get(module) is None:
                module_titles[module] = _module_title_hint(md.frontmatter, labels, module)
            lessons.append(
                self.file_content(
                    rel,
                    md,
                    content_type="course_lesson",
                    parent_key=module_key(module) if module is not None else OUTLINE_KEY,
                    sequence_order=lesson,
                    extra={"labels": labels} if labels else {},
                    legacy_slug=legacy_lesson_slug(self.slug, module, lesson)
                    if module is not None and lesson is not None
                    else None,
                )
            )
        return lessons, module_titles

    def other_outputs(self) -> list[Content]:
        outputs = []
        for rel in sorted(self.files):
            folder = PurePosixPath(rel).parts[0]
            if folder not in OUTPUT_FOLDERS:
                continue
            if rel.endswith(".md"):
                md = self.try_markdown(rel)
            else:  # YAML outputs are stored as text; their structure is not interpreted
                try:
                    if not self.files[rel]:
                        raise ParseError(rel, "empty file (a generator may still be writing it)")
                    decoded = decode(rel, self.files[rel])
                except ParseError as error:
                    self.reject(error)
                    continue
                md = _Markdown(decoded.text, {}, "", decoded.encoding, decoded.repaired)
            if md is None:
                continue
            outputs.append(
                self.file_content(
                    rel,
                    md,
                    content_type="other",
                    parent_key=OUTLINE_KEY,
                    sequence_order=None,
                    extra={"kind": folder},
                    legacy_slug=None,
                )
            )
        return outputs

    def file_content(
        self,
        rel: str,
        md: _Markdown,
        *,
        content_type: str,
        parent_key: str,
        sequence_order: int | None,
        extra: JSON,
        legacy_slug: str | None,
    ) -> Content:
        fm = md.frontmatter
        metadata: JSON = {**jsonable(fm), **extra}
        if md.repaired:
            metadata["encoding"] = md.encoding
            metadata["text_repaired"] = True
        heading = H1.search(md.body)
        fidelity = fm.get("fidelity_score", fm.get("fidelity"))
        if fidelity is not None and _fidelity(fidelity) is None:
            self.ignored.append(
                FileIssue(
                    self.root_path(rel),
                    f"fidelity {str(fidelity)[:40]!r} is not a number from 0 to 1",
                )
            )
        status = fm.get("status")
        if status is not None and status not in CONTENT_STATUSES:
            self.ignored.append(
                FileIssue(
                    self.root_path(rel),
                    f"status {str(status)[:40]!r} is not one of {', '.join(CONTENT_STATUSES)}",
                )
            )
        return Content(
            key=file_key(self.root_path(rel)),
            content_type=content_type,
            slug=content_slug(self.slug, rel),
            title=_first_str(fm.get("title"), fm.get("lesson_title"))
            or (heading.group(1).strip() if heading else "")
            or PurePosixPath(rel).stem,
            content=md.text.replace("\x00", ""),
            parent_key=parent_key,
            sequence_order=sequence_order,
            file_path=self.root_path(rel),
            metadata=metadata,
            source_hash=hashlib.sha256(self.files[rel]).digest(),
            fidelity_score=_fidelity(fidelity),
            status=status if status in CONTENT_STATUSES else None,
            tags=_dedupe(_str_list(fm.get("tags"))),
            legacy_slug=legacy_slug,
        )


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


# ---------------------------------------------------------------- field helpers


def _find_brief(files: Mapping[str, bytes]) -> str | None:
    if BRIEF in files:
        return BRIEF
    briefs = sorted(r for r in files if "/" not in r and r.startswith("COURSE-BRIEF"))
    return briefs[0] if briefs else None


def _mapping(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def _first_str(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value).replace("\x00", "").strip()
            if text:
                return text[:500]
    return None


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [
            str(v) for v in value if isinstance(v, str | int | float) and not isinstance(v, bool)
        ]
    return []


def _dedupe(values: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        tag = value.replace("\x00", "").strip()[:100]
        if tag:
            seen.setdefault(tag, None)
    return tuple(seen)


def _fidelity(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return round(number, 2) if 0.0 <= number <= 1.0 else None


def _display_name(slug: str) -> str:
    return re.sub(r"[-_]+", " ", slug).title()


def _mind_slug(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    slug = value.strip().lower()
    return slug if MIND_SLUG.match(slug) else None


def _persona_mind(brief_fm: dict[str, Any], curriculum: dict[str, Any]) -> Mind | None:
    persona = _mapping(brief_fm.get("mmos_persona"))
    course_block = _mapping(curriculum.get("course"))
    instructors = [_mapping(curriculum.get("instructor")), _mapping(course_block.get("instructor"))]
    candidates: list[tuple[Any, Any]] = [
        (persona.get("mind_slug"), persona.get("mind_name")),
        (brief_fm.get("persona_mind"), None),
        (brief_fm.get("instructor_mind"), None),
        *((i.get("persona_slug"), i.get("name")) for i in instructors),
        *((i.get("mmos_mind"), i.get("name")) for i in instructors),
        (curriculum.get("instructor_persona"), None),
        (curriculum.get("instructor"), None),  # some curricula name the persona mind directly
        (course_block.get("instructor"), None),
    ]
    for slug_value, name in candidates:
        slug = _mind_slug(slug_value)
        if slug:
            return Mind(slug, _first_str(name) or _display_name(slug))
    return None


def _curriculum_metadata(curriculum: dict[str, Any]) -> JSON:
    """Top-level scalar facts plus the ``metadata`` mapping, without the module tree."""
    course_block = _mapping(curriculum.get("course"))
    scalars = {
        k: v
        for source in (curriculum, course_block)
        for k, v in source.items()
        if isinstance(v, str | int | float | bool) or v is None
    }
    metadata = _mapping(curriculum.get("metadata")) or _mapping(course_block.get("metadata"))
    return {**scalars, **({"metadata": metadata} if metadata else {})}


def _curriculum_modules(curriculum: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """module number → {title, description, metadata} for every curriculum shape seen:
    ``modules[].module_id|number|id`` at the top or under ``course``, and ids such as
    ``modulo-1``, ``module_1``, ``week_1``."""
    course_block = _mapping(curriculum.get("course"))
    entries = curriculum.get("modules") or course_block.get("modules") or []
    modules: dict[int, dict[str, Any]] = {}
    if not isinstance(entries, list):
        return modules
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        number = _module_number(entry)
        if number is None or number > SMALLINT_MAX or number in modules:
            continue
        modules[number] = {
            "title": _first_str(entry.get("module_title"), entry.get("title"), entry.get("name")),
            "description": _first_str(
                entry.get("module_description"), entry.get("description"), entry.get("objective")
            ),
            "metadata": {
                k: v for k, v in entry.items() if k != "lessons" and not isinstance(v, dict | list)
            },
        }
    return modules


def _module_number(entry: dict[str, Any]) -> int | None:
    for key in ("module_id", "number", "module_number", "id"):
        value = entry.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value >= 0:
            return value
        if isinstance(value, str):
            found = LAST_INT.search(value)
            if found:
                return int(found.group(1))
    return None


def _labels(body: str) -> dict[str, str]:
    """The bold label block under the H1: ``**Duração:** 15 minutos | **Nível:** ...``."""
    labels: dict[str, str] = {}
    for line in body.splitlines()[:40]:
        stripped = line.strip()
        if stripped.startswith("## ") or (stripped == "---" and labels):
            break
        if not stripped.startswith("**"):
            continue
        for label, value in BOLD_LABEL.findall(stripped):
            labels.setdefault(label.strip(), value.strip())
    return labels


def _module_title_hint(fm: dict[str, Any], labels: dict[str, str], module: int) -> str | None:
    from_fm = _first_str(fm.get("module_title"), fm.get("module_name"))
    if from_fm:
        return from_fm
    for label, value in labels.items():
        match = MODULE_LABEL.match(label)
        if not match:
            continue
        numbered = NUMBERED_TITLE.match(value)
        if match.group(1) is not None:
            return value.strip() or None if int(match.group(1)) == module else None
        if numbered and int(numbered.group(1)) == module:
            return numbered.group(2).strip() or None
    return None


def _sections(body: str) -> Iterable[tuple[str, str]]:
    """(heading, text) for every ``## `` section of a brief."""
    heading, lines = "", list[str]()
    for line in body.splitlines():
        if line.startswith("## "):
            if heading:
                yield heading, "\n".join(lines).strip()
            heading, lines = line[3:].strip(), []
        else:
            lines.append(line)
    if heading:
        yield heading, "\n".join(lines).strip()


def _audience(
    course: str, title: str, brief_body: str, curriculum: dict[str, Any]
) -> Audience | None:
    for heading, text in _sections(brief_body):
        lowered = heading.lower()
        if (
            "icp" in lowered
            or "público" in lowered
            or "publico" in lowered
            or "audience" in lowered
        ) and text:
            metadata = _mapping(curriculum.get("metadata")) or _mapping(
                _mapping(curriculum.get("course")).get("metadata")
            )
            level = metadata.get("knowledge_level") or metadata.get("level")
            return Audience(
                slug=f"{course}-audience",
                name=f"{title}: {heading}"[:200],
                description=text.replace("\x00", ""),
                technical_level=level if level in TECHNICAL_LEVELS else None,
            )
    return None


def _labelled_block(body: str, labels: tuple[str, ...]) -> str | None:
    """The value after a bold label in a brief: the fenced block that follows
    ``**Título do Curso:**`` or the text on the label's own line."""
    lines = body.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^\*\*([^*]+?):?\*\*:?\s*(.*)$", line.strip())
        if not match or match.group(1).strip().lower() not in labels:
            continue
        if match.group(2).strip():
            return match.group(2).strip()
        following = lines[index + 1 : index + 12]
        if following and following[0].strip().startswith("```"):
            block = []
            for item in following[1:]:
                if item.strip().startswith("```"):
                    break
                block.append(item)
            text = "\n".join(block).strip()
            if text:
                return text
    return None


def _brief_tags(body: str) -> list[str]:
    block = _labelled_block(body, ("tags (3-7 palavras-chave)", "tags"))
    if not block:
        return []
    return [
        re.sub(r"^\s*(?:\d+[.)]|[-*])\s*", "", line) for line in block.splitlines() if line.strip()
    ]
