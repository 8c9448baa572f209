"""Issue 16, item 8: as root, the embedded default (pgserver) changes no folder syncd does
not own: it used to make every folder above its data directory (and above its binaries)
readable by everyone, /root included."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg
import pytest

from syncd import config, embedded
from syncd.errors import ConfigError
from tests.helpers import make_course, run_cli

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pgserver's root path only")


def modes(path: Path) -> dict[Path, int]:
    """The mode of ``path`` and of every folder above it."""
    return {p: stat.S_IMODE(p.stat().st_mode) for p in (path, *path.parents) if p.exists()}


@pytest.fixture
def parent() -> Iterator[Path]:
    """A fresh folder under /tmp (mkdtemp: mode 0700), and no server left running in it."""
    folder = Path(tempfile.mkdtemp(prefix="syncd-embedded-"))
    yield folder
    for pid_file in folder.rglob("postmaster.pid"):
        pid = int(pid_file.read_text().split()[0])
        embedded.stop(pid_file.parent)
        if psutil.pid_exists(pid):  # the servers the test started, and only them
            os.kill(pid, signal.SIGTERM)
            psutil.Process(pid).wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


def test_as_root_a_data_dir_under_a_closed_folder_is_refused_and_the_folder_left_closed(
    parent: Path,
) -> None:
    before = modes(parent)
    assert before[parent] == 0o700
    with pytest.raises(ConfigError) as refused:
        embedded.start(parent / "pg")
    assert modes(parent) == before
    assert not (parent / "pg").exists()  # nothing made under the closed folder either
    message = str(refused.value)
    assert f"{parent} (mode 0700)" in message and "pgserver" in message
    assert "--data-dir" in message and "DATABASE_URL" in message


def test_the_refusal_is_a_configuration_error_exit_2(
    capsys: pytest.CaptureFixture[str], parent: Path
) -> None:
    root = parent / "courses"
    make_course(root, "c", lessons=1)
    before = modes(parent)
    run = run_cli(capsys, ["--rescan", "--root", str(root), "--data-dir", str(parent / "pg")], None)
    assert run.code == 2
    assert "syncd will not open" in run.named("configuration error")[0]["reason"]
    assert modes(parent) == before


def test_as_root_the_default_data_dir_is_under_var_lib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platformdirs.user_data_dir", lambda *_a, **_k: "/nowhere/syncd")
    assert config.default_data_dir() == Path("/var/lib/syncd/postgres")
    assert config.Settings().health_path == Path("/var/lib/syncd/health.json")


def test_a_data_dir_syncd_prepares_works_and_changes_no_folder_above_it(
    capsys: pytest.CaptureFixture[str], parent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default's shape: folders above that others can traverse (/var/lib), then
    folders syncd creates itself (syncd/postgres); run with no DATABASE_URL at all."""
    parent.chmod(0o755)
    data_dir = parent / "syncd" / "postgres"
    monkeypatch.setattr("syncd.config.ROOT_DATA_DIR", data_dir)
    monkeypatch.setattr("platformdirs.user_data_dir", lambda *_a, **_k: str(parent / "home"))
    root = parent / "courses"
    make_course(root, "c", lessons=1)
    before = modes(parent)
    run = run_cli(capsys, ["--rescan", "--root", str(root)], None)
    assert run.code == 0, run.stderr
    assert run.named("embedded database ready")[0]["data_dir"] == str(data_dir)
    assert modes(parent) == before
    assert stat.S_IMODE((parent / "syncd").stat().st_mode) == 0o755  # syncd's own folder


def test_binaries_below_a_closed_folder_are_run_from_a_copy(
    parent: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A virtualenv in /root: the server runs from a copy of the binaries beside the data
    directory; the closed folder above the wheel stays closed."""
    import pgserver

    for module in (pgserver.postgres_server, pgserver._commands):  # restored after the test
        monkeypatch.setattr(module, "POSTGRES_BIN_PATH", module.POSTGRES_BIN_PATH)
    parent.chmod(0o755)
    closed = parent / "root"
    closed.mkdir(mode=0o700)
    wheel = embedded.installed_bin().parent.parent  # site-packages/pgserver
    shutil.copytree(wheel / "pginstall", closed / "pgserver" / "pginstall", symlinks=True)
    shutil.copytree(wheel.parent / "pgserver.libs", closed / "pgserver.libs")
    monkeypatch.setattr(embedded, "installed_bin", lambda: closed / "pgserver/pginstall/bin")
    open_parent = parent / "var"
    open_parent.mkdir(mode=0o755)
    before = {**modes(closed), **modes(open_parent)}
    server = embedded.start(open_parent / "syncd" / "postgres")
    try:
        assert f"{open_parent}/syncd/pgserver-" in server.psql_command
        with psycopg.connect(server.dsn) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
    finally:
        embedded.stop(open_parent / "syncd" / "postgres")
    assert {**modes(closed), **modes(open_parent)} == before
    assert os.stat(closed).st_mode & 0o077 == 0
