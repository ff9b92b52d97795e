"""A developer workspace on a live lab (README "Develop KubeSphere against the lab"): ks-controller-manager
taken over for local development and given back exactly as it was. The objects it takes over are the ones
the fixture creates as the ks-core chart does (tests/harness/ks_operators.py, _ensure_ks_core_workloads)."""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import stat

import pytest
import yaml
from kubernetes import client

from kslab.render import devworkspace
from tests.support.live import LiveLab

pytestmark = [pytest.mark.engine, pytest.mark.live]
NS = devworkspace.NAMESPACE
KCM = "ks-controller-manager"


@pytest.fixture
def lab(tmp_path):
    live = LiveLab(tmp_path, "live-standalone")
    yield live
    live.close()


def _out(proc):
    return proc.stdout + proc.stderr


def _ok(proc, what):
    assert proc.returncode == 0, f"{what} failed:\n{_out(proc)[-6000:]}"


def _objects(lab):
    api = lab.api("lab")
    dep = client.AppsV1Api(api).read_namespaced_deployment(KCM, NS)
    svc = client.CoreV1Api(api).read_namespaced_service(KCM, NS)
    try:
        subsets = api.sanitize_for_serialization(client.CoreV1Api(api).read_namespaced_endpoints(KCM, NS).subsets)
    except client.exceptions.ApiException as exc:
        assert exc.status == 404
        subsets = None
    return dep, svc, subsets


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_workspace_takes_ks_controller_manager_over_and_gives_it_back(lab):
    _ok(lab.up(), "up")
    dep, svc, subsets = _objects(lab)
    before = (dep.spec.replicas, svc.spec.selector, subsets)
    assert before[0] == 1 and before[1] == {"app": KCM, "tier": "backend"}

    lab.set_config("kslab:devWorkspaces", [{"cluster": "lab", "component": KCM, "dir": "dev/kcm"}])
    took = lab.up()
    _ok(took, "up with the workspace")
    ws = os.path.join(lab.project.dir, "dev", "kcm")

    # the cluster: Deployment at 0, Service pointing at this machine's reachable address, both remembering
    dep, svc, subsets = _objects(lab)
    assert dep.spec.replicas == 0
    assert dep.metadata.annotations[devworkspace.SAVED_REPLICAS_ANNOTATION] == "1"
    assert not svc.spec.selector
    assert json.loads(svc.metadata.annotations[devworkspace.SAVED_SERVICE_ANNOTATION]) == {
        "selector": {"app": KCM, "tier": "backend"}, "subsets": []}
    [subset] = subsets
    address = subset["addresses"][0]["ip"]
    assert not ipaddress.ip_address(address).is_loopback and subset["ports"][0]["port"] == 8443

    # the files: exact contents, keys 0600, folder 0700
    core = client.CoreV1Api(lab.api("lab"))
    config_yaml = core.read_namespaced_config_map("kubesphere-config", NS).data["kubesphere.yaml"]
    cert = {k: base64.b64decode(v).decode()
            for k, v in core.read_namespaced_secret("ks-controller-manager-webhook-cert", NS).data.items()}
    assert _mode(ws) == 0o700
    with open(os.path.join(ws, "kubesphere.yaml")) as fh:
        assert fh.read() == config_yaml
    for key in ("ca.crt", "tls.crt", "tls.key"):
        path = os.path.join(ws, "serving-certs", key)
        with open(path) as fh:
            assert fh.read() == cert[key]
        assert _mode(path) == 0o600
    assert _mode(os.path.join(ws, "kubesphere.yaml")) == 0o600 and _mode(os.path.join(ws, "kubeconfig")) == 0o600
    with open(os.path.join(ws, "kubeconfig")) as fh:
        assert yaml.safe_load(fh)["clusters"][0]["cluster"]["server"] == lab.clusters["lab"].server
    with open(os.path.join(ws, "launch.json")) as fh:
        launch = json.load(fh)["configurations"][0]
    assert launch["cwd"] == ws and launch["program"] == "${workspaceFolder}/cmd/controller-manager"
    assert launch["args"] == ["--logtostderr=true", "--leader-elect=false", "--webhook-cert-dir=serving-certs",
                              "--kubeconfig=kubeconfig"]
    assert os.access(os.path.join(ws, "run.sh"), os.X_OK)
    # the key material is on disk only
    state = lab.state_text()
    assert cert["tls.key"].splitlines()[1] not in state and cert["tls.key"].splitlines()[1] not in _out(took)
    outputs = json.loads(lab.pulumi("stack", "output", "--json", check=True).stdout)
    assert json.loads(outputs["devWorkspaces"]["lab-ks-controller-manager-dev"]["takeover"]) == {
        "dir": ws, "savedReplicas": 1, "address": f"{address}:8443"}

    # a second up changes nothing
    again = lab.up("--expect-no-changes")
    _ok(again, "second up")
    assert "[kslab]" not in _out(again)

    # the folder deleted by hand, then the workspace removed from config: the cluster is given back
    shutil.rmtree(ws)
    lab.set_config("kslab:devWorkspaces", [])
    gave = lab.up()
    _ok(gave, "up without the workspace")
    assert "ks-controller-manager on 'lab' given back (1 replica(s))" in _out(gave)
    dep, svc, subsets = _objects(lab)
    assert (dep.spec.replicas, svc.spec.selector, subsets) == before
    assert devworkspace.SAVED_REPLICAS_ANNOTATION not in (dep.metadata.annotations or {})
    assert devworkspace.SAVED_SERVICE_ANNOTATION not in (svc.metadata.annotations or {})


def test_ks_apiserver_is_given_back_with_its_endpoints_and_destroy_gives_back_too(lab):
    _ok(lab.up(), "up")
    api = lab.api("lab")
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)

    def endpoints():
        return api.sanitize_for_serialization(core.read_namespaced_endpoints("ks-apiserver", NS).subsets)
    before = endpoints()  # the fixture's selector-less Service and its Pod-backed endpoint
    workspace = [{"cluster": "lab", "component": "ks-apiserver", "dir": "dev/api", "keepFiles": True}]
    lab.set_config("kslab:devWorkspaces", workspace)
    _ok(lab.up(), "up with the workspace")
    ws = os.path.join(lab.project.dir, "dev", "api")
    assert apps.read_namespaced_deployment("ks-apiserver", NS).spec.replicas == 0
    assert endpoints()[0]["ports"][0]["port"] == 9090 and endpoints() != before
    assert sorted(os.listdir(ws)) == [".kslab-workspace", "kubeconfig", "kubesphere.yaml", "launch.json", "run.sh"]

    lab.set_config("kslab:devWorkspaces", [])
    _ok(lab.up(), "up without the workspace")
    assert endpoints() == before and apps.read_namespaced_deployment("ks-apiserver", NS).spec.replicas == 1
    assert os.path.isdir(ws), "keepFiles: true keeps the folder"

    lab.set_config("kslab:devWorkspaces", workspace)
    _ok(lab.up(), "up with the workspace again")
    gone = lab.destroy()
    _ok(gone, "destroy")
    assert "ks-apiserver on 'lab' given back (1 replica(s))" in _out(gone)


def test_a_workspace_never_writes_into_or_removes_a_folder_of_yours(lab):
    _ok(lab.up(), "up")
    mine = os.path.join(lab.project.dir, "dev", "mine")
    os.makedirs(mine)
    with open(os.path.join(mine, "notes.txt"), "w") as fh:
        fh.write("my notes")
    lab.set_config("kslab:devWorkspaces", [{"cluster": "lab", "component": KCM, "dir": "dev/mine"}])
    refused = lab.up()
    assert refused.returncode != 0 and "already holds files kslab did not write" in _out(refused)
    dep, svc, _ = _objects(lab)
    assert dep.spec.replicas == 1 and svc.spec.selector, "nothing was taken over"
    assert os.listdir(mine) == ["notes.txt"]
