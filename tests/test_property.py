"""For any bytes, the parser returns records or raises its own error, nothing else."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.course import CourseSnapshot
from syncd.errors import ParseError
from syncd.parser import parse_course

NAMES = st.sampled_from(
    [
        "COURSE-BRIEF.md",
        "curriculum.yaml",
        "course-outline.md",
        ".metadata.json",
        "lessons/1.1-a.md",
        "lessons/01.2-b.md",
        "lessons/BONUS-c.md",
        "lessons/99999.1-d.md",
        "assessments/quiz.yaml",
        "resources/r.md",
        "research/notes.md",
    ]
)
YAMLISH = st.sampled_from(
    [
        b"---\n",
        b"\n---\n",
        b"modules:\n",
        b"  - module_id: ",
        b"&a [",
        b"*a",
        b"]",
        b"\xef\xbb\xbf",
        b"\x00",
        b"\r\n",
        b"# H1\n",
        b"**M\xc3\xb3dulo:** 1 - X\n",
        b"title: ",
        b"{",
        b"}",
        b"- ",
        b"\xff\xfe",
        b"!!binary",
        b"!!python/object:os.system",
    ]
)
CONTENT = st.one_of(st.binary(max_size=2048), st.lists(YAMLISH, max_size=40).map(b"".join))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    files=st.dictionaries(NAMES, CONTENT, max_size=6),
    course=st.one_of(st.just("curso"), st.text(max_size=12)),
)
def test_any_bytes_give_records_or_a_parse_error(files: dict[str, bytes], course: str) -> None:
    try:
        snapshot = parse_course(course, files)
    except ParseError:
        return
    assert isinstance(snapshot, CourseSnapshot)
    for content in snapshot.contents:
        assert content.content is None or "\x00" not in content.content
        assert content.slug and content.title
    for issue in snapshot.rejected:
        assert issue.path.startswith(f"{course}/") and issue.reason
