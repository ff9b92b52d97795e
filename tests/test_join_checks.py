"""The console's checks before an import, per release (kubesphere@<tag>:pkg/kapis/cluster/v1alpha1/handler.go),
and the kubeconfigs of existing clusters made self-contained or refused before anything is registered."""
import base64

import pytest
import yaml

from components.config import load_lab
from kslab.model import kubeconfig as kc
from kslab.model.spec import LabConfigError
from kslab.steps import join_steps
from tests.support.mock_run import fake_kubeconfig
from tests.support.stack_config import FakeConfig


class FakeCluster:
    def __init__(self, uid="uid-m", role_in_config="member", cc_role="member", jwt="j" * 32, ks_up=True,
                 clusters=()):
        self.uid, self.ks_up, self.clusters = uid, ks_up, list(clusters)
        self.config = {"authentication": {"jwtSecret": jwt}}
        if role_in_config:
            self.config["multicluster"] = {"clusterRole": role_in_config}
        self.cc = {"spec": {"multicluster": {"clusterRole": cc_role}}}

    def kube_system_uid(self):
        return self.uid

    def member_clusters(self):
        return self.clusters

    def ks_apiserver_version(self):
        return (True, "v3.4.1") if self.ks_up else (False, "503 Service Unavailable")

    def kubesphere_config(self):
        return self.config

    def kubesphere_jwt_secret(self):
        return self.config["authentication"]["jwtSecret"]

    def cluster_configuration(self):
        return self.cc


def checks(version, member, host=None, server="https://172.18.0.3:6443"):
    return join_steps._console_checks(host or FakeCluster(uid="uid-h"), member, "member", "host", server, version)


@pytest.mark.parametrize("version", ["v3.2.1", "v3.4.1"])
def test_a_good_member_passes(version):
    assert checks(version, FakeCluster(role_in_config="member" if version == "v3.4.1" else None)) == []


def test_v3_4_refuses_a_cluster_imported_twice_by_kube_system_uid():
    host = FakeCluster(uid="uid-h", clusters=[{"metadata": {"name": "other"}, "status": {"uid": "uid-m"}},
                                              {"metadata": {"name": "member"}, "status": {"uid": "uid-m"}}])
    found = checks("v3.4.1", FakeCluster(), host)
    assert len(found) == 1 and "already imported on host 'host' as 'other'" in found[0]


def test_v3_2_refuses_a_cluster_imported_twice_by_server_address():
    host = FakeCluster(clusters=[{"metadata": {"name": "other"},
                                  "spec": {"connection": {"kubernetesAPIEndpoint": "https://172.18.0.3:6443"}}}])
    found = checks("v3.2.1", FakeCluster(role_in_config=None), host)
    assert len(found) == 1 and "same server address" in found[0]
    assert checks("v3.4.1", FakeCluster(), host) == [], "v3.4.1 compares UIDs, not addresses"


@pytest.mark.parametrize("version", ["v3.2.1", "v3.4.1"])
def test_a_member_whose_ks_apiserver_does_not_answer_is_refused(version):
    found = checks(version, FakeCluster(ks_up=False))
    assert any("ks-apiserver does not answer /kapis/version" in p and "503" in p for p in found)


def test_v3_4_reads_the_role_from_the_members_kubesphere_config():
    found = checks("v3.4.1", FakeCluster(role_in_config="none", cc_role="member"))
    assert len(found) == 1 and "multicluster.clusterRole 'none' in its kubesphere-config" in found[0]


def test_v3_2_has_no_console_role_check_so_kslab_checks_the_cc():
    assert checks("v3.2.1", FakeCluster(role_in_config=None, cc_role="member")) == []
    found = checks("v3.2.1", FakeCluster(role_in_config=None, cc_role="none"))
    assert len(found) == 1 and "in its cc" in found[0] and "kslab's check" in found[0]


def test_jwt_mismatch_never_shows_the_secrets():
    found = checks("v3.4.1", FakeCluster(jwt="member-secret-value"), FakeCluster(uid="h", jwt="host-secret-value"))
    assert any("jwtSecret differs" in p for p in found)
    assert not any("secret-value" in p for p in found)


# --- kubeconfigs of existing clusters --------------------------------------------------------------

def with_files(tmp_path, relative=True):
    (tmp_path / "pki").mkdir()
    for name, data in (("ca.crt", b"CA"), ("admin.crt", b"CERT"), ("admin.key", b"KEY"), ("token", b"tok\n")):
        (tmp_path / "pki" / name).write_bytes(data)
    base = "pki" if relative else str(tmp_path / "pki")
    doc = yaml.safe_load(fake_kubeconfig("m", "https://10.0.0.5:6443"))
    cluster = doc["clusters"][0]["cluster"]
    del cluster["certificate-authority-data"]
    cluster["certificate-authority"] = f"{base}/ca.crt"
    doc["users"][0]["user"] = {"client-certificate": f"{base}/admin.crt", "client-key": f"{base}/admin.key"}
    return yaml.safe_dump(doc)


def read(path):
    with open(path, "rb") as fh:
        return fh.read()


def test_file_credentials_are_inlined_relative_to_the_kubeconfig(tmp_path):
    flat = yaml.safe_load(kc.flatten(with_files(tmp_path), str(tmp_path), read, joinable=True))
    cluster, user = flat["clusters"][0]["cluster"], flat["users"][0]["user"]
    assert base64.b64decode(cluster["certificate-authority-data"]) == b"CA" and "certificate-authority" not in cluster
    assert base64.b64decode(user["client-certificate-data"]) == b"CERT"
    assert base64.b64decode(user["client-key-data"]) == b"KEY" and "client-key" not in user


def test_an_exec_user_of_a_joined_member_is_refused_but_not_of_a_host():
    doc = yaml.safe_load(fake_kubeconfig("m", "https://10.0.0.5:6443"))
    doc["users"][0]["user"] = {"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}}
    text = yaml.safe_dump(doc)
    with pytest.raises(kc.KubeconfigError, match="`exec`"):
        kc.flatten(text, None, read, joinable=True)
    assert kc.flatten(text, None, read, joinable=False) == text


def test_every_kubeconfig_problem_of_every_cluster_is_reported_together(tmp_path):
    (tmp_path / "missing-files.kubeconfig").write_text(with_files(tmp_path)
                                                       .replace("pki/", "gone/"))
    doc = yaml.safe_load(fake_kubeconfig("h", "https://10.0.0.6:6443"))
    doc["users"][0]["user"] = {"auth-provider": {"name": "gcp"}}
    (tmp_path / "auth-provider.kubeconfig").write_text(yaml.safe_dump(doc))
    settings = {"clusters": [
        {"name": "host", "role": "host", "backend": "existing", "kubernetesVersion": "v1.26.13",
         "kubeconfigPath": "missing-files.kubeconfig"},
        {"name": "member", "role": "member", "backend": "existing", "kubernetesVersion": "v1.26.13",
         "kubeconfigPath": "auth-provider.kubeconfig"}], "joins": [{"member": "member", "host": "host"}]}
    with pytest.raises(LabConfigError) as err:
        load_lab(FakeConfig(settings), str(tmp_path), None)
    fields = [p.field for p in err.value.problems]
    assert fields == ["kslab:clusters[host].kubeconfigPath", "kslab:clusters[member].kubeconfigPath"]
    text = str(err.value)
    assert "gone/ca.crt" in text and "cannot be read" in text and "`auth-provider`" in text
    assert "kubectl config view --flatten --raw" in text
