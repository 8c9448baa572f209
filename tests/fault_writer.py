"""One of the concurrent writer processes of the fault suite: creates, edits, renames and
deletes lessons at random for a while, the way generators and editors do."""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path


def main() -> None:
    root, seed, seconds = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    rng = random.Random(seed)
    courses = sorted(p for p in root.iterdir() if p.is_dir())
    deadline = time.monotonic() + seconds
    serial = 0
    while time.monotonic() < deadline:
        lessons = rng.choice(courses) / "lessons"
        existing = sorted(lessons.glob("*.md"))
        op = rng.choice(["create", "edit", "edit", "rename", "delete"])
        serial += 1
        try:
            if op == "create" or not existing:
                module, number = rng.randint(1, 4), rng.randint(1, 30)
                target = lessons / f"{module}.{number}-w{seed}-{serial}.md"
                _atomic(target, f"# Aula {module}.{number}\n\nwriter {seed} #{serial}\n")
            elif op == "edit":
                target = rng.choice(existing)
                _atomic(target, target.read_text(encoding="utf-8") + f"edit {seed}-{serial}\n")
            elif op == "rename":
                source = rng.choice(existing)
                os.rename(
                    source, source.with_name(f"{source.stem.split('-r')[0]}-r{seed}x{serial}.md")
                )
            else:
                rng.choice(existing).unlink()
        except FileNotFoundError:
            pass  # another writer got there first
        time.sleep(rng.uniform(0.005, 0.05))


def _atomic(path: Path, text: str) -> None:
    temp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


if __name__ == "__main__":
    main()
