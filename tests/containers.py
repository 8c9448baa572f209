"""Rootful podman for the packaging tests: a private containers.conf, and Debian base images
built with mmdebstrap (no image registry is reachable on the CI machines). The rootfs
tarballs are kept in a cache folder between runs on the same machine.

Facts these settings answer (issue 12): crun refuses this kernel's hybrid cgroups (runc
is used); root cannot raise its limits, so podman's default ulimits must not exceed the hard
ones; pip inside a build reaches PyPI only if the rootfs trusts the host's extra CA
certificates (a TLS-intercepting proxy)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

import pytest

BASE_IMAGE = "localhost/syncd-base:bookworm"
SYSTEMD_IMAGE = "localhost/syncd-systemd-base:bookworm"
BASE_PACKAGES = "python3,python3-venv,ca-certificates"
SYSTEMD_PACKAGES = "systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates"
CA_HOOK = (
    'mkdir -p "$1/usr/local/share/ca-certificates" && '
    "for f in /usr/local/share/ca-certificates/*.crt; do "
    '[ -e "$f" ] && cp "$f" "$1/usr/local/share/ca-certificates/"; done; '
    'chroot "$1" update-ca-certificates >/dev/null'
)
MIRROR = Path("/etc/apt/sources.list.d/debian.sources")  # the host's own mirror, when it has one


def cache_dir() -> Path:
    """SYNCD_CI_CACHE, else /var/cache/syncd-ci."""
    return Path(os.environ.get("SYNCD_CI_CACHE", "/var/cache/syncd-ci"))


class Podman:
    def __init__(self, conf: Path) -> None:
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["podman", *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def image_exists(self, name: str) -> bool:
        return self("image", "exists", name, check=False).returncode == 0

    def wait_for(self, predicate: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.5)


def podman_for_tests(workdir: Path) -> Podman:
    """Podman that can run containers here, or a failure that says exactly why not: these
    tests are never skipped."""
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (.ci/run installs podman, runc and mmdebstrap)")
    if os.geteuid() != 0:
        pytest.fail("the container tests use rootful podman and mmdebstrap: run them as root")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = hard if hard != resource.RLIM_INFINITY else 1_048_576
    conf = workdir / "containers.conf"
    conf.write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc=32768:32768"]\n\n'
        '[engine]\nruntime = "runc"\n',
        encoding="utf-8",
    )
    podman = Podman(conf)
    info = podman("info", check=False, timeout=120)
    if info.returncode != 0:
        pytest.fail(f"podman cannot run here: {info.stderr.strip()[-2000:]}")
    return podman


def ensure_base(
    podman: Podman, image: str, packages: str, tarball: str, changes: list[str]
) -> float:
    """Import ``image`` from the cached rootfs tarball, building it with mmdebstrap first
    when the cache has none. Returns the seconds it took (0 when the image was there)."""
    if podman.image_exists(image):
        return 0.0
    started = time.monotonic()
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tar = cache / tarball
    if not tar.is_file():
        if shutil.which("mmdebstrap") is None:
            pytest.fail("mmdebstrap is not installed (.ci/run installs it)")
        partial = tar.with_name(f"{tar.stem}.partial.tar")  # mmdebstrap: a .tar name, a tarball
        partial.unlink(missing_ok=True)  # left by an interrupted run
        argv = [
            "mmdebstrap",
            "--mode=root",
            "--variant=minbase",
            f"--include={packages}",
            f"--customize-hook={CA_HOOK}",
            "bookworm",
            str(partial),
        ]
        if MIRROR.exists():
            argv.append(str(MIRROR))
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"mmdebstrap could not build {tarball}: {done.stderr.strip()[-2000:]}")
        partial.rename(tar)
    flags = [arg for change in changes for arg in ("--change", change)]
    podman("import", *flags, str(tar), image, timeout=300)
    return time.monotonic() - started


def checkout_copy(repo: Path, dest: Path) -> Path:
    """The files of this checkout that git knows (committed or not, ignored ones left out):
    what a clone would hold, with the working tree's edits."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = repo / os.fsdecode(name)
        if source.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest
