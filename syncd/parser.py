"""Pure: the files of one course folder → a CourseSnapshot (project, outline, modules,
lessons, other outputs). No I/O: the caller hands in the bytes.

A bad file is rejected on its own (it lands in ``CourseSnapshot.rejected``); the rest
of the course still parses. Only a course folder whose name cannot be a slug is
rejected as a whole (ParseError).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from syncd import fields
from syncd.course import (
    JSON,
    OUTLINE_KEY,
    Content,
    CourseSnapshot,
    FileIssue,
    Mind,
    ParseOptions,
    Project,
    file_key,
    module_key,
)
from syncd.errors import ParseError
from syncd.fingerprint import fingerprint
from syncd.layout import (
    CURRICULUM,
    LESSONS,
    METADATA_JSON,
    OUTLINE,
    OUTPUT_FOLDERS,
    content_slug,
    course_slug,
    is_relevant,
    legacy_lesson_slug,
    lesson_place,
    module_slug,
    outline_slug,
)
from syncd.text import decode, jsonable, load_yaml_documents, split_frontmatter

CONTENT_STATUSES = ("draft", "reviewed", "published", "archived")


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
        brief_rel = fields.find_brief(self.files)
        brief = self.try_markdown(brief_rel)
        if brief_rel is not None and brief is None:
            self.protected.add("project")
        brief_fm = brief.frontmatter if brief else {}
        brief_body = brief.body if brief else ""
        curriculum, curriculum_text = self.curriculum()
        course_block = fields.mapping(curriculum.get("course"))
        meta_json = self.metadata_json()

        title = (
            fields.first_str(
                curriculum.get("title"),
                course_block.get("title"),
                brief_fm.get("title"),
                brief_fm.get("course_title"),
                fields.labelled_block(
                    brief_body, ("título do curso", "titulo do curso", "course title")
                ),
                meta_json.get("course_title"),
            )
            or self.course
        )

        project = Project(
            slug=self.slug,
            name=title,
            description=fields.first_str(
                brief_fm.get("description"),
                fields.labelled_block(
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
                        "curriculum": fields.curriculum_metadata(curriculum),
                    }.items()
                    if v
                }
            ),
            creator_mind=self.creator_mind(brief_fm),
            persona_mind=fields.persona_mind(brief_fm, curriculum),
            audience=fields.audience(self.slug, title, brief_body, curriculum) if brief else None,
            tags=fields.dedupe(
                [
                    *fields.str_list(brief_fm.get("tags")),
                    *fields.brief_tags(brief_body),
                    *fields.str_list(curriculum.get("tags")),
                    *fields.str_list(fields.mapping(curriculum.get("categories")).get("tags")),
                    *fields.str_list(course_block.get("tags")),
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
        slug = fields.mind_slug(brief_fm.get("creator_mind")) or fields.mind_slug(
            self.options.default_creator_mind
        )
        return Mind(slug, fields.display_name(slug)) if slug else None

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
        from_curriculum = fields.curriculum_modules(curriculum)
        numbers = sorted(set(from_curriculum) | set(hints))
        modules = []
        for number in numbers:
            info = from_curriculum.get(number, {})
            title = fields.first_str(info.get("title"), hints.get(number)) or f"Module {number}"
            modules.append(
                Content(
                    key=module_key(number),
                    content_type="course_module",
                    slug=module_slug(self.slug, number),
                    title=title,
                    content=fields.first_str(info.get("description")),
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
            if module is not None and max(module, lesson or 0) > fields.SMALLINT_MAX:
                self.reject(
                    ParseError(
                        rel, f"lesson number {module}.{lesson} is larger than {fields.SMALLINT_MAX}"
                    )
                )
                continue
            md = self.try_markdown(rel)
            if md is None:
                continue
            labels = fields.labels(md.body)
            if module is not None and module_titles.get(module) is None:
                module_titles[module] = fields.module_title_hint(md.frontmatter, labels, module)
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
        heading = fields.H1.search(md.body)
        fidelity = fm.get("fidelity_score", fm.get("fidelity"))
        if fidelity is not None and fields.fidelity(fidelity) is None:
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
            title=fields.first_str(fm.get("title"), fm.get("lesson_title"))
            or (heading.group(1).strip() if heading else "")
            or PurePosixPath(rel).stem,
            content=md.text.replace("\x00", ""),
            parent_key=parent_key,
            sequence_order=sequence_order,
            file_path=self.root_path(rel),
            metadata=metadata,
            source_hash=hashlib.sha256(self.files[rel]).digest(),
            fidelity_score=fields.fidelity(fidelity),
            status=status if status in CONTENT_STATUSES else None,
            tags=fields.dedupe(fields.str_list(fm.get("tags"))),
            legacy_slug=legacy_slug,
        )
