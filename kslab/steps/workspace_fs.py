"""The dev workspace folder on disk: written and removed without following a link anywhere inside it, only in
a folder of the user running kslab that no one else may write, and only kslab's own files.

Every path below the folder is opened component by component relative to its parent's descriptor with
O_NOFOLLOW (openat-style), so a link swapped in for `serving-certs` or a file cannot send a key or a delete
elsewhere. The marker records which files kslab wrote and whether it made the folder: `dev-down` removes those
files and, only if kslab made it, the folder.
"""
from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from kslab.model import contract

MARKER = contract.WORKSPACE_MARKER
TEMPORARY_SUFFIX = ".kslab-"  # <file>.kslab-<pid>: a file being written by that step process
DIR_MODE = 0o700
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class WorkspaceError(Exception):
    """What is wrong with the folder, and what to do."""


@dataclass(frozen=True)
class Record:
    identity: str  # the workspace the folder belongs to (devworkspace.marker)
    created: bool  # kslab made the folder, so it may remove it
    files: tuple[str, ...]  # every file kslab wrote, relative to the folder

    def text(self) -> str:
        return self.identity + json.dumps({"created": self.created, "files": sorted(self.files)}) + "\n"

    @classmethod
    def parse(cls, text: str, default_files: tuple[str, ...]) -> Record:
        """A marker as kslab writes it; one written before markers recorded files (the identity line alone)
        counts as a folder kslab made, with the workspace's usual files."""
        identity, _, rest = text.partition("\n")
        try:
            doc = json.loads(rest) if rest.strip() else {}
        except ValueError:
            doc = {}
        listed = doc.get("files")
        files: list[object] = list(listed) if isinstance(listed, list) else list(default_files)
        return cls(identity + "\n", bool(doc.get("created", True)),
                   tuple(f for f in files if isinstance(f, str) and _safe_relative(f)))


def _safe_relative(rel: str) -> bool:
    parts = rel.split("/")
    return bool(rel) and not rel.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def check_owner(directory: str) -> bool:
    """Whether the folder exists; a WorkspaceError if it is a link, not a folder, not the user's, or writable
    by others."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise WorkspaceError(f"workspace folder {directory} is a link or a file. Fix: choose another dir")
    if info.st_uid != os.geteuid():
        raise WorkspaceError(f"workspace folder {directory} belongs to uid {info.st_uid}, not to you (uid "
                             f"{os.geteuid()}): its owner could swap the files you run. Fix: choose a dir of your own")
    if info.st_mode & 0o022:
        raise WorkspaceError(f"workspace folder {directory} can be written by others (mode "
                             f"{stat.S_IMODE(info.st_mode):o}). Fix: chmod go-w it, or choose another dir")
    return True


@contextmanager
def _open_dir(directory: str) -> Iterator[int]:
    try:
        fd = os.open(directory, _DIR_FLAGS)
    except OSError as error:
        raise WorkspaceError(f"cannot open workspace folder {directory} without following a link: "
                             f"{error.strerror}") from None
    try:
        yield fd
    finally:
        os.close(fd)


@contextmanager
def _parent(root_fd: int, rel: str, create: bool) -> Iterator[tuple[int | None, str]]:
    """The descriptor of `rel`'s folder, walked one component at a time with O_NOFOLLOW (made if `create`), and
    the file's own name; None when a folder on the way is absent."""
    *folders, name = rel.split("/")
    opened: list[int] = []
    fd = root_fd
    try:
        for folder in folders:
            if create:
                try:
                    os.mkdir(folder, DIR_MODE, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                fd = os.open(folder, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                yield None, name
                return
            except OSError as error:  # ELOOP/ENOTDIR: a link or a file where a folder should be
                raise WorkspaceError(f"{rel}: {folder} in the workspace is not a folder of its own "
                                     f"({error.strerror}); kslab will not follow it") from None
            opened.append(fd)
        yield fd, name
    finally:
        for descriptor in reversed(opened):
            os.close(descriptor)


def _check_opened(fd: int, directory: str) -> None:
    """The folder as opened (not as a path looked up again): the user's, writable by no one else."""
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise WorkspaceError(f"workspace folder {directory} changed under kslab (owner or mode); nothing was written")


def read_record(directory: str, default_files: tuple[str, ...]) -> Record | None:
    """The folder's marker, read without following a link; None without one."""
    with _open_dir(directory) as root:
        try:
            fd = os.open(MARKER, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=root)
        except FileNotFoundError:
            return None
        except OSError:
            raise WorkspaceError(f"the marker {MARKER} in {directory} is not a plain file") from None
        with os.fdopen(fd) as fh:
            return Record.parse(fh.read(), default_files)


def _remove_stale_temporaries(parent_fd: int, name: str) -> None:
    """Temporary copies of `name` whose writer is gone (a step killed between its O_EXCL open and the rename):
    they may hold a secret, and would keep the folder from being removed."""
    for entry in os.listdir(parent_fd):
        pid_text = entry[len(name) + len(TEMPORARY_SUFFIX):] if entry.startswith(name + TEMPORARY_SUFFIX) else ""
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
            continue  # its writer still runs
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # a live process of another user
        try:
            os.unlink(entry, dir_fd=parent_fd)
        except FileNotFoundError:
            pass


def write(directory: str, files: dict[str, tuple[str, int]], identity: str, default_files: tuple[str, ...]) -> None:
    """Write every file whole at its mode (a temporary made with O_EXCL|O_NOFOLLOW, then renamed over the old
    one), then the marker recording them. The folder is checked (check_owner) and made if absent."""
    existed = check_owner(directory)
    previous = read_record(directory, default_files) if existed else None
    if not existed:
        os.makedirs(directory, mode=DIR_MODE)
    created = previous.created if previous is not None else not existed
    if created:
        os.chmod(directory, DIR_MODE)
    record = Record(identity, created, tuple(sorted(set(files) | set(previous.files if previous else ()))))
    with _open_dir(directory) as root:
        _check_opened(root, directory)
        # The marker first, naming every file about to be written: a write killed half way leaves files that the
        # next up accepts and dev-down removes, never orphaned secrets.
        for rel, (content, mode) in {MARKER: (record.text(), 0o644), **files}.items():
            with _parent(root, rel, create=True) as (parent, name):
                assert parent is not None
                _remove_stale_temporaries(parent, name)
                temporary = f"{name}{TEMPORARY_SUFFIX}{os.getpid()}"
                fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode, dir_fd=parent)
                with os.fdopen(fd, "w") as fh:
                    fh.write(content)
                os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)


def remove(directory: str, identity: str, default_files: tuple[str, ...], built: tuple[str, ...] = ()) -> None:
    """Remove the files the marker records (and `built`, what run.sh builds), then each folder of theirs that is
    empty, and the workspace folder itself only if kslab made it. Nothing in a folder of another workspace, and
    nothing through a link."""
    try:
        if not check_owner(directory):
            return
    except WorkspaceError:
        return  # a link or a folder that is not the user's: nothing of kslab's to remove there
    record = read_record(directory, default_files)
    if record is None or record.identity != identity:
        return  # no marker, or the folder now belongs to another workspace
    with _open_dir(directory) as root:
        folders: set[str] = set()
        for rel in (*record.files, *built, MARKER):
            with _parent(root, rel, create=False) as (parent, name):
                if parent is None:
                    continue
                _remove_stale_temporaries(parent, name)
                try:
                    os.unlink(name, dir_fd=parent)
                except (FileNotFoundError, IsADirectoryError, PermissionError):
                    pass
            folder = rel.rpartition("/")[0]
            while folder:
                folders.add(folder)
                folder = folder.rpartition("/")[0]
        for folder in sorted(folders, key=lambda f: f.count("/"), reverse=True):
            try:
                os.rmdir(folder, dir_fd=root)  # only if empty: anything of the user's stays
            except OSError:
                pass
    if record.created:
        try:
            os.rmdir(directory)
        except OSError:
            pass
