"""One command per stack at a time: tools/lab.sh holds this lock for the whole of recovery plus the Pulumi run.

    python -m kslab.cli.stack_lock hold <lock file> <pid> <what>

takes an exclusive `flock` on the lock file, prints `locked` and holds it until process <pid> ends (tools/lab.sh,
which then becomes `pulumi` by exec: the same pid). The holder is a process of its own, not an ancestor of
`pulumi`, so a plugin left running by a killed run never inherits the lock and never keeps a lab busy. It ignores
Ctrl-C (the run it guards handles that) and watches <pid> through a pidfd, so the lock goes the moment the run
ends, however it ends. A second command for the stack is told at once who holds it (exit status 3).
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import sys
import time

BUSY_EXIT = 3
# A holder whose run just ended lets go within milliseconds; a new command waits this long for that.
RELEASE_WAIT_SECONDS = 5.0
PID_MAX_LIMIT = 2**22  # Linux's ceiling of pid_max (include/linux/threads.h)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def acquire(path: str, pid: int, what: str, wait: float = RELEASE_WAIT_SECONDS) -> int | str:
    """The locked descriptor, or who holds the lock (a message) when a live run does."""
    try:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as error:
        return f"cannot open the stack's lock file {path}: {error.strerror}. Fix: remove it (it must be a plain file)"
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder = _holder(fd)
            holder_pid = _pid_of(holder)
            if holder_pid is None and time.monotonic() > deadline:
                os.close(fd)
                return (f"stack is busy, and its lock file {path} is broken (it names no process: pid "
                        f"{str(holder.get('pid'))[:40]!r}). Wait for the command that holds it to end (`fuser {path}` "
                        "names it), then run your command again")
            if (holder_pid is not None and _alive(holder_pid)) or time.monotonic() > deadline:
                os.close(fd)
                return (f"stack is busy: {holder.get('what') or 'another command'} (pid {holder_pid}) runs on "
                        "it. Wait for it to end, then run your command again")
            time.sleep(0.05)  # its run has ended (or has not yet written its pid): its holder is letting go
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"pid": pid, "what": what}).encode(), 0)
    return fd


def _holder(fd: int) -> dict:
    try:
        doc = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return doc if isinstance(doc, dict) else {}
    except ValueError:
        return {}


def _pid_of(holder: dict) -> int | None:
    """The holder's pid, or None when the lock file is broken (no pid, or not a process number)."""
    pid = holder.get("pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid <= PID_MAX_LIMIT else None


def watch(pid: int) -> int | None:
    """A pidfd of process `pid`, opened before the lock is taken so a reused pid can never hold it; None where
    the kernel has no pidfds (then polled)."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError) as error:
        if isinstance(error, ProcessLookupError):
            raise
        return None


def wait_for_exit(pid: int, pidfd: int | None) -> None:
    """Until process `pid` ends."""
    if pidfd is None:
        while _alive(pid):
            time.sleep(0.2)
        return
    try:
        select.select([pidfd], [], [])
    finally:
        os.close(pidfd)


def hold(path: str, pid: int, what: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        pidfd = watch(pid)
    except ProcessLookupError:
        return 0  # the command is gone already: nothing to guard
    locked = acquire(path, pid, what)
    if isinstance(locked, str):
        print(f"kslab: {locked}", file=sys.stderr)
        return BUSY_EXIT
    print("locked", flush=True)
    os.close(1)  # the command reads one line; nothing else comes
    wait_for_exit(pid, pidfd)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 4 or argv[0] != "hold" or not argv[2].isdigit():
        print("usage: python -m kslab.cli.stack_lock hold <lock file> <pid> <what>", file=sys.stderr)
        return 2
    return hold(argv[1], int(argv[2]), argv[3])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
