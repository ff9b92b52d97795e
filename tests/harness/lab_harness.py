"""`make harness-up STACK=<test stack>` / `make harness-down`: what a test stack runs against, started by hand
in the background.

- live-*: API-server-only clusters (etcd + kube-apiserver) and the fixture playing KubeSphere on them.
- kind-*: the fixture, following the stack's kind clusters; `make up STACK=kind-...` then creates them for
  real (Docker, kind and the node image come from tools/kind/tier.sh, which `make harness-up` runs).

    python -m tests.harness.lab_harness up live-host-member
    python -m tests.harness.lab_harness down

Everything lives under .kslab/harness/; `down` stops only the processes it recorded there, deletes the kind
clusters of the recorded stack that are still there, removes kind's Docker network once nothing uses it,
and stops the Docker engine if `up` was the one that started it.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.harness.live_cluster import LiveCluster, find_bin_dir, kill_recorded

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / ".kslab" / "harness"


def _start_operator(args: list[str]) -> int:
    with open(HARNESS / "operator.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "tests.harness.ks_operators", *args], cwd=ROOT, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    (HARNESS / "operator.pid").write_text(str(proc.pid))
    return proc.pid


def up(stack: str) -> None:
    stack_file = ROOT / "tests" / "stacks" / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        sys.exit(f"no test stack {stack_file}")
    if (HARNESS / "operator.pid").exists():
        sys.exit("a harness is already running: make harness-down first")
    names = [c["name"] for c in yaml.safe_load(stack_file.read_text())["config"]["kslab:clusters"]]
    HARNESS.mkdir(parents=True, exist_ok=True)
    record = {"stack": stack, "kind": stack.startswith("kind-"), "names": names,
              "docker_started": os.environ.get("KSLAB_DOCKER_STARTED") == "1"}
    (HARNESS / "harness.json").write_text(json.dumps(record))
    if record["kind"]:
        pid = _start_operator(["--delay", "2", *[f"--kind={n}" for n in names]])
        print(f"operator fixture (plays KubeSphere's controllers) pid {pid}, log {HARNESS / 'operator.log'}; it "
              f"follows the kind clusters {', '.join(names)} as `make up` creates them")
        print(f"Bring the lab up on real kind clusters:\n  make up STACK={stack}")
        print(f"Take it down:\n  make destroy STACK={stack} && make harness-down")
        return
    bin_dir = find_bin_dir()
    for name in names:
        cluster = LiveCluster(name, HARNESS / name, bin_dir).start()
        cluster.detach()
        print(f"{name}: {cluster.server}  kubeconfig {cluster.kubeconfig_path}")
    pid = _start_operator(["--delay", "2", *[f"{n}={HARNESS / n / 'kubeconfig'}" for n in names]])
    print(f"operator fixture (plays KubeSphere's operators) pid {pid}, log {HARNESS / 'operator.log'}")
    print("These are API-server-only clusters; KubeSphere's operators are played by the test fixture.")
    print(f"Run the lab against them:\n  export KSLAB_HARNESS_DIR={HARNESS}\n  tools/lab.sh up {stack}")
    print("Stop everything: make harness-down")


def _kind_down(record: dict) -> None:
    listed = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True)
    for name in sorted(set(listed.stdout.split()) & set(record["names"])):
        with tempfile.TemporaryDirectory() as scratch:
            subprocess.run(["kind", "delete", "cluster", "--name", name, "--kubeconfig", f"{scratch}/kubeconfig"],
                           capture_output=True)
        print(f"{name}: kind cluster was still there (no `make destroy`?): deleted")
    attached = subprocess.run(["docker", "network", "inspect", "kind", "--format", "{{len .Containers}}"],
                              capture_output=True, text=True)
    if attached.returncode == 0 and attached.stdout.strip() == "0":
        subprocess.run(["docker", "network", "rm", "kind"], capture_output=True)
        print("removed kind's Docker network (nothing uses it)")
    if record.get("docker_started"):
        subprocess.run([str(ROOT / "tools" / "docker" / "docker.sh"), "stop"])


def down() -> None:
    pid_file = HARNESS / "operator.pid"
    if pid_file.exists():
        try:
            pgid = int(pid_file.read_text())
            os.killpg(pgid, signal.SIGTERM)
            for _ in range(100):  # gone before `down` returns; killed if it does not stop within 10 s
                time.sleep(0.1)
                os.killpg(pgid, 0)
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    record_file = HARNESS / "harness.json"
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    if record.get("kind"):
        _kind_down(record)
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
