"""Renderers: kind config, installer objects, ClusterConfiguration, Cluster object, kubeconfigs."""
import base64

import pytest
import yaml

from kslab.model import images
from kslab.model import kubeconfig as kc
from kslab.model.spec import parse_lab
from kslab.render import manifests as render
from tests.support.mock_run import fake_kubeconfig


def lab(**overrides):
    cluster = {"name": "host", "role": "host", "nodeImage": "kindest/node:v1.25.16", "consoleHostPort": 30885,
               "podSubnet": "10.250.0.0/16", "serviceSubnet": "10.251.0.0/16"}
    cluster.update(overrides)
    return parse_lab({"clusters": [cluster]})


def test_kind_config_maps_console_and_subnets():
    doc = yaml.safe_load(render.kind_config_yaml(lab().clusters[0]))
    assert doc["apiVersion"] == "kind.x-k8s.io/v1alpha4" and doc["name"] == "host"
    node = doc["nodes"][0]
    assert node["role"] == "control-plane" and node["image"] == "kindest/node:v1.25.16"
    assert node["extraPortMappings"] == [{"containerPort": 30880, "hostPort": 30885, "protocol": "TCP"}]
    assert doc["networking"] == {"podSubnet": "10.250.0.0/16", "serviceSubnet": "10.251.0.0/16"}


def test_kind_config_without_subnets_has_no_networking():
    c = parse_lab({"clusters": [{"name": "a"}]}).clusters[0]
    assert "networking" not in render.kind_config(c)


@pytest.mark.parametrize("version,label", [("v3.2.1", "ks-install"), ("v3.4.1", "ks-installer")])
def test_installer_objects_follow_version(version, label):
    objs = render.installer_objects(version)
    assert [o["kind"] for o in objs] == ["CustomResourceDefinition", "Namespace", "ServiceAccount",
                                         "ClusterRole", "ClusterRoleBinding", "Deployment"]
    crd = objs[0]
    assert crd["metadata"]["name"] == "clusterconfigurations.installer.kubesphere.io"
    assert crd["spec"]["names"]["shortNames"] == ["cc"] and crd["spec"]["scope"] == "Namespaced"
    assert "subresources" not in crd["spec"]["versions"][0], "upstream's cc CRD has no status subresource"
    deploy = objs[-1]
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"kubesphere/ks-installer:{version}"
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert deploy["spec"]["selector"]["matchLabels"] == {"app": label}


# kubesphere/ks-installer@<tag>:deploy/kubesphere-installer.yaml: one rule per group, in this order
# (the first and last few groups, and the count).
@pytest.mark.parametrize("version,count,edge,last", [
    ("v3.2.1", 34, "kubeedge.kubesphere.io", "application.kubesphere.io"),
    ("v3.4.1", 35, "edgeruntime.kubesphere.io", "alerting.kubesphere.io"),
])
def test_installer_cluster_role_matches_upstream(version, count, edge, last):
    rules = render.installer_objects(version)[3]["rules"]
    groups = [r["apiGroups"] for r in rules]
    assert all(len(g) == 1 for g in groups) and len(groups) == count
    flat = [g[0] for g in groups]
    assert flat[:4] == ["", "apps", "extensions", "batch"] and flat[-1] == last
    assert flat[30] == edge and "cluster.kubesphere.io" not in flat
    assert all(r["resources"] == ["*"] and r["verbs"] == ["*"] for r in rules)


def test_registry_override():
    objs = render.installer_objects("v3.4.1", images.Naming("registry.local:5000"))
    image = objs[-1]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "registry.local:5000/kubesphere/ks-installer:v3.4.1"
    cc = render.cluster_configuration(lab().clusters[0], "", images.Naming("registry.local:5000"))
    assert cc["spec"]["local_registry"] == "registry.local:5000"


def test_cluster_configuration_role_components_jwt():
    c = lab(components={"devops": True}, hostClusterName="east").clusters[0]
    cc = render.cluster_configuration(c, "s3cret", jwt_source="shared")
    meta = cc["metadata"]
    assert (meta["name"], meta["namespace"]) == ("ks-installer", "kubesphere-system")
    assert meta["labels"]["version"] == "v3.4.1" and meta["labels"]["kslab.io/cluster"] == "host"
    assert meta["annotations"] == {"kslab.io/kubernetes-version": "v1.25.16", "kslab.io/jwt-secret-source": "shared"}
    spec = cc["spec"]
    assert spec["multicluster"] == {"clusterRole": "host", "hostClusterName": "east"}
    assert spec["authentication"]["jwtSecret"] == "s3cret"
    assert spec["devops"]["enabled"] is True and spec["logging"]["enabled"] is False
    assert spec["common"]["core"]["console"]["port"] == 30880
    assert "edgeruntime" in spec


def test_member_has_no_host_cluster_name_and_32_uses_kubeedge():
    c = parse_lab({"clusters": [{"name": "m", "role": "member", "kubesphereVersion": "v3.2.1",
                                 "nodeImage": "kindest/node:v1.19.16"}]}).clusters[0]
    spec = render.cluster_configuration(c, "")["spec"]
    assert spec["multicluster"] == {"clusterRole": "member"} and "kubeedge" in spec


def test_member_cluster_object():
    text = fake_kubeconfig("member", "https://172.18.0.3:6443")
    obj = render.member_cluster_object("member", "host", render.b64(text), "kind")
    assert obj["apiVersion"] == "cluster.kubesphere.io/v1alpha1" and obj["kind"] == "Cluster"
    assert obj["metadata"]["name"] == "member"
    assert obj["metadata"]["labels"]["kslab.io/host"] == "host"
    assert "kslab.io/allow-multiple-hosts" not in obj["metadata"]["annotations"]
    opted = render.member_cluster_object("m", "h", "", "kind", allow_multiple_hosts=True, loopback_reason="why")
    assert opted["metadata"]["annotations"]["kslab.io/allow-multiple-hosts"] == "true"
    assert opted["metadata"]["annotations"]["kslab.io/loopback-join-reason"] == "why"
    spec = obj["spec"]
    assert spec["joinFederation"] is True and spec["enable"] is True and spec["provider"] == "kind"
    assert spec["connection"]["type"] == "direct"
    assert base64.b64decode(spec["connection"]["kubeconfig"]).decode() == text


def test_rewrite_server_and_rename():
    text = fake_kubeconfig("member", "https://127.0.0.1:40123")
    out = kc.rewrite_server(text, "https://172.18.0.3:6443")
    assert kc.server_of(out) == "https://172.18.0.3:6443"
    doc = yaml.safe_load(out)
    assert doc["users"] == yaml.safe_load(text)["users"]  # credentials untouched
    assert yaml.safe_load(kc.rename_context(text, "kind-x"))["current-context"] == "kind-x"


def test_join_problems():
    good = fake_kubeconfig("m", "https://172.18.0.3:6443")
    assert kc.join_problems(good) == []
    loop = fake_kubeconfig("m", "https://127.0.0.1:6443")
    assert any("loopback" in p for p in kc.join_problems(loop))
    assert kc.join_problems(loop, allow_loopback=True) == []
    assert any("loopback" in p for p in kc.join_problems(fake_kubeconfig("m", "https://localhost:6443")))
    doc = yaml.safe_load(good)
    doc["clusters"][0]["cluster"] = {"server": "https://172.18.0.3:6443", "insecure-skip-tls-verify": True}
    found = kc.join_problems(yaml.safe_dump(doc))
    assert any("insecure-skip-tls-verify" in p and "4891" in p for p in found)
    assert kc.join_problems("not: [yaml") != []


def test_jwt_from_kubesphere_yaml():
    assert render.jwt_secret_from_kubesphere_yaml("authentication:\n  jwtSecret: abc\n") == "abc"
    assert render.jwt_secret_from_kubesphere_yaml("authentication: {}\n") is None


def test_condition_state():
    assert render.condition_state(None) == (False, "no conditions yet")
    ready, summary = render.condition_state([{"type": "Ready", "status": "False", "message": "member down"}])
    assert not ready and "member down" in summary
    assert render.condition_state([{"type": "Ready", "status": "True"}])[0]


