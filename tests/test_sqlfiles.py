"""SQL lives in syncd/sql/*.sql, loaded by name: every name the code asks for is there."""

from __future__ import annotations

import re
from pathlib import Path

from syncd.sqlfiles import SQL_DIR, queries

SYNCD = Path(__file__).resolve().parent.parent / "syncd"
# query("file.sql", "name"), and the store's helpers: reading/writing(..., "file.sql") with
# their queue/one/all/many("name") calls are checked against every file they may use.
NAMED = re.compile(r'query\(\s*"(\w+\.sql)",\s*"(\w+)"')
BY_HELPER = re.compile(r'\b(?:queue|one|all|many)\(\s*"(\w+)"')
RUNNER = re.compile(r'_sql\(\s*"(\w+)"\)')


def test_every_named_query_the_code_uses_is_in_its_sql_file() -> None:
    """A query moved or renamed in sql/ without its caller fails here, not in production."""
    known = {path.name: set(queries(path.name)) for path in SQL_DIR.glob("*.sql")}
    every = set().union(*known.values())
    missing: list[str] = []
    for module in sorted(SYNCD.glob("*.py")):
        text = module.read_text(encoding="utf-8")
        for file, name in NAMED.findall(text):
            if name not in known.get(file, set()):
                missing.append(f"{module.name}: {file} {name}")
        for name in BY_HELPER.findall(text):
            if name not in every:
                missing.append(f"{module.name}: {name}")
        for name in RUNNER.findall(text):
            if name not in known["migrations.sql"]:
                missing.append(f"{module.name}: migrations.sql {name}")
    assert missing == []
