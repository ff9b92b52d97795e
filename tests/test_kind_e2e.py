"""`pulumi up` / `pulumi destroy` of kind stacks through kslab's own kind steps, on real kind clusters.

Real: Docker, kind v0.33.0, the node image (kubelet, containerd, the control plane, CoreDNS, kube-proxy,
pod networking and storage, all built here), the Pulumi engine and providers applying the installer objects
to the real clusters, joins over container IPs. Played (tests/harness/ks_operators.py, against the kind API
servers): ks-installer and ks-controller-manager. The host-member and three-cluster labs pull every KubeSphere
image from a lab registry kslab fills once from a source registry played here (stand-ins under upstream's
names; the installer's stand-in runs); the standalone lab keeps the path without sources, where the installer
pod's image cannot be pulled here.
"""
import base64
import json
import os
import re
import subprocess
import tempfile
import time

import pytest
import yaml
from kubernetes.client import VersionApi

from kslab.model import contract
from kslab.model.spec import parse_lab
from kslab.steps import kind_marks, lab_registry
from tests.support.kind import KindLab, inspect, kind, kind_clusters, node_containers
from tests.support.mock_run import ROOT
from tests.support.played_sources import PlayedSources
from tests.support.registry import (
    lab_images_counts,
)
from tests.support.status_cli import eventually, finding, kinds, quiet, status

pytestmark = [pytest.mark.engine, pytest.mark.kind]


def _out(proc):
    return proc.stdout + proc.stderr


def _assert_ok(proc, what):
    assert proc.returncode == 0, f"{what} failed:\n{_out(proc)[-6000:]}"


@pytest.fixture
def lab(tmp_path, request):
    the_lab = KindLab(tmp_path, request.param)
    yield the_lab
    the_lab.close()


def _clusters(lab):
    default_image = lab.config.get("kslab:nodeImage")
    return {c["name"]: {**c, "nodeImage": c.get("nodeImage", default_image)} for c in lab.config["kslab:clusters"]}


def _check_kind_clusters(lab):
    """What kind made of the rendered config: names, image, console port mapping, subnets, the lab's mark; the node
    runs."""
    for name, c in _clusters(lab).items():
        assert node_containers(name) == [f"{name}-control-plane"]
        container = inspect(f"{name}-control-plane")
        assert container["Config"]["Image"] == c["nodeImage"]
        bindings = container["HostConfig"]["PortBindings"]
        assert bindings["30880/tcp"][0]["HostPort"] == str(c["consoleHostPort"])
        core = lab.core(name)
        node = core.list_node().items[0]
        assert {cond.type: cond.status for cond in node.status.conditions}["Ready"] == "True"
        # The lab's mark (#25 item 1): on the node, and in the kubeadm config kind wrote into it, where kslab reads it.
        assert node.metadata.labels[contract.LAB_LABEL] == contract.lab_id(lab.stack, lab.project.dir)
        assert kind_marks.owner(name).is_of(contract.lab_id(lab.stack, lab.project.dir))
        kubeadm = yaml.safe_load(core.read_namespaced_config_map("kubeadm-config", "kube-system")
                                 .data["ClusterConfiguration"])
        if c.get("podSubnet"):
            assert kubeadm["networking"]["podSubnet"] == c["podSubnet"]
            assert kubeadm["networking"]["serviceSubnet"] == c["serviceSubnet"]
        pods = core.list_namespaced_pod("kube-system", label_selector="k8s-app=kube-dns").items
        assert pods and all(p.status.phase == "Running" for p in pods), "CoreDNS runs on real pod networking"
        _check_service_rules(name)


def _check_service_rules(name, seconds=60):
    """kube-proxy programs a Service of two endpoints (kube-dns: two CoreDNS pods), which needs iptables' statistic
    match: its extension's libraries must be in kube-proxy's image (tools/kind/node-image/build.sh)."""
    deadline = time.monotonic() + seconds
    while True:
        rules = subprocess.run(["docker", "exec", f"{name}-control-plane", "iptables-save", "-t", "nat"],
                               capture_output=True, text=True, timeout=60).stdout
        if re.search(r"-A KUBE-SVC-\S+ .*kube-system/kube-dns:dns\b.*-m statistic --mode random", rules):
            return
        assert time.monotonic() < deadline, f"{name}: kube-proxy wrote no load-balancing rule for kube-dns"
        time.sleep(2)


def _check_lab(lab, first):
    clusters = _clusters(lab)
    outputs = json.loads(lab.pulumi("stack", "output", "--json", check=True).stdout)
    internal = json.loads(lab.pulumi("stack", "output", "internalKubeconfigs", "--json", "--show-secrets",
                                     check=True).stdout)
    jwts = set()
    for name, c in clusters.items():
        ip = lab.container_ip(name)
        assert outputs["clusters"][name]["address"] == ip
        assert outputs["clusters"][name]["consoleUrl"] == f"http://127.0.0.1:{c['consoleHostPort']}"
        assert outputs["clusters"][name]["installState"] == "enabled"
        assert yaml.safe_load(internal[name])["clusters"][0]["cluster"]["server"] == f"https://{ip}:6443"
        cc = lab.custom(name).get_namespaced_custom_object("installer.kubesphere.io", "v1alpha1", "kubesphere-system",
                                                           "clusterconfigurations", "ks-installer")
        assert cc["spec"]["multicluster"]["clusterRole"] == c["role"]
        assert cc["status"]["core"]["version"] == lab.kubesphere_version(name)
        jwts.add(cc["spec"]["authentication"]["jwtSecret"])
    assert len(jwts) == 1
    for join in lab.config.get("kslab:joins") or []:
        member_ip = lab.container_ip(join["member"])
        objs = {o["metadata"]["name"]: o for o in lab.joined(join["host"])}
        obj = objs[join["member"]]
        kubeconfig = yaml.safe_load(base64.b64decode(obj["spec"]["connection"]["kubeconfig"]))
        server = kubeconfig["clusters"][0]["cluster"]["server"]
        assert server == f"https://{member_ip}:6443", "joined over the container IP"
        assert "kslab.io/loopback-join-reason" not in obj["metadata"]["annotations"]
        assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["Ready"] == "True"
        if lab.kubesphere_version(join["host"]) == "v3.4.1":  # v3.2.1 records no member uid (the fixture's notes)
            assert obj["status"]["uid"] == lab.core(join["member"]).read_namespace("kube-system").metadata.uid
        else:
            assert "uid" not in obj["status"]
        kubefed = lab.custom(join["host"]).get_namespaced_custom_object(
            "core.kubefed.io", "v1beta1", "kube-federation-system", "kubefedclusters", join["member"])
        assert kubefed["spec"]["apiEndpoint"] == f"https://{member_ip}:6443"
    text = _out(first)
    for name in clusters:
        assert f"creating kind cluster '{name}'" in text


def _check_the_notes_lab(lab, sources):
    """The original notes' lab (#27): KubeSphere v3.2.1 on real Kubernetes v1.19.16 nodes, the member joined to both
    hosts, and `make status` telling of the flapping two hosts cause on their member (kubesphere#6466)."""
    for name in lab.names:
        node = lab.core(name).list_node().items[0]
        assert node.status.node_info.kubelet_version == "v1.19.16"
        # kubeadm v1.19 labels a control-plane node with the `master` role (the `control-plane` one came in 1.20)
        assert "node-role.kubernetes.io/master" in node.metadata.labels
        assert VersionApi(lab.core(name).api_client).get_code().git_version == "v1.19.16"
    # the kubectl image ks-installer picks for a 1.19 cluster (kslab/model/images.py KUBECTL_TAGS: roles/ks-core/config)
    assert "kubesphere/kubectl:v1.19.1" in sources.paths
    # Each host federates its own admin to the shared member: an untouched dual-host lab already flaps there.
    member = next(c["name"] for c in lab.config["kslab:clusters"] if c["role"] == "member")
    flapping = eventually(lab, "churn", "--sample-seconds", "4", seconds=90)
    assert {(f["kind"], f["subject"]) for f in flapping["findings"]} == {
        ("federated-clash", f"member {member}"), ("churn", f"member {member}")}, flapping["findings"]
    clash = finding(flapping, "federated-clash")
    assert "kubesphere#6466" in clash["message"] and "do not delete it" in clash["fix"]
    assert {j["state"] for j in flapping["joins"]} == {"ready"}
    _add_v321_tenants(lab, member)


def _add_v321_tenants(lab, member):
    """Tenants on the notes' v3.2.1 lab, on real 1.19 kubelets: a user with a role only v3.2.1 has
    (workspaces-manager; v3.4.1 dropped it), declared on one host so nothing flaps, a workspace of that host placed on
    the shared member, and a project there. The lifecycle's no-change `up` and destroy then cover them too."""
    host = next(j["host"] for j in lab.config["kslab:joins"])
    lab.set_config("kslab:users", [{"name": "ops", "globalRole": "workspaces-manager", "hosts": [host]}])
    lab.set_config("kslab:workspaces", [{"name": "notes", "host": host, "manager": "ops",
                                         "clusters": [host, member]}])
    lab.set_config("kslab:projects", [{"name": "notes-app", "workspace": "notes", "cluster": member}])
    _assert_ok(lab.up(), "up with tenants (v3.2.1)")
    user = lab.custom(host).get_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "users", "ops")
    assert user["status"]["state"] == "Active" and user["spec"]["password"].startswith("$2a$")
    binding = lab.custom(member).get_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "globalrolebindings",
                                                           "ops-workspaces-manager")
    assert binding["metadata"]["labels"]["kubefed.io/managed"] == "true"
    ns = lab.core(member).read_namespace("notes-app")
    assert ns.metadata.labels["kubesphere.io/workspace"] == "notes"
    assert [r.kind for r in ns.metadata.owner_references or []] == ["Workspace"]


def _assert_no_secret_leak(lab, *texts):
    state = lab.state_text()
    for name in lab.names:
        user = yaml.safe_load(lab.kubeconfig(name))["users"][0]["user"]
        for secret in (user["client-key-data"], user["client-certificate-data"][:60]):
            assert secret not in state and all(secret not in t for t in texts)
    jwt = yaml.safe_load(lab.core(lab.names[0]).read_namespaced_config_map(
        "kubesphere-config", "kubesphere-system").data["kubesphere.yaml"])["authentication"]["jwtSecret"]
    assert jwt not in state and all(jwt not in t for t in texts)


# These labs pull from a lab registry filled from a played source; the standalone lab keeps the path without one.
LAB_REGISTRY_STACKS = ("kind-host-member", "kind-dual-host")


@pytest.mark.parametrize("lab", ["kind-standalone", "kind-host-member", "kind-dual-host"], indirect=True)
def test_kind_lifecycle(lab, tmp_path):
    sources = PlayedSources(lab, tmp_path) if lab.stack in LAB_REGISTRY_STACKS else None
    try:
        _lifecycle(lab, sources)
    finally:
        if sources is not None:
            sources.close()


def _lifecycle(lab, sources):
    first = lab.up()
    _assert_ok(first, "first up")
    _check_kind_clusters(lab)
    _check_lab(lab, first)
    if sources is not None:
        sources.check_first_up(lab, _out(first))
    if lab.stack == "kind-dual-host":
        _check_the_notes_lab(lab, sources)

    again = lab.up("--expect-no-changes")
    _assert_ok(again, "second up")
    assert "[kslab]" not in _out(again), "no lab step may run on a no-change up"
    _assert_no_secret_leak(lab, _out(first), _out(again))

    gone = lab.destroy()
    _assert_ok(gone, "destroy")
    for name in lab.names:
        assert name not in kind_clusters() and node_containers(name) == []
    home_kubeconfig = lab.home / ".kube" / "config"
    assert not home_kubeconfig.exists() or not any(
        n in home_kubeconfig.read_text() for n in lab.names), "kslab never writes the user's kubeconfig"
    assert "client-key-data" not in _out(gone)
    if sources is None:
        return
    assert (lab_registry.container_state(sources.registry) or {}).get("State", {}).get("Running"), \
        "the lab registry outlives destroy"
    if lab.stack != "kind-host-member":
        return
    # A new lab after destroy, with the source registry stopped (offline): its new nodes pull everything from the
    # lab registry, and no source is asked for any image or blob.
    sources.source.mark()
    sources.source.close()
    second_lab = lab.up()
    _assert_ok(second_lab, "up after destroy")
    assert not sources.pulls(), f"the source was asked again: {sources.pulls()}"
    assert lab_images_counts(_out(second_lab))["fetched"] == 0
    for name in lab.names:
        sources._installer_running(lab, name)
    _assert_ok(lab.destroy(), "the second destroy")


@pytest.mark.parametrize("lab", ["kind-standalone"], indirect=True)
def test_kind_cluster_deleted_out_of_band_adopted_and_refused(lab):
    """Adopt a kind cluster this lab made (its nodes carry the lab's mark; as after a run killed once kind had made
    it) of the same image; a cluster deleted behind the lab's back is found by refresh and made again by up; a
    same-named cluster of this lab with another image is refused, never adopted. (A cluster made by hand, without
    the mark: tests/test_kind_foreign_cluster.py.)"""
    name = lab.names[0]
    image = _clusters(lab)[name]["nodeImage"]
    made = _kind_create_marked(lab, name, image)
    assert made.returncode == 0, made.stderr[-2000:]
    before = inspect(f"{name}-control-plane")["Id"]
    adopted = lab.up()
    _assert_ok(adopted, "up over an existing cluster")
    assert f"cluster '{name}' already exists, made by kslab for this lab: adopting it" in _out(adopted)
    assert inspect(f"{name}-control-plane")["Id"] == before, "adopted, not created again"
    state_before = lab.state_text()

    _assert_ok(_kind_delete(name), "out-of-band delete")
    refreshed = lab.pulumi("refresh", "--yes", "--skip-preview", timeout=600)
    _assert_ok(refreshed, "refresh")
    assert f"kind cluster '{name}' is gone" in _out(refreshed)
    assert lab.state_text() != state_before
    again = lab.up()
    _assert_ok(again, "up after the out-of-band delete")
    assert f"creating kind cluster '{name}'" in _out(again)
    _check_kind_clusters(lab)
    _assert_ok(lab.destroy(), "destroy")

    other = image.replace("kind-node:", "kind-node-other:")
    subprocess.run(["docker", "tag", image, other], check=True)
    try:
        made = _kind_create_marked(lab, name, other)
        assert made.returncode == 0, made.stderr[-2000:]
        refused = lab.up()
        assert refused.returncode != 0
        assert f"already exists with image {other}, not {image}" in _out(refused) and \
            f"kind delete cluster --name {name}" in _out(refused), _out(refused)[-3000:]
        assert inspect(f"{name}-control-plane")["Config"]["Image"] == other, "refused, not replaced"
    finally:
        _kind_delete(name)
        subprocess.run(["docker", "rmi", other], capture_output=True)


def _kind_delete(name):
    return kind("delete", "cluster", "--name", name)


def _kind_create_marked(lab, name, image):
    """A kind cluster with the lab's console port and its mark, as kind-create makes it."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as cfg:
        cfg.write("kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n"
                  f"  labels:\n    {contract.LAB_LABEL}: {contract.lab_id(lab.stack, lab.project.dir)}\n"
                  "  extraPortMappings:\n  - containerPort: 30880\n    hostPort: 31880\n")
        cfg.flush()
        return kind("create", "cluster", "--name", name, "--image", image, "--config", cfg.name, "--wait", "3m")


@pytest.mark.parametrize("lab", ["kind-host-member"], indirect=True)
def test_kind_destroy_with_the_member_already_gone(lab):
    lab.set_config("kslab:unjoinTimeoutSeconds", 10)
    _assert_ok(lab.up(), "up")
    # `make status` on real kind clusters: all ready, then the member gone is found with its fixes
    healthy = quiet(lab, "--sample-seconds", "0")
    assert healthy["findings"] == [] and {c["state"] for c in healthy["clusters"]} == {"ready"}, healthy
    assert healthy["joins"][0]["kubefedReady"] == "True"
    _assert_ok(_kind_delete("kt-member"), "out-of-band delete of the member")
    gone = status(lab, "--sample-seconds", "0")
    assert {"cluster-unreachable", "member-unreachable"} <= kinds(gone), gone["findings"]
    assert finding(gone, "cluster-unreachable")["fix"].startswith("docker start kt-member-control-plane")
    stuck = lab.destroy()
    assert stuck.returncode != 0 and "KSLAB_FORCE_UNJOIN=1" in _out(stuck), _out(stuck)[-3000:]
    forced = lab.destroy(extra_env={"KSLAB_FORCE_UNJOIN": "1"})
    _assert_ok(forced, "forced destroy")
    assert "cluster 'kt-member' is already gone" in _out(forced)
    for name in lab.names:
        assert name not in kind_clusters() and node_containers(name) == []


NON_ROOT_USER = "kslab-tester"


@pytest.mark.skipif(os.geteuid() != 0, reason="creating a non-root test user needs root; as a non-root user the "
                                                "rest of this tier already runs every kind step as non-root")
def test_kind_steps_as_a_non_root_user(tmp_path):
    """The kind steps exactly as `pulumi up` runs them, as an ordinary user in the docker group (the normal
    laptop case). kind locks `<kubeconfig>.lock`: with `--kubeconfig /dev/null` a non-root create failed after
    the cluster existed."""
    from tests.support.kind import require_kind_tier
    with open(os.path.join(ROOT, "tests", "stacks", "Pulumi.kind-standalone.yaml")) as fh:
        cluster = yaml.safe_load(fh)["config"]["kslab:clusters"][0]
    require_kind_tier({cluster["nodeImage"]})
    subprocess.run(["useradd", "--create-home", "--groups", "docker", NON_ROOT_USER], capture_output=True)
    subprocess.run(["usermod", "-aG", "docker", NON_ROOT_USER], check=True)
    work = tempfile.mkdtemp(prefix="kslab-nonroot-")
    os.chmod(work, 0o755)
    subprocess.run(["cp", "-r", os.path.join(ROOT, "kslab"), work], check=True)
    kind_bin = os.path.join(work, "bin")
    os.makedirs(kind_bin)
    subprocess.run(["cp", subprocess.run(["which", "kind"], capture_output=True, text=True).stdout.strip(),
                    kind_bin], check=True)
    subprocess.run(["chmod", "-R", "a+rX", work], check=True)
    name = "kt-nonroot"
    from kslab.render import manifests as render
    spec = parse_lab({"clusters": [{**cluster, "name": name, "consoleHostPort": 31890}]}).clusters[0]
    env = {"PATH": f"{kind_bin}:/usr/bin:/bin", "HOME": f"/home/{NON_ROOT_USER}",
           "DOCKER_HOST": os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"), "KSLAB_CLUSTER": name,
           "KSLAB_NODE_IMAGE": spec.node_image, "KSLAB_KIND_CONFIG": render.kind_config_yaml(spec),
           "KSLAB_KIND_WAIT": "3m"}

    def step(which):
        return subprocess.run(["runuser", "-u", NON_ROOT_USER, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()],
                               "/usr/bin/python3", "-m", "kslab.steps", which], cwd=work, capture_output=True,
                              text=True, timeout=900)
    try:
        created = step("kind-create")
        assert created.returncode == 0, created.stderr[-3000:]
        result = json.loads(created.stdout)
        assert yaml.safe_load(result["internalKubeconfig"])["clusters"][0]["cluster"]["server"] == \
            f"https://{result['containerIp']}:6443"
        assert not os.path.exists(f"/home/{NON_ROOT_USER}/.kube/config"), "the user's kubeconfig stays untouched"
        deleted = step("kind-delete")
        assert deleted.returncode == 0, deleted.stderr[-2000:]
        assert name not in kind_clusters()
    finally:
        if name in kind_clusters():
            _kind_delete(name)
        subprocess.run(["rm", "-rf", work])
