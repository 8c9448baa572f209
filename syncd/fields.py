"""Pure: the fields of a course read out of its files' frontmatter, curriculum and brief
(labels in bold, sections, lists, numbers, mind slugs, the audience block), each lenient:
what does not read as the field gives None or nothing, never an error."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from syncd.course import JSON, Audience, Mind
from syncd.layout import BRIEF, MIND_SLUG

H1 = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
BOLD_LABEL = re.compile(r"\*\*([^*\n]{1,60}?):?\*\*:?[ \t]*([^|\n]*)")
MODULE_LABEL = re.compile(r"^m[óo]dulo(?:\s+(\d+))?$", re.IGNORECASE)
NUMBERED_TITLE = re.compile(r"^\s*(\d+)\s*[-\u2013\u2014:.]\s*(.+)$")  # -, en/em dash
LAST_INT = re.compile(r"(\d+)(?!.*\d)")
TECHNICAL_LEVELS = ("beginner", "intermediate", "advanced", "expert")
SMALLINT_MAX = 32767


def find_brief(files: Mapping[str, bytes]) -> str | None:
    if BRIEF in files:
        return BRIEF
    briefs = sorted(r for r in files if "/" not in r and r.startswith("COURSE-BRIEF"))
    return briefs[0] if briefs else None


def mapping(value: Any) -> dict[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def first_str(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            text = str(value).replace("\x00", "").strip()
            if text:
                return text[:500]
    return None


def str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [
            str(v) for v in value if isinstance(v, str | int | float) and not isinstance(v, bool)
        ]
    return []


def dedupe(values: Iterable[str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for value in values:
        tag = value.replace("\x00", "").strip()[:100]
        if tag:
            seen.setdefault(tag, None)
    return tuple(seen)


def fidelity(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return round(number, 2) if 0.0 <= number <= 1.0 else None


def display_name(slug: str) -> str:
    return re.sub(r"[-_]+", " ", slug).title()


def mind_slug(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    slug = value.strip().lower()
    return slug if MIND_SLUG.match(slug) else None


def persona_mind(brief_fm: dict[str, Any], curriculum: dict[str, Any]) -> Mind | None:
    persona = mapping(brief_fm.get("mmos_persona"))
    course_block = mapping(curriculum.get("course"))
    instructors = [mapping(curriculum.get("instructor")), mapping(course_block.get("instructor"))]
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
        slug = mind_slug(slug_value)
        if slug:
            return Mind(slug, first_str(name) or display_name(slug))
    return None


def curriculum_metadata(curriculum: dict[str, Any]) -> JSON:
    """Top-level scalar facts plus the ``metadata`` mapping, without the module tree."""
    course_block = mapping(curriculum.get("course"))
    scalars = {
        k: v
        for source in (curriculum, course_block)
        for k, v in source.items()
        if isinstance(v, str | int | float | bool) or v is None
    }
    metadata = mapping(curriculum.get("metadata")) or mapping(course_block.get("metadata"))
    return {**scalars, **({"metadata": metadata} if metadata else {})}


def curriculum_modules(curriculum: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """module number → {title, description, metadata} for every curriculum shape seen:
    ``modules[].module_id|number|id`` at the top or under ``course``, and ids such as
    ``modulo-1``, ``module_1``, ``week_1``."""
    course_block = mapping(curriculum.get("course"))
    entries = curriculum.get("modules") or course_block.get("modules") or []
    modules: dict[int, dict[str, Any]] = {}
    if not isinstance(entries, list):
        return modules
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        number = module_number(entry)
        if number is None or number > SMALLINT_MAX or number in modules:
            continue
        modules[number] = {
            "title": first_str(entry.get("module_title"), entry.get("title"), entry.get("name")),
            "description": first_str(
                entry.get("module_description"), entry.get("description"), entry.get("objective")
            ),
            "metadata": {
                k: v for k, v in entry.items() if k != "lessons" and not isinstance(v, dict | list)
            },
        }
    return modules


def module_number(entry: dict[str, Any]) -> int | None:
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


def labels(body: str) -> dict[str, str]:
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


def module_title_hint(fm: dict[str, Any], labels: dict[str, str], module: int) -> str | None:
    from_fm = first_str(fm.get("module_title"), fm.get("module_name"))
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


def sections(body: str) -> Iterable[tuple[str, str]]:
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


def audience(
    course: str, title: str, brief_body: str, curriculum: dict[str, Any]
) -> Audience | None:
    for heading, text in sections(brief_body):
        lowered = heading.lower()
        if (
            "icp" in lowered
            or "público" in lowered
            or "publico" in lowered
            or "audience" in lowered
        ) and text:
            metadata = mapping(curriculum.get("metadata")) or mapping(
                mapping(curriculum.get("course")).get("metadata")
            )
            level = metadata.get("knowledge_level") or metadata.get("level")
            return Audience(
                slug=f"{course}-audience",
                name=f"{title}: {heading}"[:200],
                description=text.replace("\x00", ""),
                technical_level=level if level in TECHNICAL_LEVELS else None,
            )
    return None


def labelled_block(body: str, labels: tuple[str, ...]) -> str | None:
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


def brief_tags(body: str) -> list[str]:
    block = labelled_block(body, ("tags (3-7 palavras-chave)", "tags"))
    if not block:
        return []
    return [
        re.sub(r"^\s*(?:\d+[.)]|[-*])\s*", "", line) for line in block.splitlines() if line.strip()
    ]
