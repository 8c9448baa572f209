#!/usr/bin/env bash
# The test command of README.md: sets up a virtualenv, then lint (ruff), types (mypy)
# and the test suite (pytest) against a real PostgreSQL that the suite starts itself
# from the pgserver wheel. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/ruff check syncd tests bench
.venv/bin/ruff format --check syncd tests bench
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
