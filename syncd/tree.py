"""Reading the course tree from disk: which folders are courses, and the bytes of the
files of one course that feed a record.

Symbolic links are not followed by default (a link out of the root must not leak files): a
link is named, its rows are kept, nothing is read through it. With ``follow_symlinks`` every
link under the root is followed, wherever it points; a folder reached twice (a loop, or two
links to one place) is read once and the second way is named.

Something that exists but cannot be read (EACCES, EIO, a stale mount) is reported as
unreadable, never as absent: only a positive observation that a thing is gone
(ENOENT, ENOTDIR) lets the caller soft-delete or archive."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from syncd.course import FileIssue
from syncd.layout import is_course_folder, is_relevant

DEFAULT_MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 12
MAX_COUNTED_FILES = 100_000  # a skipped folder's file count stops here


@dataclass(frozen=True)
class TreeListing:
    courses: list[str]
    skipped: list[str]  # direct children that are not course folders (e.g. no-migration/)
    unreadable: dict[str, str] = field(default_factory=dict)  # folder -> reason
    links: list[str] = field(default_factory=list)  # direct children that are symlinks

    @property
    def held(self) -> list[str]:
        """Names whose rows must be kept although they are not read: they are there."""
        return sorted({*self.unreadable, *self.links})


@dataclass
class CourseFiles:
    course: str
    files: dict[str, bytes] = field(default_factory=dict)  # path relative to the course folder
    unreadable: list[FileIssue] = field(default_factory=list)
    exists: bool = True
    top_names: set[str] = field(default_factory=set)  # entries directly in the folder


@dataclass
class CourseScan:
    """The relevant files of one course, listed and stat()ed but not read."""

    course: str
    paths: dict[str, str] = field(default_factory=dict)  # relative path -> absolute path
    stats: list[tuple[str, int, int, int, int]] = field(default_factory=list)
    unreadable: list[FileIssue] = field(default_factory=list)
    exists: bool = True
    top_names: set[str] = field(default_factory=set)
    held: FileIssue | None = None  # the folder is there but is not read: why
    follow: bool = False  # follow symbolic links
    visited: set[tuple[int, int]] = field(default_factory=set)  # (dev, inode) of folders read
    link_targets: set[str] = field(default_factory=set)  # real paths of followed folder links
    root_real: str = ""  # real paths of the root and of the course folder (links into the
    course_real: str = ""  # root's other courses, or above it, are never followed)

    def stat_fingerprint(self, salt: str) -> bytes:
        """Hash of every file's (path, size, mtime, ctime, inode). Any write changes a
        file's ctime, which no tool can set back, so an equal hash means equal files."""
        digest = hashlib.sha256(salt.encode())
        for item in sorted(self.stats):
            digest.update(repr(item).encode("utf-8", "surrogateescape"))
        for issue in sorted(self.unreadable, key=lambda i: i.path):
            digest.update(f"{issue.path}|{issue.reason}".encode("utf-8", "surrogateescape"))
        return digest.digest()


def list_courses(root: Path, follow_symlinks: bool = False) -> TreeListing:
    """Course folders directly under ``root``. Raises OSError when the root is unreadable."""
    listing = TreeListing([], [])
    with os.scandir(root) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_symlink() and not follow_symlinks:
                    if entry.is_dir():  # a linked folder: reported, never read, never archived
                        listing.links.append(entry.name)
                    continue
                if not entry.is_dir(follow_symlinks=follow_symlinks):
                    continue
                names = os.listdir(entry.path)
            except (FileNotFoundError, NotADirectoryError):
                continue  # gone since the listing
            except OSError as exc:
                listing.unreadable[entry.name] = f"folder unreadable: {exc.strerror}"
                continue
            (listing.courses if is_course_folder(names) else listing.skipped).append(entry.name)
    return listing


def read_course(
    root: Path,
    course: str,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    follow_symlinks: bool = False,
) -> CourseFiles:
    """The relevant files of one course. Files that cannot be read become FileIssues."""
    return read_scanned(scan_course(root, course, follow_symlinks), max_file_bytes)


def scan_course(root: Path, course: str, follow_symlinks: bool = False) -> CourseScan:
    """List the relevant files of one course and stat them, without reading them."""
    result = CourseScan(course, follow=follow_symlinks)
    folder = root / course
    try:
        mode = os.lstat(folder).st_mode
        if stat.S_ISLNK(mode) and not follow_symlinks:
            result.held = FileIssue(
                course, "course folder is a symbolic link: not followed", "link"
            )
            return result
        if stat.S_ISLNK(mode):
            try:
                st = os.stat(folder)
            except OSError as exc:
                result.held = FileIssue(course, f"symbolic link: {exc.strerror}", "link")
                return result
            result.link_targets.add(os.path.realpath(folder))
            mode = st.st_mode
        if not stat.S_ISDIR(mode):
            result.exists = False
            return result
        result.top_names = set(os.listdir(folder))
    except (FileNotFoundError, NotADirectoryError):
        result.exists = False
        return result
    except OSError as exc:
        result.held = FileIssue(course, f"folder unreadable: {exc.strerror}", "unreadable")
        return result
    with contextlib.suppress(OSError):
        st = os.stat(folder)
        result.visited.add((st.st_dev, st.st_ino))
    if follow_symlinks:
        result.root_real, result.course_real = os.path.realpath(root), os.path.realpath(folder)
    _walk(str(folder), "", course, result, depth=0)
    return result


def read_scanned(scan: CourseScan, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> CourseFiles:
    out = CourseFiles(
        scan.course, unreadable=list(scan.unreadable), exists=scan.exists, top_names=scan.top_names
    )
    for rel, path in scan.paths.items():
        data = _read(path, max_file_bytes, f"{scan.course}/{rel}", out, follow=scan.follow)
        if data is not None:
            out.files[rel] = data
    return out


def _walk(folder: str, rel: str, course: str, out: CourseScan, *, depth: int) -> None:
    try:
        # links last: a folder reached both directly and through a link is read directly
        entries = sorted(os.scandir(folder), key=lambda e: (_is_link(e), e.name))
    except (FileNotFoundError, NotADirectoryError):
        return  # gone already: the next event handles it
    except OSError as exc:
        out.unreadable.append(
            FileIssue(f"{course}/{rel}", f"folder unreadable: {exc.strerror}", "unreadable")
        )
        return
    for entry in entries:
        name = f"{rel}/{entry.name}" if rel else entry.name
        shown = f"{course}/{name}"
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            out.unreadable.append(FileIssue(shown, "file name is not valid UTF-8", "unreadable"))
            continue
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            is_link = entry.is_symlink()
        except FileNotFoundError:
            continue  # gone already: the next event handles it
        except OSError as exc:
            out.unreadable.append(FileIssue(shown, f"unreadable: {exc.strerror}", "unreadable"))
            continue
        if is_link and out.follow:
            _follow(entry, name, shown, course, out, depth=depth)
            continue
        if is_dir:
            if depth < MAX_DEPTH and _may_hold_relevant(name):
                if out.follow:
                    with contextlib.suppress(OSError):
                        st = entry.stat(follow_symlinks=False)
                        out.visited.add((st.st_dev, st.st_ino))
                _walk(entry.path, name, course, out, depth=depth + 1)
            continue
        _list_file(entry, name, shown, out, is_link=is_link)


def _list_file(
    entry: os.DirEntry[str], name: str, shown: str, out: CourseScan, *, is_link: bool
) -> None:
    """A relevant file is listed with its stat; a link not followed is named instead."""
    if is_link and _may_hold_relevant(name) and _is_dir(entry):
        # rows under it are kept (it is there), but nothing is read through it
        out.unreadable.append(FileIssue(shown, "symbolic link to a folder: never followed", "link"))
        return
    if not is_relevant(name):
        return
    if is_link:
        out.unreadable.append(FileIssue(shown, "symbolic link: never followed", "link"))
        return
    try:
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return  # gone already: the next event handles it
    except OSError as exc:
        out.unreadable.append(FileIssue(shown, f"unreadable: {exc.strerror}", "unreadable"))
        return
    out.paths[name] = entry.path
    out.stats.append((name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))


def _follow(
    entry: os.DirEntry[str], name: str, shown: str, course: str, out: CourseScan, *, depth: int
) -> None:
    """A symbolic link, followed: a folder is walked once (a second way to it, a loop
    included, is named, not walked); a file is listed like any other."""
    try:
        st = entry.stat()  # through the link
    except OSError as exc:
        if _may_hold_relevant(name) or is_relevant(name):
            reason = "symbolic link loop" if exc.errno == errno.ELOOP else exc.strerror
            out.unreadable.append(FileIssue(shown, f"symbolic link: {reason}", "link"))
        return
    if stat.S_ISDIR(st.st_mode):
        if depth >= MAX_DEPTH or not _may_hold_relevant(name):
            return
        key = (st.st_dev, st.st_ino)
        target = os.path.realpath(entry.path)
        if _into_the_root(target, out):
            out.unreadable.append(
                FileIssue(shown, "symbolic link into the course root, outside its course", "link")
            )
            return
        if key in out.visited:
            out.unreadable.append(
                FileIssue(shown, "symbolic link to a folder read already (a loop?)", "link")
            )
            return
        out.visited.add(key)
        out.link_targets.add(target)
        _walk(entry.path, name, course, out, depth=depth + 1)
        return
    if is_relevant(name) and stat.S_ISREG(st.st_mode):
        out.paths[name] = entry.path
        out.stats.append((name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))


def _into_the_root(target: str, out: CourseScan) -> bool:
    """A folder link whose target is the root, above it, or in it but outside this course:
    following it would read the root's other courses (or the whole tree) as this one's."""
    root, course = out.root_real, out.course_real
    if not root:
        return False
    inside = target == course or target.startswith(course + os.sep)
    return not inside and (
        root == target or root.startswith(target + os.sep) or target.startswith(root + os.sep)
    )


def _is_link(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_symlink()
    except OSError:
        return False


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _may_hold_relevant(rel: str) -> bool:
    """Only descend into folders whose files can feed a record."""
    return is_relevant(f"{rel}/x.md")


def _read(
    path: str, limit: int, shown: str, out: CourseFiles, *, follow: bool = False
) -> bytes | None:
    nofollow = 0 if follow else getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, os.O_RDONLY | nofollow | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None  # deleted between listing and reading: the next event handles it
    except OSError as exc:
        kind = "link" if exc.errno == errno.ELOOP else "unreadable"
        out.unreadable.append(FileIssue(shown, f"unreadable: {exc.strerror}", kind))
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            out.unreadable.append(FileIssue(shown, "not a regular file", "unreadable"))
            return None
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            out.unreadable.append(FileIssue(shown, f"unreadable: {exc.strerror}", "unreadable"))
            return None
    if len(data) > limit:
        out.unreadable.append(
            FileIssue(shown, f"larger than the size limit of {limit} bytes", "too-large")
        )
        return None
    return data


def count_files(folder: Path) -> int:
    """Files under a folder (links not followed, unreadable parts not counted), up to
    MAX_COUNTED_FILES."""
    count = 0
    for _, _, names in os.walk(folder):
        count += len(names)
        if count >= MAX_COUNTED_FILES:
            return MAX_COUNTED_FILES
    return count


def folder_identity(path: Path) -> tuple[int, int] | None:
    """A folder's (device, inode), or None when it cannot be stat'ed: `mv` keeps it, a copy
    or a remount does not."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
