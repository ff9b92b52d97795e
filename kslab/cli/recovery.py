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
Reading and judging the backend's files is kslab/cli/stack_state.py; finding and stopping the processes a killed
run left is kslab/cli/processes.py.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kslab.cli.processes import is_pulumi_pid, orphaned_processes, stop_processes
from kslab.cli.stack_state import (
    PULUMI_DIR,
    Candidate,
    StackFiles,
    backend_dir,
    best_restore,
    checkpoint_problem,
    lock_verdict,
    parse_lock,
    pending_operations,
    read_bytes,
    sidecar_is_broken,
    write_atomic,
)
from kslab.steps.scratch import sweep

RECOVERY_DIR = ".kslab-recovery"
# Exit codes of the command line: 0 go on, 3 stop (the message says what to do).
EXIT_STOP = 3


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


# ---- recovery -------------------------------------------------------------------------------------------------

@dataclass
class _Run:
    """One recovery of one stack: its files, where what is moved aside goes, and what is reported."""
    files: StackFiles
    aside_dir: str
    report: Report = field(default_factory=Report)

    def aside(self, path: str, what: str) -> None:
        os.makedirs(self.aside_dir, mode=0o700, exist_ok=True)
        dest = os.path.join(self.aside_dir, os.path.relpath(path, self.files.root).replace(os.sep, "__"))
        shutil.move(path, dest)
        self.report.done.append(f"{what}; kept as {dest}")


def recover_files(files: StackFiles, action: str, this_host: str | None = None,
                  is_pulumi: Callable[[int], bool] = is_pulumi_pid, now: float | None = None,
                  project_dir: str | None = None) -> Report:
    """Repair what is provably left by a dead run of this stack; report the rest."""
    this_host = this_host or socket.gethostname()
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    run = _Run(files, os.path.join(files.root, RECOVERY_DIR, f"{files.stack}-{stamp}"))

    # 1. Locks: a live run means hands off everything.
    stale = _stale_locks(run, this_host, is_pulumi, now)
    if stale is None:
        return run.report
    # No live run holds the stack: plugins with no pulumi CLI above them are leftovers (a kill, or a Ctrl-C
    # while the engine was still starting them), and one still running a step must not race the next run.
    if project_dir:
        _stop_leftovers(run.report, project_dir)
    for path, why in stale:
        run.aside(path, f"removed the lock of an interrupted run ({why})")
        if os.path.exists(path + ".attrs"):
            run.aside(path + ".attrs", "removed that lock's metadata file")

    # 2. Metadata sidecars cut off by a kill: without one the backend uses its defaults.
    _repair_sidecars(run)

    # 3. Temporary files of a write that never finished.
    for path in files.leftover_temps():
        run.aside(path, f"moved aside {os.path.basename(path)}, a checkpoint write the interrupted run never finished")

    # 4. The checkpoint itself.
    data = _checkpoint_data(run, action)
    if data is None:
        return run.report

    # 5. Operations the interrupted run started and never finished.
    _check_pending(run.report, files.stack, data, action)
    return run.report


def _stale_locks(run: _Run, this_host: str, is_pulumi: Callable[[int], bool],
                 now: float) -> list[tuple[str, str]] | None:
    """(path, why) of every lock of the stack, all stale; None (and the report stopped) if one is live."""
    stale = []
    for path in run.files.lock_files():
        try:
            age = now - os.path.getmtime(path)
            data = read_bytes(path)
        except OSError:
            continue
        lock = parse_lock(path, data, age)
        is_stale, why = lock_verdict(lock, this_host, is_pulumi)
        if not is_stale:
            stack = run.files.stack
            run.report.stop = (f"the stack '{stack}' is locked: {why}. Wait for that run to end; if it is "
                               f"stuck, stop it (Ctrl-C), or if you know it is gone, remove the lock with: "
                               f"tools/lab.sh cancel {stack}")
            return None
        stale.append((path, why))
    return stale


def _stop_leftovers(report: Report, project_dir: str) -> None:
    left = stop_processes(orphaned_processes(project_dir))
    if left:
        report.done.append(f"stopped {len(left)} process(es) the interrupted run left behind (pids "
                           f"{', '.join(map(str, left))})")


def _repair_sidecars(run: _Run) -> None:
    for path in run.files.sidecars():
        try:
            broken = sidecar_is_broken(read_bytes(path))
        except OSError:
            continue
        if broken:
            run.aside(path, f"moved aside the broken metadata file {os.path.relpath(path, run.files.root)} "
                            f"(a kill while it was rewritten; it made every read of its file fail with 'EOF')")


def _checkpoint_data(run: _Run, action: str) -> bytes | None:
    """The checkpoint's content, restored from the newest good copy if it cannot be read; None when there is
    nothing more to check (no checkpoint file) or recovery stops here (the report says why)."""
    files, report = run.files, run.report
    if not os.path.exists(files.checkpoint):
        return None  # a new stack, or one kept in another form (e.g. compressed): nothing to check here
    data = read_bytes(files.checkpoint)
    problem = checkpoint_problem(data)
    if not problem:
        return data
    best = best_restore(files.restore_candidates())
    if best is None:
        report.stop = (f"the state of stack '{files.stack}' ({files.checkpoint}) cannot be read: {problem}; "
                       f"and no backup of it can be read either (.bak, backups/, history/). If the lab's "
                       f"clusters are disposable: tools/lab.sh forget {files.stack} (keeps the stack file), "
                       "delete the clusters, "
                       f"then make up")
        return None
    _restore(run, best, problem)
    if action == "destroy":
        report.stop = (f"the state was restored from a copy older than the last run: objects created after it "
                       f"are unknown to it, and a destroy now would leave them behind. Run `tools/lab.sh up "
                       f"{files.stack}` first (it refreshes and brings the state up to date), then destroy")
        return None
    return best.data


def _restore(run: _Run, best: Candidate, problem: str) -> None:
    """Put `best` in place of the unreadable checkpoint, which is kept aside."""
    files = run.files
    os.makedirs(run.aside_dir, mode=0o700, exist_ok=True)
    kept = os.path.join(run.aside_dir, os.path.basename(files.checkpoint) + ".unreadable")
    shutil.copy2(files.checkpoint, kept)
    write_atomic(files.checkpoint, best.data)
    if os.path.exists(files.checkpoint + ".attrs"):
        run.aside(files.checkpoint + ".attrs", "moved aside the checkpoint's metadata file (it described the bad copy)")
    saved = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(best.mtime))
    run.report.done.append(f"the state of stack '{files.stack}' could not be read ({problem}); restored it from "
                           f"{os.path.relpath(best.path, files.root)} (saved {saved}); the unreadable file is "
                           f"kept as {kept}. A refresh reads the clusters back before the next up (objects made "
                           f"after that save are adopted, ones deleted since are made again)")
    run.report.restored = True


def _check_pending(report: Report, stack: str, data: bytes, action: str) -> None:
    report.pending = pending_operations(data)
    if report.pending_creates and action == "destroy":
        report.stop = (f"the interrupted run was creating {len(report.pending_creates)} resource(s) it never "
                       f"recorded ({', '.join(u.split('::')[-1] for u in report.pending_creates)}); a destroy now "
                       f"would leave whatever they made behind. Run `tools/lab.sh up {stack}` first (it "
                       f"adopts them), then destroy; or, to forget them and remove what they made yourself: "
                       f"tools/lab.sh refresh {stack} --clear-pending-creates --yes")
    elif report.pending and action not in ("up", "refresh"):
        report.advice.append(f"{len(report.pending)} operation(s) of an interrupted run are pending; "
                             f"`tools/lab.sh up {stack}` clears them")


def refresh_command(stack: str) -> list[str]:
    """What clears the pending operations before an up: a refresh reads every resource back; creates the
    interrupted run never recorded are dropped from the state, and the up after it creates or adopts them."""
    return ["pulumi", "refresh", "--stack", stack, "--yes", "--skip-preview", "--clear-pending-creates"]


def remove_scratch_left() -> list[str]:
    """The private scratch folders (credentials, kubeconfigs) of steps that were killed before they could remove
    them (kslab/steps/scratch.py): this user's only, whose owning process is gone."""
    removed = sweep()
    if removed:
        print(f"kslab: recovered: removed {len(removed)} scratch folder(s) a killed step left (registry credentials "
              f"or kubeconfigs): {', '.join(removed)}", file=sys.stderr)
    return removed


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
        remove_scratch_left()
        return 0  # not a file backend, or nothing in it yet
    try:
        report = recover_files(StackFiles(root, args.project, args.stack), args.action,
                               project_dir=args.project_dir)
    except OSError as exc:  # never a traceback: say what could not be read or written
        print(f"kslab: recovery of stack '{args.stack}' failed: {exc}", file=sys.stderr)
        return EXIT_STOP
    remove_scratch_left()  # after the leftovers of a killed run were stopped
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
