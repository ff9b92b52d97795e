"""This user's private kslab state outside any checkout: what must survive runs and must not be readable or
replaceable by another user (the lab registry's push password, the machine-wide locks)."""
from __future__ import annotations

import os
import stat


class UnsafeStateDir(Exception):
    """The state folder is a link or another user's; the message says what to do."""


def private_dir(*parts: str) -> str:
    """A folder of this user's kslab state outside any checkout ($XDG_STATE_HOME/kslab, else ~/.local/state/kslab),
    mode 700, refused when it is a link or another user's (whoever could write there could read or swap what kslab
    keeps in it)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    path = os.path.join(base, "kslab", *parts)
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError as error:
        raise UnsafeStateDir(f"cannot make {path}, where kslab keeps its private state: {error.strerror}. Fix: "
                             "make it writable (or set XDG_STATE_HOME to a folder of your own)") from None
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise UnsafeStateDir(f"{path} is not a folder of this user's; kslab keeps its private state there. Fix: "
                            "remove it (or set XDG_STATE_HOME to a folder of your own)")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path
