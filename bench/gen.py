"""Deterministic course trees for the benchmark.

``generate(root, lessons)`` writes ``lessons`` lesson files spread over courses of 20
lessons (4 modules of 5), each course with a ``curriculum.yaml``. Lessons look like the
CreatorOS ones: an H1 (``# Aula 1.2 - ...``), a bold label block (``**Módulo:** 1 - ...``,
``**Duração:** ...``, ``**Revisão:** r0``), then ``##`` sections of prose, 3-6 KB each.

Course ``i`` depends only on (seed, i): a 1,000-lesson tree holds the same first 50
courses as a 10,000-lesson tree. The ``**Revisão:**`` label is what the latency benchmark
rewrites (it lands in ``metadata.labels`` of the lesson row).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

LESSONS_PER_COURSE = 20
LESSONS_PER_MODULE = 5
MIN_BYTES = 3_000
MAX_BYTES = 6_000
REVISION_LABEL = "Revisão"
DEFAULT_SEED = 20251201

_SYLLABLES = (
    *("ca", "de", "fi", "go", "lu", "ma", "ne", "pi", "ro", "su", "ta", "ve", "xi", "zo"),
    *("bra", "cri", "dro", "fla", "gre", "pla", "tro", "nha", "lho", "que", "gui", "ção"),
    *("são", "mente", "dade", "ria", "dor", "tor", "par", "ter", "mos", "vel", "ral"),
)
_SECTIONS = (
    "🎯 GOAL (O que você vai conseguir)",
    "📍 POSITION (Onde você está agora)",
    "🔄 STEPS (Como chegar lá)",
    "🧪 PRÁTICA",
    "✅ CHECKLIST",
    "📚 PARA SABER MAIS",
)
_BLOOM = ("Remember", "Understand", "Apply", "Analyze", "Evaluate", "Create")


@dataclass(frozen=True)
class Tree:
    root: Path
    courses: tuple[str, ...]
    lessons: int

    @property
    def rows(self) -> int:
        """contents rows syncd writes: outline + modules + lessons per course."""
        modules = LESSONS_PER_COURSE // LESSONS_PER_MODULE
        return len(self.courses) * (1 + modules) + self.lessons


class _Vocabulary:
    """A fixed pool of words and sentences: cheap to sample, realistic for the FTS index."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        self.words = [
            "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4))) for _ in range(3000)
        ]
        self.sentences = [self._sentence(rng) for _ in range(2000)]

    def _sentence(self, rng: random.Random) -> str:
        words = rng.choices(self.words, k=rng.randint(8, 24))
        if rng.random() < 0.3:
            i = rng.randrange(len(words))
            words[i] = f"**{words[i]}**"
        text = " ".join(words)
        return text[0].upper() + text[1:] + rng.choice(".....!?:")

    def title(self, rng: random.Random, words: int) -> str:
        return " ".join(rng.choices(self.words, k=words)).capitalize()


_VOCABULARIES: dict[int, _Vocabulary] = {}


def _vocabulary(seed: int) -> _Vocabulary:
    if seed not in _VOCABULARIES:
        _VOCABULARIES[seed] = _Vocabulary(seed)
    return _VOCABULARIES[seed]


def course_name(index: int, prefix: str = "curso") -> str:
    return f"{prefix}-{index:05d}"


def slugify(text: str) -> str:
    out = "".join(c if c.isalnum() and c.isascii() else "-" for c in text.lower())
    return "-".join(part for part in out.split("-") if part)


def lesson_text(
    vocab: _Vocabulary,
    rng: random.Random,
    *,
    module: int,
    lesson: int,
    title: str,
    module_title: str,
    revision: str = "r0",
) -> str:
    target = rng.randint(MIN_BYTES, MAX_BYTES)
    head = (
        f"# Aula {module}.{lesson} - {title}\n\n"
        f"**Módulo:** {module} - {module_title}  \n"
        f"**Duração:** {rng.randint(8, 25)} minutos  \n"
        f"**Nível Bloom:** {rng.choice(_BLOOM)}  \n"
        f"**{REVISION_LABEL}:** {revision}\n\n---\n"
    )
    parts = [head]
    size = len(head.encode())
    section = 0
    while size < target:
        if section < len(_SECTIONS) and (section == 0 or rng.random() < 0.35):
            block = f"\n## {_SECTIONS[section]}\n\n"
            section += 1
        elif rng.random() < 0.15:
            block = "".join(f"- {rng.choice(vocab.sentences)}\n" for _ in range(rng.randint(2, 5)))
            block += "\n"
        else:
            block = " ".join(rng.choices(vocab.sentences, k=rng.randint(2, 6))) + "\n\n"
        parts.append(block)
        size += len(block.encode())
    return "".join(parts)


def write_course(root: Path, index: int, seed: int = DEFAULT_SEED, prefix: str = "curso") -> str:
    """Write course ``index`` (20 lessons) under ``root``; returns its folder name."""
    vocab = _vocabulary(seed)
    rng = random.Random(f"{seed}:{prefix}:{index}")
    name = course_name(index, prefix)
    folder = root / name
    (folder / "lessons").mkdir(parents=True, exist_ok=True)
    modules = LESSONS_PER_COURSE // LESSONS_PER_MODULE
    course_title = vocab.title(rng, 4)
    module_titles = [vocab.title(rng, 3) for _ in range(modules)]
    curriculum = [
        f'title: "{course_title}"',
        f'slug: "{name}"',
        'version: "1.0"',
        "metadata:",
        '  mode: "expert"',
        f"  num_modules: {modules}",
        f"  num_lessons: {LESSONS_PER_COURSE}",
        '  knowledge_level: "beginner"',
        "modules:",
    ]
    for m in range(1, modules + 1):
        curriculum += [
            f"  - module_id: {m}",
            f'    module_title: "{module_titles[m - 1]}"',
            f'    description: "{rng.choice(vocab.sentences).replace(chr(34), "")}"',
            "    lessons:",
        ]
        for n in range(1, LESSONS_PER_MODULE + 1):
            title = vocab.title(rng, rng.randint(3, 7))
            file_name = f"{m}.{n}-{slugify(title)[:60]}.md"
            curriculum += [
                f'      - lesson_id: "{m}.{n}"',
                f'        lesson_title: "{title}"',
                f'        file_path: "lessons/{file_name}"',
            ]
            text = lesson_text(
                vocab, rng, module=m, lesson=n, title=title, module_title=module_titles[m - 1]
            )
            (folder / "lessons" / file_name).write_text(text, encoding="utf-8")
    (folder / "curriculum.yaml").write_text("\n".join(curriculum) + "\n", encoding="utf-8")
    return name


def generate(
    root: Path, lessons: int, seed: int = DEFAULT_SEED, prefix: str = "curso", first: int = 0
) -> Tree:
    """A tree of ``lessons`` lessons (a multiple of 20) in courses ``first``, ``first+1``..."""
    if lessons % LESSONS_PER_COURSE:
        raise ValueError(f"lessons must be a multiple of {LESSONS_PER_COURSE}")
    root.mkdir(parents=True, exist_ok=True)
    courses = tuple(
        write_course(root, first + i, seed, prefix) for i in range(lessons // LESSONS_PER_COURSE)
    )
    return Tree(root, courses, lessons)


def tree_bytes(root: Path) -> int:
    total = 0
    for folder, _dirs, files in os.walk(root):
        total += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    return total
