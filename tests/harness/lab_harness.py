"""`make harness-up STACK=<test stack>` / `make harness-down`: the live clusters and the operator
fixture of a test stack, started by hand in the background.

    python -m tests.harness.lab_harness up live-host-member
    python -m tests.harness.lab_harness down

Everything lives under .kslab/harness/; `down` stops only the processes it recorded there.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import yaml

from tests.harness.live_cluster import LiveCluster, find_bin_dir, kill_recorded

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / ".kslab" / "harness"


def up(stack: str) -> None:
    stack_file = ROOT / "tests" / "stacks" / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        sys.exit(f"no test stack {stack_file}")
    if (HARNESS / "operator.pid").exists():
        sys.exit("a harness is already running: make harness-down first")
    names = [c["name"] for c in yaml.safe_load(stack_file.read_text())["config"]["kslab:clusters"]]
    bin_dir = find_bin_dir()
    HARNESS.mkdir(parents=True, exist_ok=True)
    for name in names:
        cluster = LiveCluster(name, HARNESS / name, bin_dir).start()
        cluster.detach()
        print(f"{name}: {cluster.server}  kubeconfig {cluster.kubeconfig_path}")
    args = [sys.executable, "-m", "tests.harness.ks_operators", "--delay", "2"]
    args += [f"{n}={HARNESS / n / 'kubeconfig'}" for n in names]
    with open(HARNESS / "operator.log", "w") as log:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (HARNESS / "operator.pid").write_text(str(proc.pid))
    print(f"operator fixture (plays KubeSphere's operators) pid {proc.pid}, log {HARNESS / 'operator.log'}")
    print("These are API-server-only clusters; KubeSphere's operators are played by the test fixture.")
    print(f"Run the lab against them:\n  export KSLAB_HARNESS_DIR={HARNESS}\n  tools/lab.sh up {stack}")
    print("Stop everything: make harness-down")


def down() -> None:
    pid_file = HARNESS / "operator.pid"
    if pid_file.exists():
        try:
            os.killpg(int(pid_file.read_text()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
    if HARNESS.is_dir():
        for workdir in sorted(p for p in HARNESS.iterdir() if (p / "pids").exists()):
            stopped = kill_recorded(workdir)
            print(f"{workdir.name}: stopped {', '.join(stopped) or 'nothing (already gone)'}")
        shutil.rmtree(HARNESS)
    print("harness down")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "up":
        up(sys.argv[2])
    elif len(sys.argv) == 2 and sys.argv[1] == "down":
        down()
    else:
        sys.exit(__doc__)
