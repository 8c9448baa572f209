"""The course store in memory: what sql/course.sql does to PostgreSQL, done to plain dicts,
so that the real Reconciler and verify run in unit tests (procrastinate ships its
InMemoryConnector for the same reason).

``MemoryDatabase`` holds the tables: projects, minds, audiences, contents rows (soft
deleted or live), syncd's bookkeeping of each row and course, sources, conflicts, refused
files and skipped folders. Its ``edit_*``/``delete_row`` methods are the app's own writes
(they move a row's write mark, as a write in SQL moves its xmin), so that a test sees what
syncd repairs. ``MemoryStore`` is one source's view of it and implements ``CourseStorage``
with the pure core of the SQL store (``plan_course``, ``project_differences``), so that it
makes the same decisions. Each transaction runs under one lock on a copy of the tables
that replaces them only when it succeeds.

Not modelled: refusals by the database (a row it would refuse is written; ``refused`` can be
set by a test), locks and timeouts, triggers and row-level security."""

from syncd.memory.store import MemoryStore
from syncd.memory.tables import MemoryDatabase

__all__ = ["MemoryDatabase", "MemoryStore"]
