"""A kind cluster the user made by hand with a stack's cluster name, on real kind (#25 item 1): `up` is refused at
the preflight naming it, nothing of the lab is created, and `destroy` leaves the cluster and what it holds.

Real: Docker, kind v0.33.0, the node image built here, the Pulumi engine and kslab's steps. The stack is the one-
cluster kind-standalone lab; no KubeSphere is installed, since `up` stops at its start."""
import json
import subprocess

import pytest

from tests.support.kind import KindLab, inspect, kind, kind_clusters

pytestmark = [pytest.mark.engine, pytest.mark.kind]

USER_FILE = "/root/my-notes.txt"
USER_TEXT = "what the user keeps in the cluster they made by hand\n"


def _containers() -> set[str]:
    out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True,
                         timeout=60, check=True)
    return set(out.stdout.split())


def _user_file(node: str) -> str:
    return subprocess.run(["docker", "exec", node, "cat", USER_FILE], capture_output=True, text=True,
                          timeout=60).stdout


def test_a_cluster_made_by_hand_survives_up_and_destroy(tmp_path):
    lab = KindLab(tmp_path, "kind-standalone")
    name = lab.names[0]
    node = f"{name}-control-plane"
    try:
        # As the user would: `kind create cluster --name <name>` with the node image, then a file of their own.
        made = kind("create", "cluster", "--name", name, "--image", lab.config["kslab:clusters"][0]["nodeImage"])
        assert made.returncode == 0, made.stderr[-3000:]
        subprocess.run(["docker", "exec", "-i", node, "sh", "-c", f"cat > {USER_FILE}"], input=USER_TEXT,
                       text=True, timeout=60, check=True)
        container_id = inspect(node)["Id"]
        before = _containers()

        up = lab.up(timeout=900)
        out = up.stdout + up.stderr
        assert up.returncode != 0, out[-4000:]
        assert "preflight failed, no cluster was created" in out, out[-4000:]
        assert f"a kind cluster named '{name}' already exists and was not created by kslab" in out
        assert "rename the cluster in the stack file" in out and f"kind delete cluster --name {name}" in out
        # Nothing of the lab was created: no container, no kind cluster, no cluster step in the state.
        assert _containers() == before and kind_clusters() & set(lab.names) == {name}
        state = json.loads(lab.state_text())
        types = {r["type"] for r in state.get("deployment", {}).get("resources") or []}
        assert "kslab:steps:KindCluster" not in types, sorted(types)

        down = lab.destroy()
        assert down.returncode == 0, (down.stdout + down.stderr)[-4000:]
        assert name in kind_clusters(), "destroy deleted the cluster the user made by hand"
        assert inspect(node)["Id"] == container_id and _user_file(node) == USER_TEXT
    finally:
        kind("delete", "cluster", "--name", name)
        lab.close()
