#!/usr/bin/env bash
# Records what a person sees of a 100-course `syncd --rescan` at a terminal (docs/commands.md:
# "At a terminal"): tmux runs it in a 120x26 pane, and the pane is captured as text while
# the bar is live and once more at the end. Uses the embedded PostgreSQL in a scratch folder.
# Usage: bench/record_console.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/syncd-console}
rm -rf "$out" && mkdir -p "$out/courses"
.venv/bin/python - "$out/courses" <<'PY'
import sys
from pathlib import Path
from bench import gen
root = Path(sys.argv[1])
for i in range(100):
    gen.write_course(root, i)
# two things an operator should see scroll past: a broken lesson and a stray folder
lesson = sorted((root / "curso-00042" / "lessons").iterdir())[0]
lesson.write_text("---\ntitle: [unclosed\n---\n# Broken\n", encoding="utf-8")
(root / "notes").mkdir()
(root / "notes" / "todo.txt").write_text("not a course\n", encoding="utf-8")
PY
session="syncd-rec-$$"
tmux new-session -d -s "$session" -x 120 -y 26
trap 'tmux kill-session -t "$session" 2>/dev/null || true' EXIT
# migrate first, so that the recorded run is the rescan alone
SYNCD_DATA_DIR="$out/pg" .venv/bin/syncd migrate >/dev/null 2>&1
tmux send-keys -t "$session" "clear; .venv/bin/syncd --rescan --root $out/courses --data-dir $out/pg --workers 2; echo exit=\$?" Enter
for i in $(seq 1 200); do
  screen=$(tmux capture-pane -t "$session" -p)
  # the first frame with the bar past a third of the courses
  if [ ! -s "$out/during.txt" ] && grep -Eq "rescan .* ([4-9][0-9])/100 courses" <<<"$screen"; then
    printf '%s\n' "$screen" >"$out/during.txt"
  fi
  if grep -q "exit=" <<<"$screen"; then
    printf '%s\n' "$screen" >"$out/end.txt"
    break
  fi
  sleep 0.05
done
echo "--- while it runs ($out/during.txt)"; cat "$out/during.txt" 2>/dev/null || echo "(no frame with the bar)"
echo "--- at the end ($out/end.txt)"; cat "$out/end.txt"
.venv/bin/syncd embedded-stop --data-dir "$out/pg" >/dev/null 2>&1 || true
