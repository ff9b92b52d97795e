"""The demo stack's tenants on real kind clusters (tests/stacks/Pulumi.kind-demo.yaml mirrors stacks/Pulumi.demo.yaml):
three kind clusters with kubelets and the real kube-controller-manager (namespace finalization, garbage collection),
KubeSphere's tenant controllers and KubeFed played by tests/harness/ks_tenants.py (upstream cited there)."""
import json
import time

import bcrypt
import pytest

from tests.support.kind import KindLab, kind_clusters, node_containers
from tests.support.status_cli import status
from tests.test_tenants_live import _eventually_hashed, _failure, _get

pytestmark = [pytest.mark.engine, pytest.mark.kind]

HOST, MEMBERS = "kt-host", ("kt-member1", "kt-member2")


def _placed(lab) -> list[str]:
    doc = status(lab, "--sample-seconds", "0")
    return [f"{f['subject']}: {f['message']}" for f in doc["findings"]]


@pytest.fixture
def lab(tmp_path):
    the_lab = KindLab(tmp_path, "kind-demo")
    yield the_lab
    the_lab.close()


def test_the_demo_stack_comes_up_on_kind_with_every_tenant_placed_and_goes_leaving_nothing(lab):
    first = lab.up()
    assert first.returncode == 0, _failure(first)
    deadline = time.monotonic() + 60
    while (missing := _placed(lab)) and time.monotonic() < deadline:
        time.sleep(2)
    assert missing == [], missing
    doc = status(lab, "--sample-seconds", "0")
    assert len(doc["tenants"]) == 3 * 3 + 3 + 1 + 4 and all(t["present"] for t in doc["tenants"])

    passwords = json.loads(lab.pulumi("stack", "output", "--json", "--show-secrets", check=True).stdout)[
        "userPasswords"]
    for name in ("pat", "wendy", "dev"):
        user = _get(lab, HOST, "iam.kubesphere.io", "v1alpha2", "users", name)
        assert bcrypt.checkpw(passwords[name].encode(), user["spec"]["password"].encode())
    for cluster in MEMBERS:  # KubeFed's copy of the host's User, hash and all
        copy = _eventually_hashed(lab, cluster, "pat")
        assert copy["metadata"]["labels"]["kubefed.io/managed"] == "true"
        assert bcrypt.checkpw(passwords["pat"].encode(), copy["spec"]["password"].encode())
    for cluster, project in ((HOST, "shop-host"), ("kt-member1", "shop-edge"), ("kt-member2", "shop-batch")):
        ns = lab.core(cluster).read_namespace(project)
        assert [r.kind for r in ns.metadata.owner_references or []] == ["Workspace"], (cluster, project)

    again = lab.up("--expect-no-changes")
    assert again.returncode == 0, _failure(again)
    assert "[kslab]" not in again.stdout + again.stderr, "no lab step may run on a no-change up"

    gone = lab.destroy()
    assert gone.returncode == 0, _failure(gone)
    for name in lab.names:
        assert name not in kind_clusters() and node_containers(name) == []
