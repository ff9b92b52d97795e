"""Processes as /proc shows them: is a pid a pulumi CLI, what a pid names (its identity), the engine plugins a
killed pulumi left behind, and stopping exactly those through pidfds (kslab/cli/recovery.py). What a pid names
(its identity) is kslab/steps/procfs.py's, which the steps use too. Only the standard library is used."""
from __future__ import annotations

import os
import signal
import time

from kslab.cli.stack_state import listdir
from kslab.steps.procfs import process_identity

PLUGIN_PROGRAMS = ("pulumi-resource-", "pulumi-language-", "pulumi-analyzer-")
# The policy pack's and kslab's provider's Python; components.provider is the provider's module before the kslab
# package, so a plugin left by a run killed just before an upgrade is still recognised.
PLUGIN_MODULES = ("pulumi.policy", "kslab.steps.plugin", "components.provider")


def _proc_exe_name(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv0 = fh.read().split(b"\0", 1)[0].decode(errors="replace")
        return os.path.basename(argv0)
    except OSError:
        return None


def is_pulumi_pid(pid: int) -> bool:
    """Is `pid` a pulumi CLI right now (not a recycled pid of some other program)?"""
    return _proc_exe_name(pid) == "pulumi"


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _argv(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return []


def is_plugin_argv(argv: list[str]) -> bool:
    """An engine plugin (by its program's name), or the Python of the policy pack or kslab's step provider
    (`python -m <module>`); never an editor or a grep that merely names one."""
    if not argv:
        return False
    if os.path.basename(argv[0]).startswith(PLUGIN_PROGRAMS):
        return True
    if "python" not in os.path.basename(argv[0]):
        return False
    # python [-u ...] -m <module> | python [-u ...] <script>: the first argument that is not an option decides
    args = argv[1:]
    while args and args[0].startswith("-") and args[0] != "-m":
        args = args[1:]
    if len(args) >= 2 and args[0] == "-m":
        return args[1] in PLUGIN_MODULES
    return bool(args) and os.path.basename(args[0]).startswith(PLUGIN_PROGRAMS)


def _is_plugin(pid: int) -> bool:
    return is_plugin_argv(_argv(pid))


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def orphaned_processes(project_dir: str) -> dict[int, tuple[int, int] | None]:
    """Pulumi plugins started from `project_dir` whose pulumi CLI is gone (their ancestry reaches no `pulumi`),
    plus everything of this user they started, each with its identity as the scan saw it. A killed CLI leaves
    them behind: each plugin runs in its own process group."""
    project_dir = os.path.realpath(project_dir)
    roots = []
    for entry in listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        pid = int(entry)
        try:
            cwd = os.path.realpath(os.readlink(f"/proc/{pid}/cwd"))
            if cwd != project_dir and not cwd.startswith(project_dir + os.sep):
                continue
        except OSError:
            continue
        # another test stack's scratch project under .kslab/projects is not this one's
        if cwd.startswith(os.path.join(project_dir, ".kslab", "projects") + os.sep):
            continue
        if _owner(pid) != os.getuid() or not _is_plugin(pid):
            continue
        # Up to pid 1 included: in a container whose entrypoint is `tools/lab.sh up X`, the live pulumi is pid 1.
        ancestor, seen = _ppid(pid), 0
        while ancestor and seen < 64 and not is_pulumi_pid(ancestor):
            ancestor, seen = _ppid(ancestor), seen + 1
        if not (ancestor and is_pulumi_pid(ancestor)):
            roots.append(pid)
    # and their descendants of this user (a step's own commands)
    children: dict[int, list[int]] = {}
    for entry in listdir("/proc"):
        if entry.isdigit():
            parent = _ppid(int(entry))
            if parent:
                children.setdefault(parent, []).append(int(entry))
    out: dict[int, tuple[int, int] | None] = {}
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in out and _owner(pid) == os.getuid():
            out[pid] = process_identity(pid)
            todo += children.get(pid, [])
    return dict(sorted(out.items()))


def orphaned_plugins(project_dir: str) -> list[int]:
    return list(orphaned_processes(project_dir))


def stop_processes(expected: dict[int, tuple[int, int] | None], grace: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL what is left, each through a pidfd opened first and then checked to be the very
    process the scan saw (this user's, same start time): a pid reused meanwhile is never hit. The pids stopped."""
    fds = {}
    for pid, identity in expected.items():
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            continue  # already gone
        # The pidfd pins the process it was opened on: if /proc/<pid> still shows the scanned identity now,
        # the fd is that process; if not, the pid was reused and is left alone.
        if identity is None or process_identity(pid) != identity or identity[0] != os.getuid():
            os.close(fd)
            continue
        fds[pid] = fd
    try:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for fd in fds.values():
                try:
                    signal.pidfd_send_signal(fd, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") and _ppid(p) for p in fds):
                time.sleep(0.1)
    finally:
        for fd in fds.values():
            os.close(fd)
    return sorted(fds)
