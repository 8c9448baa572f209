"""Results: one row per figure (median of its runs, comparison, target, met?), the machine
they were measured on, a markdown table and a JSON document; a full run's machine line and
table go into docs/benchmarks.md, between its markers."""

from __future__ import annotations

import hashlib
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
BEGIN = "<!-- bench/report.py writes from here"  # the markers' start: their text explains them
END = "<!-- bench/report.py writes up to here -->"


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Row:
    measurement: str  # the function that produced it (``--only`` name)
    label: str  # what was measured, as shown in the table
    unit: str  # s, ms, %, MB, ...
    runs: list[float]  # every sample the median is taken from
    comparison: str = ""
    target: str = ""
    met: bool | None = None  # None: no target, or not applicable at this size
    miss: str = ""  # by how much a missed target was missed
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return median(self.runs)

    def shown_median(self) -> str:
        return f"{fmt(self.median)} {self.unit}".strip()

    def shown_runs(self) -> str:
        return f"{self.shown_median()} (n={len(self.runs)})"

    def shown_met(self) -> str:
        if self.met is None:
            return "n/a" if self.target else ""
        return "yes" if self.met else f"**no** ({self.miss})" if self.miss else "**no**"


def fmt(value: float) -> str:
    """A figure with 3 significant digits, thousands separated."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def ratio(a: float, b: float) -> float:
    return a / b if b else float("inf")


# -- the machine -------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args],  # noqa: S607 - a fixed argv, git from PATH
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def source_digest() -> str:
    """A short hash of the code and SQL measured (syncd/ and schema/), whatever git says."""
    digest = hashlib.sha256()
    for folder in ("syncd", "schema"):
        for path in sorted((REPO / folder).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".sql"):
                digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def git_revision() -> str:
    """HEAD, plus the files of syncd/ and schema/ that differ from it."""
    try:
        rev = _git("rev-parse", "--short", "HEAD").strip()
        changed = _git("status", "--porcelain", "--", "syncd", "schema").splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if not changed:
        return rev
    names = ", ".join(line[3:] for line in changed)
    return f"{rev} + uncommitted changes ({names})"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def machine(pg_settings: dict[str, str]) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(ram_gib(), 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "postgresql": pg_settings.get("server_version", "?"),
        "pg_settings": pg_settings,
        "syncd_revision": git_revision(),
        "syncd_source_sha256": source_digest(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average_at_start": load_average(),
    }


# -- rendering ---------------------------------------------------------------------------


def render_table(rows: list[Row], info: dict[str, Any]) -> str:
    """The machine line and the table of figures, as docs/benchmarks.md shows them."""
    s = info["pg_settings"]
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, "
        f"{info['os']}; Python {info['python']}; PostgreSQL {info['postgresql']} "
        f"(pgserver wheel, default durable configuration: fsync={s.get('fsync')}, "
        f"synchronous_commit={s.get('synchronous_commit')}, "
        f"full_page_writes={s.get('full_page_writes')}, shared_buffers={s.get('shared_buffers')}, "
        f"max_wal_size={s.get('max_wal_size')}); syncd {info['syncd_revision']} "
        f"(sources sha256 {info['syncd_source_sha256']}); "
        f"{info['date']}; mode: {info['mode']}.",
        "",
        "| measurement | median | comparison / ratio | target | met? |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {row.shown_runs()} | {row.comparison} | {row.target} "
            f"| {row.shown_met()} |"
        )
    return "\n".join(lines)


def render(rows: list[Row], info: dict[str, Any], notes: list[str]) -> str:
    lines = [render_table(rows, info)]
    missed = [row for row in rows if row.met is False]
    lines += ["", "Targets missed:" if missed else "Targets missed: none."]
    for row in missed:
        lines.append(f"- {row.label}: {row.shown_median()} vs target {row.target} ({row.miss})")
    if notes:
        lines += ["", "Notes:"]
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines)


def to_json(rows: list[Row], info: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    return {
        "machine": info,
        "rows": [{**asdict(row), "median": row.median} for row in rows],
        "targets_missed": [
            {"measurement": r.label, "median": r.median, "target": r.target, "miss": r.miss}
            for r in rows
            if r.met is False
        ],
        "notes": notes,
    }


def write_docs(table: str, path: Path = DOCS) -> None:
    """Replace what lies between the markers of ``path`` with ``table`` (``render_table``);
    the guide's own text around them (how to run, comparisons, targets missed and why) stays."""
    text = path.read_text(encoding="utf-8")
    start = text.find(BEGIN)
    end = text.find(END, start)
    if start < 0 or end < 0:
        raise ValueError(f"{path} has no {BEGIN!r} ... {END!r} markers to write between")
    start = text.index("\n", start) + 1  # keep the opening marker's line
    path.write_text(text[:start] + table.rstrip("\n") + "\n" + text[end:], encoding="utf-8")
