"""The shipped service unit and image definition pass their linters."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import doc_section

REPO = Path(__file__).resolve().parent.parent


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is required (.ci/run installs it)"
    unit = (REPO / "systemd/syncd.service").read_text(encoding="utf-8")
    # verify checks that ExecStart exists: point it at this checkout's syncd
    syncd = Path(sys.executable).parent / "syncd"
    assert "ExecStart=/opt/syncd/venv/bin/syncd run" in unit
    (tmp_path / "syncd.service").write_text(unit.replace("/opt/syncd/venv/bin/syncd", str(syncd)))
    result = subprocess.run(
        [analyze, "verify", str(tmp_path / "syncd.service")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "syncd.service" not in result.stderr, result.stderr
    for required in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "RestartPreventExitStatus=2 4",
        "EnvironmentFile=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "ReadOnlyPaths=",
    ):
        assert required in unit, required


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(REPO / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert dockerfile.count("FROM ") == 2 and "USER 10001" in dockerfile


def test_the_stop_fits_the_units_timeout_stop_sec_with_room_and_the_docs_agree() -> None:
    """The stop could take --shutdown-timeout twice plus 15 s: 55 s against the unit's 45."""
    import re

    from syncd.config import Settings
    from syncd.daemon import STOP_TAIL_S

    unit = (REPO / "systemd/syncd.service").read_text(encoding="utf-8")
    match = re.search(r"^TimeoutStopSec=(\d+)$", unit, re.MULTILINE)
    assert match, "TimeoutStopSec missing"
    stop_budget = Settings().shutdown_timeout_s + STOP_TAIL_S
    assert stop_budget <= int(match.group(1)) - 15, (stop_budget, match.group(1))
    documented = " ".join(doc_section("docs/operations.md", "Run as a systemd service").split())
    assert f"closing takes at most {STOP_TAIL_S:g} s more" in documented
    assert f"`TimeoutStopSec={match.group(1)}`" in documented
    docs = (REPO / "docs/configuration.md").read_text(encoding="utf-8")
    assert f"closing takes at most {STOP_TAIL_S:g} s more" in docs
    assert f"`TimeoutStopSec={match.group(1)}`" in docs
