"""What a person at a terminal sees of a rescan: a progress bar (rich) with the log lines
scrolling above it, and a summary table at the end. Off a terminal there is no bar; the
JSON log says everything.

rich rather than hand-drawn ``\\r`` lines: it redraws the bar under every line written to
stderr while it is live (log lines never glue onto the bar) and clears it properly."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from syncd.tree_pass import Summary


@dataclass
class RescanProgress:
    """Courses done of the total, told by the reconcile after each course."""

    done: int = 0
    total: int = 0
    _bar: Progress | None = None
    _task: Any = None

    def __call__(self, done: int, total: int, course: str) -> None:
        self.done, self.total = done, total
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total, course=course)


def on_terminal() -> bool:
    return sys.stderr.isatty()


@contextmanager
def rescan_progress() -> Iterator[RescanProgress]:
    """A bar on a terminal (log lines scroll above it), nothing otherwise."""
    progress = RescanProgress()
    if not on_terminal():
        yield progress
        return
    bar = Progress(
        TextColumn("[bold]rescan"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("courses"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[course]}", style="dim"),
        console=Console(stderr=True),
        transient=True,  # the summary table takes its place
        redirect_stderr=True,  # log lines written meanwhile print above the bar
    )
    progress._bar, progress._task = bar, bar.add_task("rescan", total=None, course="")
    with bar:
        yield progress


def print_summary(summary: Summary, *, write: bool) -> None:
    """The rescan's figures as a table, on a terminal."""
    if not on_terminal():
        return
    table = Table(title="rescan summary" if write else "rescan summary (dry run: nothing written)")
    for column in ("courses", "inserted", "updated", "deleted", "unchanged", "skipped"):
        table.add_column(column, justify="right")
    for column in ("archived", "rejected", "failed", "seconds"):
        table.add_column(column, justify="right")
    table.add_row(
        *(
            str(v)
            for v in (
                summary.courses,
                summary.inserted,
                summary.updated,
                summary.deleted,
                summary.unchanged,
                summary.skipped,
                summary.archived,
                len(summary.rejected),
                len(summary.failed),
                f"{summary.ms / 1000:.1f}",
            )
        )
    )
    console = Console(stderr=True)
    console.print(table)
    if summary.skipped_folders:
        skipped = ", ".join(f"{k} ({v} files)" for k, v in summary.skipped_folders.items())
        console.print(f"not course folders, skipped: {skipped}")
