"""`syncd report`: the operator's monitoring queries (syncd/sql/report.sql) as tables."""

from __future__ import annotations

from typing import Any

from syncd.sqlfiles import queries

TITLES = {
    "writes_last_24h": "Writes in the last 24 hours",
    "hierarchy_problems": "Hierarchy problems",
    "data_quality": "Data quality of live lessons",
    "rls_status": "Row-level security",
    "mind_attribution": "Mind attribution",
    "skipped_folders": "Folders under the root that are not courses",
    "sources": "Sources (each syncd writing here)",
    "source_conflicts": "Course folders held by two sources",
}


def render(conn: Any) -> str:
    """Every query of report.sql, inside the caller's transaction (none is ended here)."""
    sections = []
    for name, sql in queries("report.sql").items():
        cur = conn.execute(sql)
        headers = [d.name for d in cur.description or []]
        rows = cur.fetchall()
        sections.append(f"== {TITLES.get(name, name)}\n{table(headers, rows)}")
    return "\n\n".join(sections)


def table(headers: list[str], rows: list[tuple[Any, ...]]) -> str:
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if not rows:
        lines.append("(no rows)")
    return "\n".join(line.rstrip() for line in lines)
