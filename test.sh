#!/usr/bin/env bash
# The test command of README.md: sets up a virtualenv, then lint (ruff), types (mypy)
# and the test suite (pytest) against a real PostgreSQL that the suite starts itself
# from the pgserver wheel, on several workers (pytest-xdist). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check syncd tests bench
.venv/bin/ruff format --check syncd tests bench
.venv/bin/mypy
# The suite mostly waits (daemons started and stopped, outages, timeouts), so it runs on
# 4 workers even on 2 cores; tests marked xdist_group run on one worker together, and
# `./test.sh -n 0` runs the whole suite in one process. Extra arguments go last: they win.
.venv/bin/python -m pytest -n 4 --dist loadgroup "$@"
