"""Live checks of the etcd + kube-apiserver harness.

These never skip: missing binaries are a failure (build them with tools/kube/build.sh).
Run: python -m pytest -m live tests/harness
"""

import base64
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.harness.live_cluster import LiveCluster, LiveClusterError, _alive, find_bin_dir, kill_recorded

pytestmark = pytest.mark.live

GROUP = "harness.kslab.test"

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"widgets.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
        "versions": [
            {
                "name": "v1alpha1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    # Raises LiveClusterError (a test error, not a skip) when the binaries are not built.
    return find_bin_dir()


def _ok(resp, *codes):
    status, body = resp
    assert status in (codes or (200, 201)), f"HTTP {status}: {body}"
    return body


def _start_all(clusters):
    errors = []

    def run(c):
        try:
            c.start()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(c,)) for c in clusters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for c in clusters:
            c.stop()
        raise errors[0]


def _exercise(c: LiveCluster, size: int) -> None:
    version = _ok(c.request("GET", "/version"))
    assert version["gitVersion"].startswith("v1.26."), version
    assert (version["major"], version["minor"]) == ("1", "26"), version

    _ok(c.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD))
    deadline = time.monotonic() + 30
    while True:
        crd = _ok(c.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{GROUP}"))
        conds = {x["type"]: x["status"] for x in (crd.get("status") or {}).get("conditions") or []}
        if conds.get("Established") == "True":
            break
        assert time.monotonic() < deadline, f"CRD not established: {crd.get('status')}"
        time.sleep(0.2)

    widgets = f"/apis/{GROUP}/v1alpha1/namespaces/default/widgets"
    # a freshly established CRD can answer 404 for a moment while discovery catches up
    deadline = time.monotonic() + 30
    while True:
        status, body = c.request(
            "POST", widgets, {"apiVersion": f"{GROUP}/v1alpha1", "kind": "Widget",
                              "metadata": {"name": "w1"}, "spec": {"size": size}}
        )
        if status == 201:
            break
        assert status == 404 and time.monotonic() < deadline, f"HTTP {status}: {body}"
        time.sleep(0.2)
    current = _ok(c.request("GET", widgets + "/w1"))
    _ok(c.request("PUT", widgets + "/w1/status", {**current, "status": {"phase": "Ready"}}))
    w = _ok(c.request("GET", widgets + "/w1"))
    assert w["spec"] == {"size": size} and w["status"] == {"phase": "Ready"}, w

    cms = "/api/v1/namespaces/kube-system/configmaps"
    _ok(c.request("POST", cms, {"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": "kslab-probe"}, "data": {"cluster": c.name}}))
    assert _ok(c.request("GET", cms + "/kslab-probe"))["data"] == {"cluster": c.name}


def _check_kubeconfig(c: LiveCluster) -> None:
    cfg = yaml.safe_load(c.kubeconfig_path.read_text())
    assert cfg["current-context"] == f"kslab-{c.name}"
    cluster = cfg["clusters"][0]["cluster"]
    assert cluster["server"] == c.server == f"https://{c.address}:{c.port}"
    assert "insecure-skip-tls-verify" not in cluster
    assert base64.b64decode(cluster["certificate-authority-data"]) == c.ca_cert_path.read_bytes()
    user = cfg["users"][0]["user"]
    assert user["client-certificate-data"] and user["client-key-data"]

    kubectl = c.bin_dir / "kubectl"
    if kubectl.exists():  # optional binary: when built, the kubeconfig must work for a real client
        out = subprocess.run(
            [str(kubectl), "--kubeconfig", str(c.kubeconfig_path), "get", "configmap", "kslab-probe",
             "-n", "kube-system", "-o", "jsonpath={.data.cluster}"],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0 and out.stdout == c.name, out.stderr
        out = subprocess.run([str(kubectl), "--kubeconfig", str(c.kubeconfig_path), "auth", "can-i", "*", "*"],
                             capture_output=True, text=True, timeout=60)
        assert out.stdout.strip() == "yes", (out.stdout, out.stderr)


def test_two_clusters_serve_objects_and_stop_cleanly(bin_dir, tmp_path):
    a = LiveCluster("alpha", tmp_path / "alpha", bin_dir)
    b = LiveCluster("beta", tmp_path / "beta", bin_dir, address="127.0.0.2")
    try:
        _start_all([a, b])
        assert a.server != b.server
        all_pids = list(a.pids.values()) + list(b.pids.values())
        assert len(all_pids) == 4 and len(set(all_pids)) == 4
        for c in (a, b):
            assert (c.workdir / "pids").read_text().count("\n") == 2
        _exercise(a, 1)
        _exercise(b, 2)
        for c in (a, b):
            _check_kubeconfig(c)
        # the two clusters are separate stores
        assert _ok(a.request("GET", f"/apis/{GROUP}/v1alpha1/namespaces/default/widgets/w1"))["spec"]["size"] == 1
        assert _ok(b.request("GET", f"/apis/{GROUP}/v1alpha1/namespaces/default/widgets/w1"))["spec"]["size"] == 2
        # no controllers run: without ServiceAccount admission a bare Pod is still accepted and stored
        _ok(a.request("POST", "/api/v1/namespaces/default/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}))
    finally:
        a.stop()
        b.stop()
    for pid in all_pids:
        assert not _alive(pid), f"process {pid} still running after stop()"
    assert a.pids == {} and b.pids == {}
    assert not (a.workdir / "pids").exists() and not (b.workdir / "pids").exists()


def test_apiserver_stop_and_restart_on_same_port(bin_dir, tmp_path):
    with LiveCluster("gamma", tmp_path / "gamma", bin_dir) as c:
        server, etcd_pid = c.server, c.pids["etcd"]
        _ok(c.request("POST", "/api/v1/namespaces/default/configmaps",
                      {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}, "data": {"k": "v"}}))
        old_pid = c.pids["kube-apiserver"]
        c.stop_apiserver()
        assert not _alive(old_pid) and set(c.pids) == {"etcd"}
        assert "kube-apiserver" not in (c.workdir / "pids").read_text()
        with pytest.raises(OSError):  # unreachable: connection refused
            c.request("GET", "/version", timeout=5)
        c.start_apiserver()
        assert c.server == server and c.pids["etcd"] == etcd_pid
        assert c.pids["kube-apiserver"] != old_pid
        assert _ok(c.request("GET", "/api/v1/namespaces/default/configmaps/keep"))["data"] == {"k": "v"}
    assert c.pids == {}


def test_kill_recorded_cleans_up_after_a_lost_harness(bin_dir, tmp_path):
    c = LiveCluster("delta", tmp_path / "delta", bin_dir).start()
    pids = list(c.detach().values())  # as if the test process had died without stop()
    assert len(pids) == 2 and all(_alive(p) for p in pids)
    stopped = kill_recorded(c.workdir)
    assert len(stopped) == 2
    for pid in pids:
        assert not _alive(pid)
        assert not Path(f"/proc/{pid}").exists(), f"{pid} left as a zombie"  # our child: reaped
    assert not (c.workdir / "pids").exists()


def test_find_bin_dir_reports_missing_binaries(tmp_path, monkeypatch):
    monkeypatch.setenv("KSLAB_KUBE_BIN_DIR", str(tmp_path))
    with pytest.raises(LiveClusterError, match="lacks executable"):
        find_bin_dir()
