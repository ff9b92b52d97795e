"""Crash campaign: kill `pulumi up`/`destroy` of the live host-member lab at chosen moments, recover through
`tools/lab.sh` alone, and check the lab. `python -m tests.support.crash --trials N` (make crash-campaign).

One set of API servers and one fixture serve every trial. Trials alternate: an up killed on an empty lab
(recovered by `tools/lab.sh up`, then checked converged), then a destroy killed on that lab (recovered by
`tools/lab.sh destroy`, then checked empty), so each trial starts where the last one ended.

Signals, as they reach a run in a terminal: `int` (Ctrl-C: SIGINT to the CLI's process group, Pulumi's
graceful cancel), `int2` (Ctrl-C twice: a forced cancel), `kill` (SIGKILL of the CLI's process group, as a
closed terminal or the OOM killer: the plugins run in their own process groups and live on, orphaned).
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kslab.cli.stack_state import StackFiles, checkpoint_problem, pending_operations, sidecar_is_broken
from tests.support.live import LiveLab
from tests.support.mock_run import ROOT

STACK = "live-host-member"
UP_PHASES = ("start", "objects", "install-wait", "join", "random-up")
DESTROY_PHASES = ("unjoin", "random-destroy")
SIGNALS = ("int", "int2", "kill")


@dataclass
class Trial:
    n: int
    action: str
    phase: str
    sig: str
    killed_at: float = 0.0          # seconds after the run started
    landed: str = ""                # what the API showed when the signal went out
    left: list[str] = field(default_factory=list)  # what the kill left in the backend
    recovered: bool = False
    recovery_seconds: float = 0.0
    attempts: int = 0
    problems: list[str] = field(default_factory=list)


def lab_sh_tree(lab: LiveLab) -> Path:
    """The project copy with tools/lab.sh beside it, so `tools/lab.sh` runs on the lab's backend and passphrase
    (its environment) exactly as a user runs it. Its folder for the stack gets the stack file the lab made
    (with its encryption salt)."""
    tree = Path(lab.project.dir)
    (tree / "tools").mkdir(exist_ok=True)
    shutil.copy(os.path.join(ROOT, "tools", "lab.sh"), tree / "tools" / "lab.sh")
    work = tree / ".kslab" / "projects" / lab.stack / "stacks"
    work.mkdir(parents=True, exist_ok=True)
    # lab.sh runs every stack in its own folder (the live ones with the live policy config); the stack file the lab
    # made there is the lab's record of its salt, which lab.sh adopts into .kslab/stacks on its first command
    os.replace(tree / "stacks" / f"Pulumi.{lab.stack}.yaml", work / f"Pulumi.{lab.stack}.yaml")
    return tree


def lab_sh(lab: LiveLab, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    tree = Path(lab.project.dir)
    return subprocess.run([str(tree / "tools" / "lab.sh"), *args], cwd=tree, env=lab.project.env,
                          capture_output=True, text=True, timeout=timeout)


def start_run(lab: LiveLab, action: str) -> subprocess.Popen:
    """The run to kill: `tools/lab.sh <action>`, which execs pulumi (same pid, its own session)."""
    tree = Path(lab.project.dir)
    extra = ["--yes", "--skip-preview"]
    return subprocess.Popen([str(tree / "tools" / "lab.sh"), action, lab.stack, *extra], cwd=tree,
                            env=lab.project.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _safe(fn, default=None):
    try:
        return fn()
    except Exception:  # the API server is busy or the object is mid-change: ask again at the next poll
        return default


def api_moment(lab: LiveLab) -> str:
    """What the lab's objects show right now, coarsely."""
    host_cc = _safe(lambda: lab.cc("host"))
    joined = _safe(lambda: lab.joined("host"), [])
    crd = _safe(lambda: "crd/clusterconfigurations" in lab.lab_objects("host"), False)
    if joined:
        return "cluster-deleting" if joined[0]["metadata"].get("deletionTimestamp") else "cluster"
    if host_cc:
        return "cc"
    return "crd" if crd else "nothing"


def _run_holds_lock(lab: LiveLab) -> bool:
    """The engine has started the run: its lock is on disk (before that, the signal would hit tools/lab.sh)."""
    return bool(_safe(lambda: StackFiles(lab.project.state, "kslab", STACK).lock_files(), []))


def _reached(lab: LiveLab, phase: str, elapsed: float, at: float) -> bool:
    if phase in ("start", "random-up", "random-destroy"):
        return elapsed >= at and _run_holds_lock(lab)
    if phase == "objects":
        return _safe(lambda: "crd/clusterconfigurations" in lab.lab_objects("host"), False)
    if phase == "install-wait":
        return _safe(lambda: lab.cc("host") is not None, False)
    if phase == "join":
        return bool(_safe(lambda: lab.joined("host"), []))
    if phase == "unjoin":  # the unjoin step has deleted the Cluster (or is waiting on its finalizer)
        joined = _safe(lambda: lab.joined("host"), None)
        return joined == [] or bool(joined and joined[0]["metadata"].get("deletionTimestamp"))
    raise ValueError(phase)


def send(proc: subprocess.Popen, sig: str) -> None:
    try:
        if sig == "kill":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.killpg(proc.pid, signal.SIGINT)
            if sig == "int2":
                time.sleep(0.5)
                os.killpg(proc.pid, signal.SIGINT)
    except ProcessLookupError:
        pass


def backend_leftovers(lab: LiveLab) -> list[str]:
    """What a run left in the backend that the next one must cope with."""
    files = StackFiles(lab.project.state, "kslab", lab.stack)
    left = [f"lock:{os.path.basename(p)}" for p in files.lock_files()]
    for p in files.sidecars():
        if sidecar_is_broken(Path(p).read_bytes()):
            left.append(f"broken-sidecar:{os.path.relpath(p, files.pulumi)}")
    left += [f"temp:{os.path.basename(p)}" for p in files.leftover_temps()]
    if os.path.exists(files.checkpoint):
        data = Path(files.checkpoint).read_bytes()
        if checkpoint_problem(data):
            left.append("unreadable-checkpoint")
        else:
            left += [f"pending-{op}" for op, _ in pending_operations(data)]
    return left


def project_processes(lab: LiveLab) -> list[str]:
    """Processes still running from the lab's project tree (plugins, language hosts, steps)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if lab.project.dir in cmd or cwd.startswith(lab.project.dir):
            out.append(f"{entry}:{cmd[:80]}")
    return out


def check_up(lab: LiveLab) -> list[str]:
    """The declared lab: cc and role on each cluster, one jwtSecret, the member joined and Ready, nothing pending."""
    problems = []
    jwts = set()
    for c in lab.config["kslab:clusters"]:
        cc = _safe(lambda c=c: lab.cc(c["name"]))
        if cc is None:
            problems.append(f"no cc on {c['name']}")
            continue
        if cc["spec"]["multicluster"]["clusterRole"] != c["role"]:
            problems.append(f"{c['name']} role {cc['spec']['multicluster']['clusterRole']}")
        if (cc.get("status") or {}).get("core", {}).get("status") != "enabled":
            problems.append(f"{c['name']} install not enabled")
        jwts.add(cc["spec"]["authentication"]["jwtSecret"])
    if len(jwts) != 1:
        problems.append("jwtSecrets differ")
    joined = _safe(lambda: lab.joined("host"), [])
    if [o["metadata"]["name"] for o in joined] != ["member"]:
        problems.append(f"joined: {[o['metadata']['name'] for o in joined]}")
    elif {c["type"]: c["status"]
          for c in (joined[0].get("status") or {}).get("conditions") or []}.get("Ready") != "True":
        problems.append("member not Ready")
    elif joined[0]["metadata"].get("deletionTimestamp"):
        problems.append("Cluster member is being deleted")
    return problems


def check_destroyed(lab: LiveLab) -> list[str]:
    problems = [f"left on {n}: {o}" for n in lab.names for o in _safe(lambda n=n: lab.lab_objects(n), ["?"])]
    resources = lab.project.export(STACK)["deployment"].get("resources") or []
    kept = [r["urn"].split("::")[-1] for r in resources if r["type"] != "pulumi:pulumi:Stack"]
    if kept:
        problems.append(f"state still has {len(kept)} resource(s)")
    return problems


def recover(lab: LiveLab, action: str, trial: Trial) -> None:
    """Only the product path: the same `tools/lab.sh` command again; before a destroy that recovery refuses
    (pending creates), the documented `tools/lab.sh up` first. A second try is allowed (a user would retry a
    command that failed once) and counted."""
    start = time.monotonic()
    for attempt in (1, 2):
        trial.attempts = attempt
        done = lab_sh(lab, action, STACK, "--yes", "--skip-preview")
        out = done.stdout + done.stderr
        if done.returncode == 3 and action == "destroy" and "tools/lab.sh up" in out:
            up = lab_sh(lab, "up", STACK, "--yes", "--skip-preview")
            if up.returncode == 0:
                done = lab_sh(lab, "destroy", STACK, "--yes", "--skip-preview")
                out = done.stdout + done.stderr
        if "Traceback" in out:
            trial.problems.append("a traceback reached the user")
        if done.returncode == 0:
            break
        trial.problems.append(f"attempt {attempt}: exit {done.returncode}: {out.strip().splitlines()[-1:]}")
    trial.recovery_seconds = time.monotonic() - start
    problems = check_up(lab) if action == "up" else check_destroyed(lab)
    left = backend_leftovers(lab)
    if left:
        problems.append(f"backend after recovery: {left}")
    procs = project_processes(lab)
    if procs:
        problems.append(f"leaked processes: {procs}")
    trial.problems += problems
    trial.recovered = done.returncode == 0 and not trial.problems


def run_trial(lab: LiveLab, trial: Trial, rng: random.Random, log) -> Trial:
    # A destroy of this lab takes 4-6 s: its random moments stay inside it.
    at = {"start": rng.uniform(0.3, 2.5), "random-up": rng.uniform(1.0, 20.0),
          "random-destroy": rng.uniform(0.3, 3.5)}.get(trial.phase, 0.0)
    proc = start_run(lab, trial.action)
    t0 = time.monotonic()
    while proc.poll() is None and time.monotonic() - t0 < 120:
        if _reached(lab, trial.phase, time.monotonic() - t0, at):
            break
        time.sleep(0.05)
    trial.killed_at = time.monotonic() - t0
    trial.landed = api_moment(lab)
    if proc.poll() is not None:
        trial.landed = f"run had ended (exit {proc.returncode})"
    send(proc, trial.sig)
    try:
        proc.wait(timeout=90)  # a graceful cancel lets the running steps finish
    except subprocess.TimeoutExpired:
        trial.problems.append("the run did not stop within 90 s of the signal")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    time.sleep(0.3)
    trial.left = backend_leftovers(lab) + [f"orphans:{len(project_processes(lab))}"]
    recover(lab, trial.action, trial)
    log(f"trial {trial.n:3d} {trial.action:7s} {trial.phase:14s} {trial.sig:4s} killed at {trial.killed_at:5.1f}s "
        f"({trial.landed}); left {trial.left or '-'}; {'recovered' if trial.recovered else 'LOST'} in "
        f"{trial.recovery_seconds:.1f}s ({trial.attempts} "
        f"run(s)){'; ' + '; '.join(trial.problems) if trial.problems else ''}")
    return trial


OTHER_STACK = "live-standalone"


def concurrent_trial(lab: LiveLab, n: int, workdir: Path, log) -> Trial:
    """Two `tools/lab.sh up` of one stack at once: the second is told the stack is busy and touches nothing,
    the first converges the lab. Meanwhile an up of another stack (its own lab) runs beside it and converges."""
    trial = Trial(n, "up", "concurrent", "-")
    start = time.monotonic()
    other = LiveLab(workdir / "other", OTHER_STACK, install_delay=1.0)
    try:
        lab_sh_tree(other)
        first = start_run(lab, "up")
        beside = start_run(other, "up")
        while first.poll() is None and not _run_holds_lock(lab) and time.monotonic() - start < 60:
            time.sleep(0.05)
        trial.landed = api_moment(lab)
        second = lab_sh(lab, "up", STACK, "--yes", "--skip-preview", timeout=120)
        if second.returncode != 3 or "stack is busy" not in second.stderr:
            trial.problems.append(f"a second up of the same stack was not refused as busy (exit "
                                  f"{second.returncode}: {(second.stdout + second.stderr).strip().splitlines()[-1:]})")
        for proc, what in ((first, "the first up"), (beside, f"the up of {OTHER_STACK} beside it")):
            try:
                if proc.wait(timeout=400) != 0:
                    trial.problems.append(f"{what} failed (exit {proc.returncode})")
            except subprocess.TimeoutExpired:
                trial.problems.append(f"{what} did not end within 400 s")
                os.killpg(proc.pid, signal.SIGKILL)
        trial.problems += check_up(lab)
        for name in other.names:
            if not ((_safe(lambda name=name: other.cc(name), None) or {}).get("status") or {}).get("core"):
                trial.problems.append(f"{OTHER_STACK}: cluster '{name}' has no installed cc after its up")
        procs = project_processes(lab)
        if procs:
            trial.problems.append(f"leaked processes: {procs}")
    finally:
        other.close()
    trial.recovery_seconds = time.monotonic() - start
    trial.attempts = 1
    trial.recovered = not trial.problems
    log(f"trial {n:3d} up      concurrent     -    two ups of one stack, one of {OTHER_STACK} beside: "
        f"{'nothing lost' if trial.recovered else 'LOST: ' + '; '.join(trial.problems)} "
        f"({trial.recovery_seconds:.1f}s)")
    return trial


def plan(trials: int) -> list[tuple[str, str, str]]:
    """Alternating up/destroy kills; phases and signals rotate so that every up phase meets every signal
    within 15 up trials, and the unjoin every signal within 6 destroy trials."""
    out = []
    for i in range(trials):
        k = i // 2
        if i % 2 == 0:
            signal_index = (k % len(UP_PHASES) + k // len(UP_PHASES)) % len(SIGNALS)
            out.append(("up", UP_PHASES[k % len(UP_PHASES)], SIGNALS[signal_index]))
        else:
            out.append(("destroy", DESTROY_PHASES[k % len(DESTROY_PHASES)], SIGNALS[(k // 2) % len(SIGNALS)]))
    return out


def campaign(trials: int, seed: int, workdir: Path, log=print,
             schedule: list[tuple[str, str, str]] | None = None, concurrent: bool = False) -> list[Trial]:
    rng = random.Random(seed)
    lab = LiveLab(workdir, STACK, install_delay=3.0)
    results = []
    try:
        lab_sh_tree(lab)
        for n, (action, phase, sig) in enumerate(schedule or plan(trials), 1):
            if action == "destroy" and check_up(lab):  # the up trial before it was lost: start from a clean up
                lab_sh(lab, "up", STACK, "--yes", "--skip-preview")
            trial = Trial(n, action, phase, sig)
            try:
                results.append(run_trial(lab, trial, rng, log))
            except Exception as exc:  # a check or a recovery command that blew up is a lost trial, with why
                trial.problems.append(f"the trial itself failed: {exc.__class__.__name__}: {str(exc)[:200]}")
                trial.recovered = False
                log(f"trial {n:3d} {action:7s} {phase:14s} {sig:4s} LOST: {trial.problems[-1]}")
                results.append(trial)
        if concurrent:
            results.append(concurrent_trial(lab, len(results) + 1, workdir, log))
    finally:
        lab.close()
    return results


def summary(results: list[Trial]) -> list[str]:
    # A signal that came after its run had ended killed nothing: such a trial is not counted, unless the lab
    # was then not as declared (which is a loss whatever the signal did).
    late = [t for t in results if t.landed.startswith("run had ended") and t.recovered]
    results = [t for t in results if t not in late]
    lines = [f"signals that came after the run had already ended (not counted): {len(late)}",
             "phase x signal: recovered/trials"]
    phases = [p for p in UP_PHASES + DESTROY_PHASES if any(t.phase == p for t in results)]
    lines.append(f"  {'phase':16s}" + "".join(f"{s:>8s}" for s in SIGNALS))
    for p in phases:
        cells = []
        for s in SIGNALS:
            ts = [t for t in results if t.phase == p and t.sig == s]
            cells.append(f"{sum(t.recovered for t in ts)}/{len(ts)}" if ts else "-")
        lines.append(f"  {p:16s}" + "".join(f"{c:>8s}" for c in cells))
    together = [t for t in results if t.phase == "concurrent"]
    if together:
        lines.append(f"  concurrent commands (two ups of one stack, another stack's beside): "
                     f"{sum(t.recovered for t in together)}/{len(together)} nothing lost")
    left = {}
    for t in results:
        for item in t.left:
            key = item.split(":")[0] if not item.startswith("orphans:") else ("orphans" if item != "orphans:0" else "")
            if key:
                left[key] = left.get(key, 0) + 1
    lines.append("left by the kills (trials): " + (", ".join(f"{k} {v}" for k, v in sorted(left.items())) or "-"))
    times = sorted(t.recovery_seconds for t in results)
    if times:
        lines.append(f"recovery seconds: min {times[0]:.1f} median {statistics.median(times):.1f} max {times[-1]:.1f}")
    retried = sum(t.attempts > 1 for t in results)
    lines.append(f"recoveries needing a second run: {retried}")
    lost = [t for t in results if not t.recovered]
    lines.append(f"trials={len(results)} recovered={len(results) - len(lost)} lost={len(lost)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.crash")
    parser.add_argument("--trials", type=int, default=int(os.environ.get("TRIALS", "12")))
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED", "13")))
    args = parser.parse_args(argv)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kslab-crash-") as tmp:
        results = campaign(args.trials, args.seed, Path(tmp), log=lambda s: print(s, flush=True), concurrent=True)
    lines = summary(results)
    print(f"total {time.monotonic() - start:.0f}s")
    print("\n".join(lines))
    return 0 if all(t.recovered for t in results) else 1


if __name__ == "__main__":
    sys.exit(main())
