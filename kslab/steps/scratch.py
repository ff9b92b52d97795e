"""Private scratch folders of a step: the registry credentials crane reads, kind's scratch kubeconfig, image
tarballs. Nothing of them may outlive the step, however it ends.

- `private_dir(purpose)`: a folder of mode 700 in the temporary directory, named
  `kslab-<purpose>.<pid>-<start time>.<random>` after the process that owns it (its pid and its start time, which a
  reused pid cannot repeat). It is removed when the `with` block ends, and on SIGTERM (what recovery sends first) or
  SIGINT through a handler the step process installs on first use, which then ends the process as the signal would.
- `sweep()`: what a process killed outright (SIGKILL, a crash of the machine) left: every such folder of this
  user whose owner is gone. kslab/cli/recovery.py runs it before each run; a symlink or another user's folder
  with that name is never touched, and removal never follows a link inside it.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator

from kslab.steps.procfs import process_identity

_NAME = re.compile(r"^kslab-[a-z]+\.(\d+)-(\d+)\.[A-Za-z0-9_]+$")
_live: set[str] = set()  # this process's folders, removed on a signal
_previous: dict[int, object] = {}


def _remove(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)  # fd-based on Linux: never follows a link inside (rmtree docs)


def _on_signal(signum: int, frame) -> None:
    for path in list(_live):
        _remove(path)
        _live.discard(path)
    previous = _previous.get(signum)
    if callable(previous):
        previous(signum, frame)  # e.g. Python's own SIGINT handler: KeyboardInterrupt
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # end as the signal would have ended us (its exit status)


def _install() -> None:
    """Once per process, from the main thread only (Python delivers signals there; a thread cannot install)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        current = signal.getsignal(signum)
        if current is not _on_signal and current is not signal.SIG_IGN:
            _previous[signum] = current
            signal.signal(signum, _on_signal)


def _identity() -> str:
    me = process_identity(os.getpid())
    return f"{os.getpid()}-{me[1] if me else 0}"


@contextlib.contextmanager
def private_dir(purpose: str) -> Iterator[str]:
    """A folder only this user can enter, gone when the block ends or the process is stopped by a signal."""
    if not re.fullmatch(r"[a-z]+", purpose):
        raise ValueError(f"scratch purpose {purpose!r}: lower-case letters only")
    _install()
    path = tempfile.mkdtemp(prefix=f"kslab-{purpose}.{_identity()}.")  # mode 700 (tempfile.mkdtemp)
    _live.add(path)
    try:
        yield path
    finally:
        _live.discard(path)
        _remove(path)


def _owner_gone(pid: int, start: int) -> bool:
    identity = process_identity(pid)  # a start time of 0: the owner could not read its own (then the pid alone)
    return identity is None or (start != 0 and identity[1] != start)


def sweep(directories: tuple[str, ...] | None = None) -> list[str]:
    """Remove every scratch folder of this user whose owning process is gone; the folders removed."""
    if directories is None:
        directories = tuple(dict.fromkeys((tempfile.gettempdir(), "/tmp")))
    removed = []
    for directory in directories:
        try:
            names = os.listdir(directory)
        except OSError:
            continue
        for name in names:
            match = _NAME.match(name)
            if not match:
                continue
            path = os.path.join(directory, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue  # a symlink, a file, another user's: not ours to remove
            if _owner_gone(int(match.group(1)), int(match.group(2))):
                _remove(path)
                if not os.path.lexists(path):
                    removed.append(path)
    return removed
