"""The demo stack's tenants end to end on live API servers (tests/stacks/Pulumi.live-demo.yaml mirrors
stacks/Pulumi.demo.yaml): a host and two members, three users, two workspaces, four projects.

Real: the Pulumi engine, kslab's program and steps, three kube-apiservers. Played (tests/harness/ks_tenants.py,
each behaviour citing kubesphere@v3.2.1/v3.4.1): the user, workspacetemplate, role-binding, workspace and namespace
controllers, and KubeFed's propagation to every Ready cluster a placement selects.
"""
import json
import time

import bcrypt
import pytest
from kubernetes.client.rest import ApiException

from kslab.model import contract
from tests.support.live import LiveLab
from tests.support.status_cli import run_status_command, status

pytestmark = [pytest.mark.engine, pytest.mark.live]

STACK = "live-demo"
WENDY_PASSWORD = "Wendy-Demo-2026"
MEMBERS = ("member1", "member2")


def _failure(proc) -> str:
    """A failed run's diagnostics (the engine prints them before the long outputs)."""
    text = proc.stdout + proc.stderr
    start = text.find("Diagnostics:")
    return text[start:start + 6000] if start >= 0 else text[-6000:]


def _get(lab, cluster, group, version, plural, name):
    try:
        return lab.custom(cluster).get_cluster_custom_object(group, version, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _eventually(check, seconds=30.0):
    deadline = time.monotonic() + seconds
    while True:
        missing = check()
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.5)


def _eventually_hashed(lab, cluster: str, user: str) -> dict:
    deadline = time.monotonic() + 30
    while True:
        copy = _get(lab, cluster, "iam.kubesphere.io", "v1alpha2", "users", user)
        if copy["spec"]["password"].startswith("$2") or time.monotonic() > deadline:
            return copy
        time.sleep(0.5)


def _placed(lab) -> list[str]:
    """What is not yet where the demo places it (empty when every tenant has reached every cluster)."""
    missing = []
    for cluster in ("host", *MEMBERS):
        for user in ("pat", "wendy", "dev"):
            if _get(lab, cluster, "iam.kubesphere.io", "v1alpha2", "users", user) is None:
                missing.append(f"user {user} on {cluster}")
        for binding in ("pat-platform-admin", "wendy-platform-regular", "dev-platform-regular"):
            if _get(lab, cluster, "iam.kubesphere.io", "v1alpha2", "globalrolebindings", binding) is None:
                missing.append(f"globalrolebinding {binding} on {cluster}")
        if _get(lab, cluster, "tenant.kubesphere.io", "v1alpha1", "workspaces", "shop") is None:
            missing.append(f"workspace shop on {cluster}")
        if _get(lab, cluster, "iam.kubesphere.io", "v1alpha2", "workspacerolebindings", "dev-shop-regular") is None:
            missing.append(f"workspacerolebinding dev-shop-regular on {cluster}")
    if _get(lab, "member2", "tenant.kubesphere.io", "v1alpha1", "workspaces", "lab-only") is None:
        missing.append("workspace lab-only on member2")
    return missing


@pytest.fixture
def demo(tmp_path):
    lab = LiveLab(tmp_path, STACK)
    yield lab
    lab.close()


def test_the_demo_tenants_reach_every_placed_cluster_stay_put_and_go_before_the_joins(demo):
    lab = demo
    lab.pulumi("config", "set", "--secret", "kslab:wendyPassword", input=WENDY_PASSWORD, check=True)
    first = lab.up()
    assert first.returncode == 0, _failure(first)

    # every user, binding and workspace where its placement says, and nowhere else
    assert _eventually(lambda: _placed(lab)) == []
    for cluster in ("host", "member1"):
        assert _get(lab, cluster, "tenant.kubesphere.io", "v1alpha1", "workspaces", "lab-only") is None, cluster

    # the users on their host: kslab's label, KubeSphere's hash of the given or generated password, Active
    shown = json.loads(lab.pulumi("stack", "output", "--json", "--show-secrets", check=True).stdout)
    passwords = shown["userPasswords"]
    assert passwords["wendy"] == WENDY_PASSWORD
    assert len(passwords["pat"]) == 24 and passwords["pat"] != passwords["dev"]
    for name in ("pat", "wendy", "dev"):
        user = _get(lab, "host", "iam.kubesphere.io", "v1alpha2", "users", name)
        assert user["metadata"]["labels"][contract.LAB_LABEL].startswith("live-demo-")
        assert user["status"]["state"] == "Active"
        assert bcrypt.checkpw(passwords[name].encode(), user["spec"]["password"].encode()), name
        # kslab sent the hash: KubeSphere took it as encrypted (no change time of its own), no text ever there
        assert "iam.kubesphere.io/last-password-change-time" not in (user["metadata"].get("annotations") or {})
    for cluster in MEMBERS:  # KubeFed's copy carries the host's hash, never the plain password
        copy = _eventually_hashed(lab, cluster, "pat")
        assert bcrypt.checkpw(passwords["pat"].encode(), copy["spec"]["password"].encode()), cluster
    hidden = json.loads(lab.pulumi("stack", "output", "--json", check=True).stdout)
    assert hidden["userPasswords"] == "[secret]"
    assert hidden["users"]["pat"]["globalRole"] == "platform-admin"
    state = lab.state_text()
    assert not any(p in state for p in passwords.values()), "a password in plain text in the state"
    assert not any(p in first.stdout + first.stderr for p in passwords.values())

    # the workspace template's placement, and the manager's binding KubeSphere made itself
    template = _get(lab, "host", "tenant.kubesphere.io", "v1alpha2", "workspacetemplates", "shop")
    assert template["spec"]["placement"]["clusters"] == [{"name": "host"}, {"name": "member1"}, {"name": "member2"}]
    assert _get(lab, "host", "iam.kubesphere.io", "v1alpha2", "workspacerolebindings", "shop-admin") is not None

    # a project per cluster, bound to its workspace there
    for cluster, project, workspace in (("host", "shop-host", "shop"), ("member1", "shop-edge", "shop"),
                                        ("member2", "shop-batch", "shop"), ("member2", "sandbox", "lab-only")):
        ns = lab.core(cluster).read_namespace(project)
        assert ns.metadata.labels["kubesphere.io/workspace"] == workspace
        assert [r.kind for r in ns.metadata.owner_references or []] == ["Workspace"], (cluster, project)

    # `make status`: every tenant on every cluster it is placed on, no finding; the table lists them
    doc = status(lab, "--sample-seconds", "0")
    assert doc["findings"] == [] and doc["tenants"], doc["findings"]
    assert {(t["kind"], t["name"], t["cluster"]) for t in doc["tenants"] if not t["present"]} == set()
    assert ("workspace", "lab-only", "member2") in {(t["kind"], t["name"], t["cluster"]) for t in doc["tenants"]}
    assert "workspace lab-only  host" in run_status_command(lab, "status", "--sample-seconds", "0").stdout
    # a workspace removed behind kslab's back is found, with why and the fix
    host_kubefed = lab.operator.actor("host").tenants
    host_kubefed.pause_sync()  # KubeFed's sync controller of the host stops (an outage)
    lab.custom("member1").delete_cluster_custom_object("tenant.kubesphere.io", "v1alpha1", "workspaces", "shop")
    missing = status(lab, "--sample-seconds", "0")
    assert [(f["kind"], f["subject"]) for f in missing["findings"]] == [("tenant-missing", "workspace shop on member1")]
    assert "KubeFed of host" in missing["findings"][0]["message"]
    host_kubefed.sync_paused = False
    assert _eventually(lambda: _placed(lab)) == []

    # a no-change up and a refresh change nothing, whatever KubeSphere added (hash, finalizers, labels)
    again = lab.up("--expect-no-changes")
    assert again.returncode == 0, _failure(again)
    assert "[kslab]" not in again.stdout + again.stderr, "no step may run on a no-change up"
    refreshed = lab.pulumi("refresh", "--yes", "--skip-preview", "--expect-no-changes")
    assert refreshed.returncode == 0, _failure(refreshed)
    assert lab.up("--expect-no-changes").returncode == 0

    # destroy: every tenant goes, before the joins
    events = lab.project.dir + "/destroy-events.json"
    gone = lab.destroy("--event-log", events, extra_env={"PULUMI_DEBUG_COMMANDS": "true"})
    assert gone.returncode == 0, _failure(gone)
    order = []
    with open(events) as fh:
        for line in fh:
            meta = (json.loads(line).get("resOutputsEvent") or {}).get("metadata") or {}
            if meta.get("op") == "delete":
                order.append(meta["urn"].split("::")[-1])
    # the tenant steps (a component or a generated password depends on no join and may go at any time)
    steps = [f"user-{u}-on-host" for u in ("pat", "wendy", "dev")] + \
        [f"workspace-{w}-on-host" for w in ("shop", "lab-only")] + \
        [f"project-{p}-on-{c}-namespace" for p, c in (("shop-host", "host"), ("shop-edge", "member1"),
                                                       ("shop-batch", "member2"), ("sandbox", "member2"))]
    tenant_steps = [order.index(n) for n in steps]
    joins = [order.index(f"{m}-to-host-ready") for m in MEMBERS]
    assert tenant_steps and max(tenant_steps) < min(joins), order
    for name in ("pat", "wendy", "dev"):
        for cluster in ("host", *MEMBERS):  # KubeFed removed the members' copies before the joins went
            assert _get(lab, cluster, "iam.kubesphere.io", "v1alpha2", "users", name) is None, (name, cluster)
    for cluster in MEMBERS:
        assert _get(lab, cluster, "tenant.kubesphere.io", "v1alpha1", "workspaces", "shop") is None, cluster
    assert _get(lab, "host", "tenant.kubesphere.io", "v1alpha2", "workspacetemplates", "shop") is None
    assert "shop-host" not in [n.metadata.name for n in lab.core("host").list_namespace().items]
