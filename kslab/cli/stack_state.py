"""What a file state backend (`file://DIR`, the layout of Pulumi's diy backend) holds for one stack, read and
judged: its locks, metadata sidecars, leftover temporaries and checkpoints (kslab/cli/recovery.py repairs them).
Only the standard library is used."""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

PULUMI_DIR = ".pulumi"
# A run writes its lock once, at its start; a lock file still empty after this long has no writer left.
UNREADABLE_LOCK_GRACE_SECONDS = 30.0


# ---- pure pieces ---------------------------------------------------------------------------------------------

def backend_dir(url: str | None) -> str | None:
    """The directory of a `file://` backend URL, else None (other backends are not kslab's to repair)."""
    if not url or not url.startswith("file://"):
        return None
    parsed = urlparse(url)
    path = unquote(parsed.netloc + parsed.path)
    return os.path.expanduser(path) if path.startswith("~") else path


def sidecar_is_broken(data: bytes) -> bool:
    """A blob sidecar must be one JSON object; anything else makes every read of its file fail."""
    try:
        return not isinstance(json.loads(data.decode("utf-8")), dict)
    except (UnicodeDecodeError, ValueError):
        return True


def checkpoint_problem(data: bytes) -> str | None:
    """Why a stack checkpoint cannot be used, or None if it can."""
    if not data.strip():
        return f"it is empty ({len(data)} bytes)"
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return f"it is not JSON ({len(data)} bytes, cut off?): {str(exc)[:80]}"
    if not isinstance(doc, dict) or not isinstance(doc.get("checkpoint"), dict):
        return "it is JSON but not a Pulumi checkpoint (no 'checkpoint' object)"
    return None


def pending_operations(data: bytes) -> list[tuple[str, str]]:
    """(type, urn) of every operation the checkpoint records as started and never finished."""
    doc = json.loads(data.decode("utf-8"))
    latest = (doc.get("checkpoint") or {}).get("latest") or {}
    return [(op.get("type", "?"), (op.get("resource") or {}).get("urn", "?"))
            for op in latest.get("pending_operations") or []]


@dataclass
class Lock:
    path: str
    pid: int | None = None
    hostname: str | None = None
    username: str | None = None
    timestamp: str | None = None
    age_seconds: float = 0.0

    @property
    def readable(self) -> bool:
        return self.pid is not None


def parse_lock(path: str, data: bytes, age_seconds: float) -> Lock:
    """A lock file's content as the backend writes it ({"pid", "username", "hostname", "timestamp"})."""
    try:
        doc = json.loads(data.decode("utf-8"))
        return Lock(path, int(doc["pid"]), str(doc["hostname"]), str(doc.get("username", "")),
                    str(doc.get("timestamp", "")), age_seconds)
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        return Lock(path, age_seconds=age_seconds)


def lock_verdict(lock: Lock, this_host: str, is_pulumi_pid: Callable[[int], bool]) -> tuple[bool, str]:
    """(stale, why). Stale only when provable from here: the lock names this host and its pid is no pulumi
    process any more (gone, or reused by another program); or it is unreadable and older than a run needs to
    write it. A lock of another host is never judged."""
    if not lock.readable:
        if lock.age_seconds >= UNREADABLE_LOCK_GRACE_SECONDS:
            return True, f"its file is unreadable and {lock.age_seconds:.0f}s old (its run died while writing it)"
        return False, "its file is still being written"
    if lock.hostname != this_host:
        return False, f"it belongs to pulumi pid {lock.pid} on another host, {lock.hostname}"
    assert lock.pid is not None  # a readable lock names its pid
    if is_pulumi_pid(lock.pid):
        return False, f"pulumi pid {lock.pid} (since {lock.timestamp}) is still running"
    return True, f"pulumi pid {lock.pid} (started {lock.timestamp}) is no longer running"


@dataclass
class Candidate:
    path: str
    mtime: float
    data: bytes


def best_restore(candidates: Iterable[Candidate]) -> Candidate | None:
    """The newest usable copy of the checkpoint among the backend's own: `<stack>.json.bak` (the state before
    the last write), `backups/` and `history/` (each written at the end of an update)."""
    usable = [c for c in candidates if checkpoint_problem(c.data) is None]
    return max(usable, key=lambda c: c.mtime) if usable else None


# ---- the backend on disk --------------------------------------------------------------------------------------

class StackFiles:
    """Where the diy backend keeps one stack of one project under DIR."""

    def __init__(self, root: str, project: str, stack: str):
        self.root, self.project, self.stack = root, project, stack
        self.pulumi = os.path.join(root, PULUMI_DIR)
        self.stacks_dir = os.path.join(self.pulumi, "stacks", project)
        self.checkpoint = os.path.join(self.stacks_dir, f"{stack}.json")
        self.backups_dir = os.path.join(self.pulumi, "backups", project, stack)
        self.history_dir = os.path.join(self.pulumi, "history", project, stack)

    def lock_files(self) -> list[str]:
        found = []
        locks = os.path.join(self.pulumi, "locks")
        for org in listdir(locks):
            d = os.path.join(locks, org, self.project, self.stack)
            # a lock is written as <id>.json.<hex>.tmp and renamed; the backend counts a leftover temp as a lock too
            found += [os.path.join(d, f) for f in listdir(d) if f.endswith(".json") or f.endswith(".tmp")]
        return sorted(found)

    def restore_candidates(self) -> list[Candidate]:
        paths = [self.checkpoint + ".bak"]
        paths += [os.path.join(self.backups_dir, f) for f in listdir(self.backups_dir) if f.endswith(".json")]
        paths += [os.path.join(self.history_dir, f) for f in listdir(self.history_dir)
                  if f.endswith(".checkpoint.json")]
        out = []
        for p in paths:
            try:
                out.append(Candidate(p, os.path.getmtime(p), read_bytes(p)))
            except OSError:
                continue
        return out

    def sidecars(self) -> list[str]:
        """This stack's metadata sidecars only: its checkpoint's (and that file's .bak), its backups, its history
        and its locks. Another stack's (or project's) sidecar may be mid-rewrite by a live run of its own."""
        prefix = f"{self.stack}.json"
        out = [os.path.join(self.stacks_dir, f) for f in listdir(self.stacks_dir)
               if f.startswith(prefix) and f.endswith(".attrs")]
        locks = os.path.join(self.pulumi, "locks")
        dirs = [self.backups_dir, self.history_dir] + [os.path.join(locks, org, self.project, self.stack)
                                                       for org in listdir(locks)]
        for d in dirs:
            out += [os.path.join(d, f) for f in listdir(d) if f.endswith(".attrs")]
        return sorted(out)

    def leftover_temps(self) -> list[str]:
        prefix = f"{self.stack}.json."
        return [os.path.join(self.stacks_dir, f) for f in listdir(self.stacks_dir)
                if f.startswith(prefix) and f.endswith(".tmp")]


def listdir(d: str) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except OSError:
        return []


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.kslab-{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
