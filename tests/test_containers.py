"""Issue 12: the image is built and run, and the unit runs under a real systemd, with rootful
podman (`containers` marker: .ci/run selects these tests with SYNCD_CONTAINER_TESTS=1 and
installs podman, runc and mmdebstrap; where containers cannot run they fail, saying why).

Both containers use the host's network and reach the suite's PostgreSQL through a TCP proxy
on loopback, which the image test also uses to take the database away."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.containers import (
    BASE_IMAGE,
    BASE_PACKAGES,
    SYSTEMD_IMAGE,
    SYSTEMD_PACKAGES,
    Podman,
    checkout_copy,
    ensure_base,
    podman_for_tests,
)
from tests.daemon_harness import REPO
from tests.helpers import doc_section, lesson_text, make_course, write
from tests.proxy import Proxy, proxy_in_front_of

# xdist_group: under xdist (./test.sh) they run one after the other on one worker. They
# share the image names (IMAGE, BASE_IMAGE, SYSTEMD_IMAGE) and the rootfs tarballs of the
# cache folder, which two workers would build and import at once, and the module's podman.
pytestmark = [
    pytest.mark.containers,
    pytest.mark.timeout(900),
    pytest.mark.xdist_group("podman"),
]

IMAGE = "localhost/syncd:suite"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    return podman_for_tests(tmp_path_factory.mktemp("podman"))


@pytest.fixture
def proxied(empty_dsn: str) -> Iterator[tuple[Proxy, str, str]]:
    """(proxy, the DSN containers use over loopback TCP, the suite's own DSN)."""
    proxy, _ = proxy_in_front_of(empty_dsn)
    name = psycopg.conninfo.conninfo_to_dict(empty_dsn)["dbname"]
    try:
        yield proxy, f"postgresql://postgres@127.0.0.1:{proxy.port}/{name}", empty_dsn
    finally:
        proxy.close()


def lessons(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select count(*) from contents where content_type = 'course_lesson'"
            " and deleted_at is null"
        ).fetchone()
    return int(row[0]) if row else 0


def readable_tree(root: Path) -> Path:
    """The image runs as uid 10001: the tree must be readable by others."""
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def timed(name: str, started: float) -> None:
    TIMINGS[name] = round(time.monotonic() - started, 1)
    print(f"[timing] {name}: {TIMINGS[name]} s")


# -- the image ---------------------------------------------------------------------------


def test_the_image_builds_runs_as_non_root_syncs_reports_health_and_stops_cleanly(
    podman: Podman, proxied: tuple[Proxy, str, str], tmp_path: Path
) -> None:
    proxy, dsn, direct = proxied
    started = time.monotonic()
    if ensure_base(podman, BASE_IMAGE, BASE_PACKAGES, "base.tar", ['CMD ["/bin/bash"]']):
        timed("base image", started)
    started = time.monotonic()
    podman(
        "build",
        "--format",
        "docker",  # the OCI format drops HEALTHCHECK
        "--build-arg",
        f"BASE_IMAGE={BASE_IMAGE}",
        "-t",
        IMAGE,
        str(checkout_copy(REPO, tmp_path / "src")),
        timeout=900,
    )
    timed("image build", started)
    inspect = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    assert inspect["Config"]["User"] == "10001:10001"
    assert inspect["Healthcheck"]["Test"] == ["CMD", "syncd", "health"]

    root = tmp_path / "courses"
    make_course(root, "alpha", lessons=3)
    make_course(root, "beta", lessons=2)
    readable_tree(root)
    started = time.monotonic()
    env = ["-e", f"DATABASE_URL={dsn}"]
    podman("run", "--rm", "--network", "host", *env, IMAGE, "migrate", timeout=300)
    unnamed = podman(
        "run", "--rm", "--network", "host", *env, "-v", f"{root}:/courses:ro", IMAGE, "--rescan",
        check=False,
    )  # fmt: skip
    assert unnamed.returncode == 2 and "SYNCD_SOURCE" in unnamed.stderr, unnamed.stderr
    env += ["-e", "SYNCD_SOURCE=suite-image"]  # docs/operations.md's Docker section names one
    name = f"syncd-suite-{os.getpid()}"
    podman(
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        *env,
        "-e",
        "SYNCD_HEALTH_UNREACHABLE_AFTER=5",
        "-e",
        "SYNCD_HEARTBEAT=2",
        "-v",
        f"{root}:/courses:ro",
        IMAGE,
    )
    try:

        def healthy() -> bool:
            return podman("healthcheck", "run", name, check=False).returncode == 0

        def unhealthy() -> bool:
            return podman("healthcheck", "run", name, check=False).returncode != 0

        podman.wait_for(lambda: lessons(direct) == 5, 120, "the tree's rows in the database")
        users = podman("top", name, "huser", "user", "args").stdout.splitlines()[1:]
        daemon = [line.split() for line in users if "syncd" in line]
        assert daemon and all(fields[0] == "10001" for fields in daemon), users
        podman.wait_for(healthy, 60, "a healthy check")

        write(root / "alpha/lessons/1.4-from-the-host.md", lesson_text(1, 4))
        readable_tree(root)
        podman.wait_for(lambda: lessons(direct) == 6, 60, "an edit on the host tree synced")

        proxy.refuse()  # the database goes away; an edit makes the daemon notice
        write(root / "beta/lessons/1.3-in-the-outage.md", lesson_text(1, 3))
        readable_tree(root)
        podman.wait_for(unhealthy, 90, "an unhealthy check, 5 s into the outage")
        said = podman("healthcheck", "run", name, check=False)
        logs = podman("logs", name).stdout + podman("logs", name).stderr
        assert '"breaker opened"' in logs, said.stdout
        proxy.heal()
        podman.wait_for(healthy, 90, "a healthy check after the outage")
        podman.wait_for(lambda: lessons(direct) == 7, 60, "the outage's edit synced")

        stop = time.monotonic()
        podman("stop", "-t", "30", name, timeout=60)
        timed("image: podman stop", stop)
        state = json.loads(podman("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0, state
        done = podman("logs", name)
        stopped = [
            json.loads(line)
            for line in (done.stdout + done.stderr).splitlines()
            if '"daemon stopped"' in line
        ]
        assert stopped and stopped[-1]["unsynced"] == 0 and stopped[-1]["exit_code"] == 0
    finally:
        podman("rm", "-f", name, check=False)
        timed("image: run, outage, stop", started)


# -- the unit under systemd --------------------------------------------------------------


def documented_systemd_commands() -> list[str]:
    """The shell lines of docs/operations.md's systemd section, as an operator would type
    them."""
    section = doc_section("docs/operations.md", "Run as a systemd service")
    block = section.split("```sh", 1)[1].split("```", 1)[0]
    return [line for line in block.strip().splitlines() if line and not line.startswith("#")]


def test_the_unit_installed_as_the_docs_say_runs_hardened_under_systemd(
    podman: Podman, proxied: tuple[Proxy, str, str], tmp_path: Path
) -> None:
    _proxy, dsn, direct = proxied
    started = time.monotonic()
    if ensure_base(
        podman,
        SYSTEMD_IMAGE,
        SYSTEMD_PACKAGES,
        "systemd-base.tar",
        ['CMD ["/sbin/init"]', "STOPSIGNAL SIGRTMIN+3"],
    ):
        timed("systemd base image", started)
    root = readable_tree(make_course(tmp_path / "courses", "gamma", lessons=2).parent)
    source = checkout_copy(REPO, tmp_path / "src")
    name = f"syncd-unit-{os.getpid()}"
    started = time.monotonic()
    podman(
        "run",
        "-d",
        "--name",
        name,
        "--systemd=always",
        "--cap-add",
        "SYS_ADMIN",  # without it systemd skips the hardening (a log line, no failure)
        "--network",
        "host",
        "-v",
        f"{root}:/srv/creatoros/outputs/courses:ro",
        "-v",
        f"{source}:/opt/syncd-src",
        SYSTEMD_IMAGE,
        "/sbin/init",
    )

    def sh(command: str, check: bool = True, timeout: float = 300) -> str:
        done = podman(
            "exec", "-w", "/opt/syncd-src", "-e", f"DATABASE_URL={dsn}", name,
            "bash", "-euo", "pipefail", "-c", command,
            check=False, timeout=timeout,
        )  # fmt: skip
        if check:
            assert done.returncode == 0, (
                f"{command!r} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )
        return done.stdout

    def show(prop: str) -> str:
        return sh(f"systemctl show syncd -p {prop} --value").strip()

    try:
        podman.wait_for(
            lambda: (
                sh("systemctl is-system-running --wait || true", check=False).strip()
                in ("running", "degraded")
            ),
            120,
            "systemd to boot",
        )
        timed("systemd: boot", started)
        started = time.monotonic()
        for command in documented_systemd_commands():  # docs/operations.md, line by line
            sh(command, timeout=600)
        timed("systemd: the documented install commands", started)

        # enable --now returned after READY=1: active (running), its rows are there
        assert (show("ActiveState"), show("SubState")) == ("active", "running")
        assert lessons(direct) == 2
        assert "pending=" in show("StatusText")
        main_pid = show("MainPID")
        # hardening applied: the service has its own mount namespace, / read-only
        host_pid = {
            fields[1]: fields[0]
            for fields in (
                line.split() for line in podman("top", name, "hpid", "pid").stdout.splitlines()[1:]
            )
        }
        init = podman("inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
        service_ns = os.readlink(f"/proc/{host_pid[main_pid]}/ns/mnt")
        assert service_ns != os.readlink(f"/proc/{init}/ns/mnt"), "ProtectSystem= not applied"
        probe = subprocess.run(
            ["nsenter", "-t", host_pid[main_pid], "-m", "touch", "/usr/syncd-probe"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe

        # idle for longer than WatchdogSec: not restarted (its heartbeats show it looked)
        unit = (REPO / "systemd/syncd.service").read_text(encoding="utf-8")
        found = re.search(r"^WatchdogSec=(\d+)$", unit, re.MULTILINE)
        assert found, "the unit has no WatchdogSec="
        watchdog_s = int(found.group(1))
        idle_from = time.monotonic()
        podman.wait_for(
            lambda: (
                time.monotonic() - idle_from > watchdog_s + 5
                and '"heartbeat"' in sh("journalctl -u syncd -o cat --no-pager")
            ),
            watchdog_s + 120,
            f"{watchdog_s + 5} s of idling",
        )
        assert (show("MainPID"), show("NRestarts"), show("ActiveState")) == (
            main_pid,
            "0",
            "active",
        )
        timed("systemd: idle past WatchdogSec", idle_from)

        # hung (SIGSTOP): the watchdog kills and restarts it
        hung_at = time.monotonic()
        sh("systemctl kill --kill-whom=main --signal=SIGSTOP syncd")
        podman.wait_for(
            lambda: show("NRestarts") == "1" and show("ActiveState") == "active",
            watchdog_s + 90,
            "the watchdog to restart the hung daemon",
        )
        assert show("MainPID") != main_pid
        assert "Watchdog timeout" in sh("journalctl -u syncd --no-pager")
        timed("systemd: hung → restarted by the watchdog", hung_at)

        stopping = time.monotonic()
        sh("systemctl stop syncd")
        assert (show("Result"), show("ExecMainStatus"), show("ActiveState")) == (
            "success",
            "0",
            "inactive",
        )
        timed("systemd: stop", stopping)
    finally:
        podman("rm", "-f", name, check=False, timeout=120)
