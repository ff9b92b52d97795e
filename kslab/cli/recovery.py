"""Bring a lab's file state backend back after an interrupted `pulumi up`/`destroy` (tools/lab.sh runs this
before every preview, up, destroy and refresh).

What a killed run can leave in a file backend (`file://DIR`, the layout of Pulumi's diy backend):
- its lock, `.pulumi/locks/<org>/<project>/<stack>/<id>.json` with the pid, host and time of the run;
- a metadata sidecar `<file>.attrs` that is empty: the backend's blob store writes each file through a temporary
  file and a rename, but rewrites the sidecar in place (create/truncate, then write) just before that rename, so a
  kill in between leaves 0 bytes, and every later read of `<file>` fails with `EOF`
  ("failed to load checkpoint: EOF"), though `<file>` itself is whole;
- a temporary `<file>.<hex>.tmp` that never got renamed;
- pending operations in the checkpoint (`pending_operations`);
- a checkpoint that cannot be read at all (what a disk or a hand can do to `<stack>.json`).

What is safe is done here, each with a message; what is not is printed as the exact command. Nothing is deleted:
whatever is moved aside goes to `DIR/.kslab-recovery/<stack>-<time>/`. Only the standard library is used.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote, urlparse

PULUMI_DIR = ".pulumi"
RECOVERY_DIR = ".kslab-recovery"
# A run writes its lock once, at its start; a lock file still empty after this long has no writer left.
UNREADABLE_LOCK_GRACE_SECONDS = 30.0
# Exit codes of the command line: 0 go on, 3 stop (the message says what to do).
EXIT_STOP = 3


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


@dataclass
class Report:
    """What recovery found and did; `stop` set means the run must not go on (the message says why)."""
    done: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    stop: str | None = None
    pending: list[tuple[str, str]] = field(default_factory=list)
    restored: bool = False  # the checkpoint was restored from an older copy: refresh before going on

    @property
    def pending_creates(self) -> list[str]:
        return [urn for op, urn in self.pending if op == "creating"]


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
        for org in _listdir(locks):
            d = os.path.join(locks, org, self.project, self.stack)
            # a lock is written as <id>.json.<hex>.tmp and renamed; the backend counts a leftover temp as a lock too
            found += [os.path.join(d, f) for f in _listdir(d) if f.endswith(".json") or f.endswith(".tmp")]
        return sorted(found)

    def restore_candidates(self) -> list[Candidate]:
        paths = [self.checkpoint + ".bak"]
        paths += [os.path.join(self.backups_dir, f) for f in _listdir(self.backups_dir) if f.endswith(".json")]
        paths += [os.path.join(self.history_dir, f) for f in _listdir(self.history_dir)
                  if f.endswith(".checkpoint.json")]
        out = []
        for p in paths:
            try:
                out.append(Candidate(p, os.path.getmtime(p), _read(p)))
            except OSError:
                continue
        return out

    def sidecars(self) -> list[str]:
        """This stack's metadata sidecars only: its checkpoint's (and that file's .bak), its backups, its history
        and its locks. Another stack's (or project's) sidecar may be mid-rewrite by a live run of its own."""
        prefix = f"{self.stack}.json"
        out = [os.path.join(self.stacks_dir, f) for f in _listdir(self.stacks_dir)
               if f.startswith(prefix) and f.endswith(".attrs")]
        locks = os.path.join(self.pulumi, "locks")
        dirs = [self.backups_dir, self.history_dir] + [os.path.join(locks, org, self.project, self.stack)
                                                       for org in _listdir(locks)]
        for d in dirs:
            out += [os.path.join(d, f) for f in _listdir(d) if f.endswith(".attrs")]
        return sorted(out)

    def leftover_temps(self) -> list[str]:
        prefix = f"{self.stack}.json."
        return [os.path.join(self.stacks_dir, f) for f in _listdir(self.stacks_dir)
                if f.startswith(prefix) and f.endswith(".tmp")]


def _listdir(d: str) -> list[str]:
    try:
        return sorted(os.listdir(d))
    except OSError:
        return []


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.kslab-{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ---- processes ------------------------------------------------------------------------------------------------

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


PLUGIN_PROGRAMS = ("pulumi-resource-", "pulumi-language-", "pulumi-analyzer-")
PLUGIN_MODULES = ("pulumi.policy", "kslab.steps.plugin")  # the policy pack's and kslab's provider's Python


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


def process_identity(pid: int) -> tuple[int, int] | None:
    """(owner uid, start time in clock ticks since boot): what a pid names, which a reused pid cannot repeat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            start = int(fh.read().rsplit(")", 1)[1].split()[19])
        return os.stat(f"/proc/{pid}").st_uid, start
    except (OSError, ValueError, IndexError):
        return None


def orphaned_processes(project_dir: str) -> dict[int, tuple[int, int] | None]:
    """Pulumi plugins started from `project_dir` whose pulumi CLI is gone (their ancestry reaches no `pulumi`),
    plus everything of this user they started, each with its identity as the scan saw it. A killed CLI leaves
    them behind: each plugin runs in its own process group."""
    project_dir = os.path.realpath(project_dir)
    roots = []
    for entry in _listdir("/proc"):
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
    for entry in _listdir("/proc"):
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


# ---- recovery -------------------------------------------------------------------------------------------------

def recover_files(files: StackFiles, action: str, this_host: str | None = None,
                  is_pulumi: Callable[[int], bool] = is_pulumi_pid, now: float | None = None,
                  project_dir: str | None = None) -> Report:
    """Repair what is provably left by a dead run of this stack; report the rest."""
    report = Report()
    this_host = this_host or socket.gethostname()
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    aside_dir = os.path.join(files.root, RECOVERY_DIR, f"{files.stack}-{stamp}")

    def aside(path: str, what: str) -> None:
        os.makedirs(aside_dir, mode=0o700, exist_ok=True)
        dest = os.path.join(aside_dir, os.path.relpath(path, files.root).replace(os.sep, "__"))
        shutil.move(path, dest)
        report.done.append(f"{what}; kept as {dest}")

    # 1. Locks: a live run means hands off everything.
    stale = []
    for path in files.lock_files():
        try:
            age = now - os.path.getmtime(path)
            data = _read(path)
        except OSError:
            continue
        lock = parse_lock(path, data, age)
        is_stale, why = lock_verdict(lock, this_host, is_pulumi)
        if not is_stale:
            report.stop = (f"the stack '{files.stack}' is locked: {why}. Wait for that run to end; if it is "
                           f"stuck, stop it (Ctrl-C), or if you know it is gone, remove the lock with: "
                           f"tools/lab.sh cancel {files.stack}")
            return report
        stale.append((path, why))
    # No live run holds the stack: plugins with no pulumi CLI above them are leftovers (a kill, or a Ctrl-C
    # while the engine was still starting them), and one still running a step must not race the next run.
    if project_dir:
        left = stop_processes(orphaned_processes(project_dir))
        if left:
            report.done.append(f"stopped {len(left)} process(es) the interrupted run left behind (pids "
                               f"{', '.join(map(str, left))})")
    for path, why in stale:
        aside(path, f"removed the lock of an interrupted run ({why})")
        if os.path.exists(path + ".attrs"):
            aside(path + ".attrs", "removed that lock's metadata file")

    # 2. Metadata sidecars cut off by a kill: without one the backend uses its defaults.
    for path in files.sidecars():
        try:
            broken = sidecar_is_broken(_read(path))
        except OSError:
            continue
        if broken:
            aside(path, f"moved aside the broken metadata file {os.path.relpath(path, files.root)} "
                        f"(a kill while it was rewritten; it made every read of its file fail with 'EOF')")

    # 3. Temporary files of a write that never finished.
    for path in files.leftover_temps():
        aside(path, f"moved aside {os.path.basename(path)}, a checkpoint write the interrupted run never finished")

    # 4. The checkpoint itself.
    if not os.path.exists(files.checkpoint):
        return report  # a new stack, or one kept in another form (e.g. compressed): nothing to check here
    data = _read(files.checkpoint)
    problem = checkpoint_problem(data)
    if problem:
        best = best_restore(files.restore_candidates())
        if best is None:
            report.stop = (f"the state of stack '{files.stack}' ({files.checkpoint}) cannot be read: {problem}; "
                           f"and no backup of it can be read either (.bak, backups/, history/). If the lab's "
                           f"clusters are disposable: tools/lab.sh forget {files.stack} (keeps the stack file), "
                           "delete the clusters, "
                           f"then make up")
            return report
        os.makedirs(aside_dir, mode=0o700, exist_ok=True)
        kept = os.path.join(aside_dir, os.path.basename(files.checkpoint) + ".unreadable")
        shutil.copy2(files.checkpoint, kept)
        _write_atomic(files.checkpoint, best.data)
        if os.path.exists(files.checkpoint + ".attrs"):
            aside(files.checkpoint + ".attrs", "moved aside the checkpoint's metadata file (it described the bad copy)")
        saved = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(best.mtime))
        report.done.append(f"the state of stack '{files.stack}' could not be read ({problem}); restored it from "
                           f"{os.path.relpath(best.path, files.root)} (saved {saved}); the unreadable file is "
                           f"kept as {kept}. A refresh reads the clusters back before the next up (objects made after "
                           f"that save are adopted, ones deleted since are made again)")
        data = best.data
        report.restored = True
        if action == "destroy":
            report.stop = (f"the state was restored from a copy older than the last run: objects created after it "
                           f"are unknown to it, and a destroy now would leave them behind. Run `tools/lab.sh up "
                           f"{files.stack}` first (it refreshes and brings the state up to date), then destroy")
            return report

    # 5. Operations the interrupted run started and never finished.
    report.pending = pending_operations(data)
    if report.pending_creates and action == "destroy":
        report.stop = (f"the interrupted run was creating {len(report.pending_creates)} resource(s) it never "
                       f"recorded ({', '.join(u.split('::')[-1] for u in report.pending_creates)}); a destroy now "
                       f"would leave whatever they made behind. Run `tools/lab.sh up {files.stack}` first (it "
                       f"adopts them), then destroy; or, to forget them and remove what they made yourself: "
                       f"tools/lab.sh refresh {files.stack} --clear-pending-creates --yes")
    elif report.pending and action not in ("up", "refresh"):
        report.advice.append(f"{len(report.pending)} operation(s) of an interrupted run are pending; "
                             f"`tools/lab.sh up {files.stack}` clears them")
    return report


def refresh_command(stack: str) -> list[str]:
    """What clears the pending operations before an up: a refresh reads every resource back; creates the
    interrupted run never recorded are dropped from the state, and the up after it creates or adopts them."""
    return ["pulumi", "refresh", "--stack", stack, "--yes", "--skip-preview", "--clear-pending-creates"]


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C during the refresh or while stopping leftovers: no traceback
        print("kslab: recovery interrupted; run the same command again to finish it", file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kslab.cli.recovery",
                                     description="repair a lab's file state backend after an interrupted run")
    parser.add_argument("action")
    parser.add_argument("stack")
    parser.add_argument("--project", default="kslab")
    parser.add_argument("--backend", default=os.environ.get("PULUMI_BACKEND_URL"))
    parser.add_argument("--project-dir", default=os.getcwd(), help="where pulumi runs (its plugins' folder)")
    args = parser.parse_args(argv)
    root = backend_dir(args.backend)
    if root is None or not os.path.isdir(os.path.join(root, PULUMI_DIR)):
        return 0  # not a file backend, or nothing in it yet
    try:
        report = recover_files(StackFiles(root, args.project, args.stack), args.action,
                               project_dir=args.project_dir)
    except OSError as exc:  # never a traceback: say what could not be read or written
        print(f"kslab: recovery of stack '{args.stack}' failed: {exc}", file=sys.stderr)
        return EXIT_STOP
    for line in report.done:
        print(f"kslab: recovered: {line}", file=sys.stderr)
    for line in report.advice:
        print(f"kslab: note: {line}", file=sys.stderr)
    if report.stop:
        print(f"kslab: {report.stop}", file=sys.stderr)
        return EXIT_STOP
    if (report.pending or report.restored) and args.action == "up":
        names = ", ".join(f"{urn.split('::')[-1]} ({op})" for op, urn in report.pending)
        why = (f"an interrupted run left {len(report.pending)} pending operation(s): {names}" if report.pending
               else "the state was restored from an older copy")
        print(f"kslab: {why}; refreshing first: {' '.join(refresh_command(args.stack))}", file=sys.stderr)
        sys.stderr.flush()
        done = subprocess.run(refresh_command(args.stack), cwd=args.project_dir)
        if done.returncode != 0:
            print(f"kslab: the refresh failed (exit {done.returncode}); fix what it names, then run it again: "
                  f"tools/lab.sh refresh {args.stack} --clear-pending-creates --yes", file=sys.stderr)
            return EXIT_STOP
    return 0


if __name__ == "__main__":
    sys.exit(main())
