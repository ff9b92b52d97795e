"""The image plan against ks-installer at the tags (roles/download/defaults/main.yml and the roles that deploy
each image), and ks-installer's naming rules. One invariant per test."""
import pytest

from kslab.model import images
from kslab.model.images import Naming, kubectl_tag, plan
from kslab.model.spec import LabConfigError, parse_lab
from kslab.render import manifests as render

K8S = {"v3.2.1": "v1.19.16", "v3.4.1": "v1.25.16"}

# kubesphere/ks-installer@v3.4.1:roles/download/defaults/main.yml, read by hand for a host on Kubernetes 1.25.
V341_HOST = [
    "kubesphere/ks-installer:v3.4.1", "kubesphere/ks-apiserver:v3.4.1", "kubesphere/ks-console:v3.4.1",
    "kubesphere/ks-controller-manager:v3.4.1", "kubesphere/kubectl:v1.22.0",
    "mirrorgooglecontainers/defaultbackend-amd64:1.4", "csiplugin/snapshot-controller:v4.0.0",
    "kubesphere/prometheus-operator:v0.55.1", "kubesphere/prometheus-config-reloader:v0.55.1",
    "kubesphere/kube-rbac-proxy:v0.11.0", "prom/prometheus:v2.39.1", "prom/node-exporter:v1.3.1",
    "kubesphere/kube-state-metrics:v2.6.0", "prom/alertmanager:v0.23.0",
    "kubesphere/notification-manager-operator:v2.3.0", "kubesphere/notification-manager:v2.3.0",
    "kubesphere/notification-tenant-sidecar:v3.2.0", "kubesphere/kubefed:v0.8.1", "kubesphere/tower:v0.2.1",
]


def refs(release, role, k8s=None, naming=None):
    return [image.ref for image in plan(release, role, k8s or K8S[release], naming or Naming())]


@pytest.mark.parametrize("release", ["v3.2.1", "v3.4.1"])
@pytest.mark.parametrize("role,count", [("none", 17), ("member", 17), ("host", 19)])
def test_plan_counts_per_role(release, role, count):
    assert len(refs(release, role)) == count


def test_v341_host_plan_is_the_download_defaults():
    assert refs("v3.4.1", "host") == V341_HOST


def test_v321_tags_differ_where_the_release_does():
    got = set(refs("v3.2.1", "host"))
    assert {"kubesphere/tower:v0.2.0", "prom/prometheus:v2.26.0", "kubesphere/kube-rbac-proxy:v0.8.0",
            "kubesphere/notification-manager:v1.4.0", "kubesphere/ks-apiserver:v3.2.1"} <= got
    assert "kubesphere/tower:v0.2.1" not in got


def test_host_only_images():
    assert set(refs("v3.4.1", "host")) - set(refs("v3.4.1", "member")) == {"kubesphere/kubefed:v0.8.1",
                                                                            "kubesphere/tower:v0.2.1"}


@pytest.mark.parametrize("k8s,tag", [("v1.26.13", "v1.22.0"), ("v1.22.17", "v1.22.0"), ("v1.21.14", "v1.21.0"),
                                     ("v1.20.15", "v1.20.0"), ("v1.19.16", "v1.19.1"), ("v1.15.12", "v1.0.0"),
                                     ("v1.14.10", "v1.22.0")])
def test_kubectl_tag_follows_kubernetes(k8s, tag):
    assert kubectl_tag(k8s) == tag


def test_snapshot_controller_needs_kubernetes_1_17():
    assert "csiplugin/snapshot-controller:v4.0.0" not in refs("v3.2.1", "none", "v1.16.15")
    assert "csiplugin/snapshot-controller:v4.0.0" in refs("v3.2.1", "none", "v1.17.0")


def test_local_registry_keeps_each_default_namespace():
    got = refs("v3.4.1", "none", naming=Naming("harbor.corp"))
    assert "harbor.corp/kubesphere/ks-apiserver:v3.4.1" in got and "harbor.corp/prom/prometheus:v2.39.1" in got
    assert all(r.startswith("harbor.corp/") for r in got)


def test_namespace_override_puts_every_image_in_one_namespace():
    got = refs("v3.4.1", "none", naming=Naming("harbor.corp", "mirror"))
    assert {r.rsplit("/", 1)[0] for r in got} == {"harbor.corp/mirror"}


@pytest.mark.parametrize("naming", [Naming(zone="cn"), Naming(local_registry=images.ALIYUN_REGISTRY)])
def test_aliyun_maps_to_kubesphereio(naming):
    got = refs("v3.4.1", "none", naming=naming)
    assert {r.rsplit("/", 1)[0] for r in got} == {"registry.cn-beijing.aliyuncs.com/kubesphereio"}


def test_zone_cn_keeps_a_given_namespace_override():
    # The cc reaches the playbooks as extra vars (ks-installer env/cmdline), which outrank the set_fact.
    got = refs("v3.4.1", "none", naming=Naming(zone="cn", namespace_override="mine"))
    assert {r.rsplit("/", 1)[0] for r in got} == {"registry.cn-beijing.aliyuncs.com/mine"}


def test_installer_image_follows_the_rules():
    assert render.installer_image("v3.4.1", Naming(zone="cn")) == \
        "registry.cn-beijing.aliyuncs.com/kubesphereio/ks-installer:v3.4.1"
    assert render.installer_image("v3.2.1") == "kubesphere/ks-installer:v3.2.1"


def test_canonical_ref_names_docker_hub():
    assert images.canonical_ref("prom/prometheus:v2.39.1") == "docker.io/prom/prometheus:v2.39.1"
    assert images.canonical_ref("127.0.0.1:5000/prom/prometheus:v1") == "127.0.0.1:5000/prom/prometheus:v1"


def test_cc_carries_the_naming_inputs():
    c = parse_lab({"clusters": [{"name": "a"}], "zone": "cn", "namespaceOverride": "mine"}).clusters[0]
    spec = render.cluster_configuration(c, "", Naming(zone="cn", namespace_override="mine"))["spec"]
    assert (spec["local_registry"], spec["namespace_override"], spec["zone"]) == ("", "mine", "cn")


def test_cc_without_naming_inputs_is_unchanged():
    # An existing lab's cc gains no key, so its installer is not run again by the upgrade.
    c = parse_lab({"clusters": [{"name": "a"}]}).clusters[0]
    spec = render.cluster_configuration(c, "")["spec"]
    assert "namespace_override" not in spec and "zone" not in spec and spec["local_registry"] == ""


def test_lab_plan_uses_the_stack_naming():
    lab = parse_lab({"clusters": [{"name": "h", "role": "host"}], "registry": "reg.local:5000"})
    assert lab.images_of(lab.clusters[0])[0].ref == "reg.local:5000/kubesphere/ks-installer:v3.4.1"


@pytest.mark.parametrize("raw,field", [({"zone": "us"}, "kslab:zone"),
                                       ({"namespaceOverride": "Has/Slash"}, "kslab:namespaceOverride"),
                                       ({"clusters": [{"name": "a", "imageCheck": "maybe"}]},
                                        "kslab:clusters[0].imageCheck")])
def test_bad_naming_input_is_refused(raw, field):
    with pytest.raises(LabConfigError) as error:
        parse_lab({"clusters": [{"name": "a"}], **raw})
    assert [p.field for p in error.value.problems] == [field]


def test_make_images_prints_each_cluster_plan_and_the_withdrawal(capsys):
    from kslab.cli import images as images_cli
    from tests.support.mock_run import ROOT
    assert images_cli.main(["--stack", "host-member", "--project-dir", ROOT]) == 0
    out = capsys.readouterr().out
    assert "cluster host (host, KubeSphere v3.4.1 on Kubernetes v1.25.16): 19 images" in out
    assert "cluster member (member, KubeSphere v3.4.1 on Kubernetes v1.25.16): 17 images" in out
    assert "19 distinct images, from docker.io (19)" in out and "2025-07-31" in out


def test_make_images_json_names_where_each_image_comes_from(capsys):
    import json

    from kslab.cli import images as images_cli
    from tests.support.mock_run import ROOT
    assert images_cli.main(["--stack", "dual-host", "--project-dir", ROOT, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    kubectl = [r for r in rows if r["ref"].startswith("kubesphere/kubectl:")]
    assert {r["ref"] for r in kubectl} == {"kubesphere/kubectl:v1.19.1"}  # v3.2.1 on Kubernetes 1.19
    assert {r["from"] for r in rows} == {"docker.io"} and all(r["checked"] for r in rows)


def test_make_images_of_an_unknown_stack_says_so(capsys):
    from kslab.cli import images as images_cli
    from tests.support.mock_run import ROOT
    assert images_cli.main(["--stack", "nope", "--project-dir", ROOT]) == 2
    assert "no stack file for nope" in capsys.readouterr().err


def test_a_trailing_slash_on_the_registry_is_dropped():
    # issue #20 ("Also"): refused before, although harmless; now normalised for the cc and every image name
    lab = parse_lab({"clusters": [{"name": "a"}], "registry": "harbor.corp:5000/"})
    assert lab.registry == "harbor.corp:5000"
    assert lab.images_of(lab.clusters[0])[0].ref == "harbor.corp:5000/kubesphere/ks-installer:v3.4.1"


def test_v341_below_kubernetes_1_22_also_pulls_kubectl_v1_22_for_the_notification_hook():
    got = refs("v3.4.1", "member", "v1.21.14")
    assert {"kubesphere/kubectl:v1.21.0", "kubesphere/kubectl:v1.22.0"} <= set(got) and len(got) == 18


def test_v321_has_no_notification_hook():
    assert [r for r in refs("v3.2.1", "member", "v1.19.16") if "/kubectl:" in r] == ["kubesphere/kubectl:v1.19.1"]
