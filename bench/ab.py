"""Before and after in one run: ``python -m bench.ab --before DIR [--rounds N] [--quick]
[--only NAME ...] [--cold-sizes LESSONS ...]``.

DIR is another checkout of syncd (e.g. ``git worktree add --detach /tmp/before <commit>``,
with its own ``.venv``). Each round runs ``python -m bench.run`` in DIR, then in this
checkout, each with its own interpreter and sources, one after the other on the same
machine, so that the two sides share the load of the moment. Prints, for every
measurement both sides report, the median of each side's medians and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def _run(tree: Path, args: list[str], out: Path) -> dict[str, float]:
    python = tree / ".venv" / "bin" / "python"
    command = [str(python), "-m", "bench.run", *args, "--out", str(out)]
    print(f"$ (cd {tree} && {' '.join(command[1:])})", file=sys.stderr, flush=True)
    subprocess.run(command, cwd=tree, check=True, stdout=subprocess.DEVNULL)
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    return {
        f"{r['measurement']}: {r['label']} ({r['unit']})": r["median"]
        for r in rows
        if r.get("median")
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--before", type=Path, required=True, help="the other checkout")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each side")
    parser.add_argument("--quick", action="store_true", help="bench.run --quick")
    parser.add_argument("--only", action="append", default=[], help="bench.run --only")
    parser.add_argument("--cold-sizes", nargs="+", default=[], help="bench.run --cold-sizes")
    args = parser.parse_args(argv)
    bench_args = (["--quick"] if args.quick else []) + [f"--only={n}" for n in args.only]
    if args.cold_sizes:
        bench_args += ["--cold-sizes", *args.cold_sizes]
    sides: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for side, tree in (("before", args.before.resolve()), ("after", HERE)):
                out = Path(tmp) / f"{side}-{round_}.json"
                for label, value in _run(tree, bench_args, out).items():
                    sides[side].setdefault(label, []).append(value)
    print(f"| measurement ({args.rounds} runs each, alternating) | before | after | after/before |")
    print("|---|---|---|---|")
    for label, after in sides["after"].items():
        before = sides["before"].get(label)
        if not before:
            continue
        b, a = statistics.median(before), statistics.median(after)
        print(f"| {label} | {b:.4g} | {a:.4g} | {a / b:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
