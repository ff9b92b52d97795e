"""`make status` and `make graph` on live labs, with each fault played for real.

The lab is brought up by the real engine on live API servers (tests/support/live.py); the faults are what a user
or a failure does to it: a hand edit of kubesphere-config or of the cc, a member's API server stopped, a Cluster
deleted while its member is away (the v3.4.1 webhook then holds the finalizer), a KubeFedCluster set to skip TLS
verification, and same-named users on both hosts of the dual-host stack (the fixture plays KubeFed's sync, which
makes them flap on the member). Each finding must come with its fix and the exit code must say so.
"""
import json
import time
import xml.etree.ElementTree as ET

import pytest
import yaml

from kslab.cli import graph as graph_mod
from tests.support.live import LiveLab
from tests.support.status_cli import eventually, finding, kinds, quiet, status
from tests.support.status_cli import run_status_command as _run

pytestmark = [pytest.mark.engine, pytest.mark.live]
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def live(tmp_path, request):
    lab = LiveLab(tmp_path, request.param)
    yield lab
    lab.close()


def svg_states(path) -> tuple[dict, dict]:
    """(cluster -> fill colour, join -> stroke colour) read back from the SVG Graphviz wrote."""
    root = ET.parse(path).getroot()
    nodes, edges = {}, {}
    for g in root.iter(f"{SVG}g"):
        gid = g.get("id") or ""
        shape = next((e for e in g.iter() if e.tag in (f"{SVG}path", f"{SVG}polygon")), None)
        if gid.startswith("cluster-") and g.get("class") == "node":
            nodes[gid.removeprefix("cluster-")] = shape.get("fill")
        elif gid.startswith("join-") and g.get("class") == "edge":
            edges[gid.removeprefix("join-")] = shape.get("stroke")
    return nodes, edges


@pytest.mark.parametrize("live", ["live-host-member"], indirect=True)
def test_status_finds_each_fault_of_a_host_member_lab_with_its_fix(live, tmp_path):
    lab = live
    up = lab.up()
    assert up.returncode == 0, up.stdout[-3000:]
    healthy = quiet(lab, "--sample-seconds", "0")
    assert healthy["findings"] == [], json.dumps(healthy, indent=1)
    assert {c["name"]: c["state"] for c in healthy["clusters"]} == {"host": "ready", "member": "ready"}
    assert healthy["joins"][0]["state"] == "ready" and healthy["joins"][0]["kubefedReady"] == "True"
    assert {c["name"]: c["reportedRole"] for c in healthy["clusters"]} == {"host": "host", "member": "member"}

    out = _run(lab, "graph", "--out-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    nodes, edges = svg_states(tmp_path / f"{lab.stack}.svg")
    ready = graph_mod.STATE_COLOURS["ready"]
    assert nodes == {"host": ready.fill, "member": ready.fill} and edges == {"member-to-host": ready.line}

    # 1. the member's jwtSecret changed by hand in kubesphere-config
    core = lab.core("member")
    cm = core.read_namespaced_config_map("kubesphere-config", "kubesphere-system")
    original = cm.data["kubesphere.yaml"]
    doc = yaml.safe_load(original)
    doc["authentication"]["jwtSecret"] = "changed-by-hand-000000000000000000"
    cm.data["kubesphere.yaml"] = yaml.safe_dump(doc)
    core.replace_namespaced_config_map("kubesphere-config", "kubesphere-system", cm)
    proc = _run(lab, "status")
    assert proc.returncode == 1 and "[jwt-mismatch]" in proc.stdout and "rollout restart deploy/ks-installer" in \
        proc.stdout, proc.stdout
    assert "changed-by-hand" not in proc.stdout + proc.stderr
    jwt = finding(status(lab), "jwt-mismatch")
    assert jwt["subject"] == "join member-to-host"
    cm = core.read_namespaced_config_map("kubesphere-config", "kubesphere-system")
    cm.data["kubesphere.yaml"] = original
    core.replace_namespaced_config_map("kubesphere-config", "kubesphere-system", cm)
    assert quiet(lab)["findings"] == []

    # 2. role drift: the member's cc edited by hand to clusterRole none
    lab.custom("member").patch_namespaced_custom_object(
        "installer.kubesphere.io", "v1alpha1", "kubesphere-system", "clusterconfigurations", "ks-installer",
        {"spec": {"multicluster": {"clusterRole": "none"}}})
    drift = finding(status(lab), "role-drift")
    assert drift["subject"] == "cluster member" and "'none'" in drift["message"]
    assert "refresh" in drift["fix"] and "make up" in drift["fix"]
    lab.custom("member").patch_namespaced_custom_object(
        "installer.kubesphere.io", "v1alpha1", "kubesphere-system", "clusterconfigurations", "ks-installer",
        {"spec": {"multicluster": {"clusterRole": "member"}}})
    assert quiet(lab, seconds=60)["findings"] == []  # once the played installer has run again

    # 3. an insecure join: the host's KubeFedCluster skips TLS verification
    custom = lab.custom("host")
    fed = custom.get_namespaced_custom_object("core.kubefed.io", "v1beta1", "kube-federation-system",
                                              "kubefedclusters", "member")
    fed["spec"]["disabledTLSValidations"] = ["*"]
    custom.replace_namespaced_custom_object("core.kubefed.io", "v1beta1", "kube-federation-system",
                                            "kubefedclusters", "member", fed)
    insecure = finding(status(lab), "insecure-join")
    assert "certificate-authority-data" in insecure["fix"]
    fed = custom.get_namespaced_custom_object("core.kubefed.io", "v1beta1", "kube-federation-system",
                                              "kubefedclusters", "member")
    fed["spec"].pop("disabledTLSValidations")
    custom.replace_namespaced_custom_object("core.kubefed.io", "v1beta1", "kube-federation-system",
                                            "kubefedclusters", "member", fed)

    # 4. the member goes down: unreachable, with the cache-sync warning; drawn failed
    lab.clusters["member"].stop_apiserver()
    down = eventually(lab, "member-unreachable")
    assert "cluster-unreachable" in kinds(down)
    away = finding(down, "member-unreachable")
    assert "cache sync" in away["message"] and "KSLAB_FORCE_UNJOIN=1" in away["fix"]
    deadline = time.monotonic() + 20  # the played KubeFed health check marks it Offline within its period
    while not down["joins"][0]["kubefedOffline"] and time.monotonic() < deadline:
        time.sleep(1)
        down = status(lab)
    assert down["joins"][0]["kubefedOffline"] is True, down["joins"]
    out = _run(lab, "graph", "--out-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    nodes, edges = svg_states(tmp_path / f"{lab.stack}.svg")
    failed = graph_mod.STATE_COLOURS["failed"]
    assert nodes["member"] == failed.fill and nodes["host"] == ready.fill and edges["member-to-host"] == failed.line

    # 5. the Cluster deleted while the member is away: v3.4.1's webhook refuses the update that would drop the
    #    finalizer (it must reach the member), so the Cluster hangs in deletion
    custom.delete_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", "member")
    stuck = eventually(lab, "cluster-stuck-deleting", seconds=90)  # deleting for 30 s is stuck
    hold = finding(stuck, "cluster-stuck-deleting")
    assert "finalizer.cluster.kubesphere.io" in hold["message"] and "KSLAB_FORCE_UNJOIN=1" in hold["fix"]
    lab.clusters["member"].start_apiserver()
    deadline = time.monotonic() + 60
    while "cluster-stuck-deleting" in kinds(status(lab)) and time.monotonic() < deadline:
        time.sleep(1)
    assert "cluster-stuck-deleting" not in kinds(status(lab))
    destroyed = lab.destroy()
    assert destroyed.returncode == 0, destroyed.stdout[-3000:]


@pytest.mark.parametrize("live", ["live-dual-host"], indirect=True)
def test_status_finds_users_that_two_hosts_fight_over_on_their_member(live, tmp_path):
    lab = live
    up = lab.up()
    assert up.returncode == 0, up.stdout[-3000:]
    # Each host installs its own admin (its password hashed with its own salt) and federates it to the member, so
    # even an untouched dual-host lab has admin fought over: reported as the built-in it is, never to be deleted.
    calm = eventually(lab, "churn", "--sample-seconds", "4")
    assert {(f["kind"], f["subject"]) for f in calm["findings"]} == {("federated-clash", "member member"),
                                                                      ("churn", "member member")}, calm["findings"]
    admin = finding(calm, "federated-clash")
    assert "built-in users 'admin'" in admin["message"] and "do not delete it" in admin["fix"]
    assert [o["name"] for o in calm["churning"]] == ["admin"] and calm["sampleSeconds"] == 4

    for host, email in (("host", "dev@host.example"), ("host2", "dev@host2.example")):
        lab.custom(host).create_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "users", {
            "apiVersion": "iam.kubesphere.io/v1alpha2", "kind": "User", "metadata": {"name": "dev"},
            "spec": {"email": email}})
    deadline = time.monotonic() + 60
    while True:  # until KubeFed has propagated dev from both hosts
        doc = status(lab, "--sample-seconds", "4")
        if "dev" in [o["name"] for o in doc["churning"]] or time.monotonic() > deadline:
            break
    (clash,) = [f for f in doc["findings"] if f["kind"] == "federated-clash" and "'dev'" in f["message"]]
    assert clash["subject"] == "member member" and "host, host2" in clash["message"]
    assert "delete it on host2" in clash["fix"] and "users.iam.kubesphere.io dev" in clash["fix"]
    assert {o["name"]: o["changes"] >= 2 for o in doc["churning"]} == {"admin": True, "dev": True}
    proc = _run(lab, "status", "--sample-seconds", "0")
    assert proc.returncode == 1 and "[federated-clash]" in proc.stdout and "[churn]" not in proc.stdout

    # one host gives the user up (the fix the finding prints): the churn stops
    lab.custom("host2").delete_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "users", "dev")
    deadline = time.monotonic() + 30
    while True:
        settled = status(lab, "--sample-seconds", "3")
        if "'dev'" not in json.dumps(settled["findings"]) or time.monotonic() > deadline:
            break
    assert [o["name"] for o in settled["churning"]] == ["admin"] and "'dev'" not in json.dumps(settled["findings"]), (
        settled["findings"], lab.operator.lines[-15:],
        [u["metadata"]["name"] for u in lab.custom("host2").list_cluster_custom_object(
            "iam.kubesphere.io", "v1alpha2", "users")["items"]],
        [u["metadata"]["name"] for u in lab.custom("host2").list_cluster_custom_object(
            "types.kubefed.io", "v1beta1", "federatedusers")["items"]])
    destroyed = lab.destroy()
    assert destroyed.returncode == 0, destroyed.stdout[-3000:]
