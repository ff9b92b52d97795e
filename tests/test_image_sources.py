"""Image sources and the lab registry's naming: where each planned image is looked for, in which order, what
every cluster's cc and kind config say, and the refusal when no source has an image. Pure, plus the
registry client against a registry played on loopback (tests/test_registry_check.py)."""
import base64
import json

import pytest

from kslab.model import contract, images
from kslab.model import image_sources as src
from kslab.model.spec import LabConfigError, parse_lab
from kslab.render import manifests as render
from kslab.steps import registry_check as rc
from tests.test_registry_check import registry  # noqa: F401 (the fixture)

KIND = {"name": "host", "role": "host"}
EXISTING = {"name": "old", "backend": "existing", "kubernetesVersion": "v1.26.13", "kubeconfigPath": "x"}


def _sources(prefixes, overrides=None, registry_conf=None):
    parsed, problems = src.parse_sources(prefixes, overrides, registry_conf)
    assert problems == []
    return parsed


def test_a_host_source_keeps_each_image_namespace():
    assert _sources(["harbor.corp"]).candidates("prom/prometheus:v2.39.1") == ["harbor.corp/prom/prometheus:v2.39.1"]


def test_a_source_with_a_path_replaces_the_namespace():
    assert _sources(["docker.io/kubespheredev"]).candidates("kubesphere/ks-apiserver:v3.4.1") == [
        "docker.io/kubespheredev/ks-apiserver:v3.4.1"]


def test_sources_are_asked_in_the_stack_file_order():
    assert _sources(["a.local/x", "b.local"]).candidates("kubesphere/tower:v0.2.1") == [
        "a.local/x/tower:v0.2.1", "b.local/kubesphere/tower:v0.2.1"]


def test_an_override_is_the_only_candidate_and_keeps_the_planned_tag():
    sources = _sources(["harbor.corp"], {"kubesphere/ks-controller-manager": "me.local:5000/kcm"})
    assert sources.candidates("kubesphere/ks-controller-manager:v3.4.1") == ["me.local:5000/kcm:v3.4.1"]


def test_an_override_of_one_tag_wins_over_one_of_the_name():
    sources = _sources(["harbor.corp"], {"kubesphere/kubectl": "a.local/kubectl",
                                         "kubesphere/kubectl:v1.22.0": "b.local/kubectl:mine"})
    assert sources.candidates("kubesphere/kubectl:v1.22.0") == ["b.local/kubectl:mine"]
    assert sources.candidates("kubesphere/kubectl:v1.21.0") == ["a.local/kubectl:v1.21.0"]


@pytest.mark.parametrize("raw, field", [
    ("harbor.corp", "kslab:imageSources"),
    ([], "kslab:imageSources"),
    (["https://harbor.corp"], "kslab:imageSources[0]"),
    (["harbor.corp/KubeSphere"], "kslab:imageSources[0]"),
    (["a.local", "a.local/"], "kslab:imageSources[1]"),
    (["a.local:70000"], "kslab:imageSources[0]"),
    (["a.local", "a.local:0/x"], "kslab:imageSources[1]"),
    (["myregistry/kubesphere"], "kslab:imageSources[0]"),
    (["myregistry"], "kslab:imageSources[0]"),
])
def test_bad_sources_are_named(raw, field):
    _, problems = src.parse_sources(raw, None, None)
    assert [p[0] for p in problems] == [field]


@pytest.mark.parametrize("source", ["localhost/x", "localhost:5000", "127.0.0.1:5000/kubespheredev", "a.local:65535",
                                    "docker.io/prom"])
def test_a_source_naming_its_registry_host_is_taken(source):
    assert _sources([source]).prefixes == (source,)


def test_the_hosts_credentials_may_name_are_the_sources_and_the_overrides():
    sources = _sources(["harbor.corp/kubesphere", "docker.io/prom", "harbor.corp"],
                       {"kubesphere/a": "me.local:5000/a:dev", "kubesphere/b": "docker:b:dev", "kubesphere/c": "x/c"})
    assert src.source_hosts(sources) == ("harbor.corp", "docker.io", "me.local:5000")
    assert src.source_hosts(None) == ()


def test_overrides_and_lab_registry_without_sources_are_refused():
    _, problems = src.parse_sources(None, {"kubesphere/x": "a/b"}, {"name": "r"})
    assert [p[0] for p in problems] == ["kslab:imageOverrides", "kslab:labRegistry"]


@pytest.mark.parametrize("conf, field", [({"hostPort": 80}, "kslab:labRegistry.hostPort"),
                                         ({"name": "Bad Name"}, "kslab:labRegistry.name"),
                                         ({"port": 5000}, "kslab:labRegistry")])
def test_bad_lab_registry_settings_are_named(conf, field):
    _, problems = src.parse_sources(["a.local"], None, conf)
    assert [p[0] for p in problems] == [field]


def test_bad_override_key_is_named():
    _, problems = src.parse_sources(["a.local"], {"ks-apiserver": "a.local/x:1"}, None)
    assert [p[0] for p in problems] == ["kslab:imageOverrides[ks-apiserver]"]


def test_every_problem_of_the_settings_is_reported_at_once():
    with pytest.raises(LabConfigError) as info:
        parse_lab({"clusters": [KIND], "imageSources": ["https://x"], "labRegistry": {"hostPort": 1}})
    assert {p.field for p in info.value.problems} == {"kslab:imageSources[0]", "kslab:labRegistry.hostPort"}


def test_kind_clusters_pull_from_the_lab_registry_and_existing_ones_from_kslab_registry():
    lab = parse_lab({"clusters": [KIND, EXISTING], "imageSources": ["harbor.corp"], "registry": "harbor.corp",
                     "labRegistry": {"name": "my-registry"}}).of_stack("demo", "/work/a")
    root = f"my-registry:5000/labs/{contract.lab_id('demo', '/work/a')}"
    kind_plan = lab.images_of(lab.cluster("host"))
    assert kind_plan and all(i.ref.startswith(f"{root}/") for i in kind_plan)
    assert lab.naming_of(lab.cluster("host")).cc_fields() == {"local_registry": root}
    assert all(i.ref.startswith("harbor.corp/") for i in lab.images_of(lab.cluster("old")))


def test_without_sources_nothing_changes():
    lab = parse_lab({"clusters": [KIND]})
    assert lab.image_sources is None and lab.naming_of(lab.cluster("host")) == images.Naming()
    assert "containerdConfigPatches" not in render.kind_config(lab.cluster("host"))


def test_each_lab_pulls_from_repositories_of_its_own():
    """Two stacks, or one stack in two checkouts, never name the same repository of the shared lab registry: what
    one lab puts there (an override, another source's image) cannot reach another lab's nodes."""
    raw = {"clusters": [KIND], "imageSources": ["harbor.corp"]}
    roots = {parse_lab(raw).of_stack(stack, checkout).image_sources.root
             for stack, checkout in (("a", "/work/x"), ("b", "/work/x"), ("a", "/work/y"))}
    assert len(roots) == 3 and all(r.startswith("kslab-registry:5000/labs/") for r in roots)
    # names that read alike are still three labs
    assert len({contract.lab_id(stack, "/work/x") for stack in ("lab_a", "lab-a", "Lab.A")}) == 3


def test_the_lab_path_is_upstream_name():
    lab = parse_lab({"clusters": [KIND], "imageSources": ["harbor.corp"]}).of_stack("demo")
    paths = [lab.image_sources.upstream_path(i.ref) for i in lab.images_of(lab.cluster("host"))]
    upstream = [i.ref for i in images.plan("v3.4.1", "host", "v1.26.13", images.Naming())]
    assert paths == upstream


def test_kind_config_reads_registry_host_configs_with_the_lab_registry():
    lab = parse_lab({"clusters": [KIND], "imageSources": ["harbor.corp"]})
    patches = render.kind_config(lab.cluster("host"), True)["containerdConfigPatches"]
    assert patches == ['[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "/etc/containerd/certs.d"\n']


def test_hosts_toml_sends_pulls_to_the_registry_over_http():
    toml = src.LabRegistry("r", 5100).hosts_toml()
    assert 'server = "http://r:5000"' in toml and '[host."http://r:5000"]' in toml and '"pull", "resolve"' in toml


def test_the_installer_deployment_names_the_lab_registry():
    lab = parse_lab({"clusters": [KIND], "imageSources": ["harbor.corp"]}).of_stack("demo", "/work/a")
    deployment = next(o for o in render.installer_objects("v3.4.1", lab.naming_of(lab.cluster("host")))
                      if o["kind"] == "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
        f"kslab-registry:5000/labs/{contract.lab_id('demo', '/work/a')}/kubesphere/ks-installer:v3.4.1"


# --- credentials -------------------------------------------------------------------------------------------

GOOD_CREDENTIALS = json.dumps({"harbor.corp": {"username": "robot", "password": "s3cret-value"}})


def test_plaintext_credentials_are_refused_without_showing_them():
    _, problems = src.parse_credentials(GOOD_CREDENTIALS, is_secret=False)
    assert [p[0] for p in problems] == ["kslab:registryCredentials"]
    assert "s3cret-value" not in repr(problems) and "--secret" in problems[0][3]


@pytest.mark.parametrize("text", ["not json", "[]", json.dumps({"harbor.corp": {"username": "u"}}),
                                  json.dumps({"https://h": {"username": "u", "password": "p"}})])
def test_malformed_credentials_are_refused_without_showing_them(text):
    normal, problems = src.parse_credentials(text, is_secret=True)
    assert normal is None and problems and all("(secret)" == p[1] for p in problems)


def test_credentials_open_the_token_endpoint(registry):  # noqa: F811
    basic = "Basic " + base64.b64encode(b"robot:s3cret-value").decode()
    played = registry({("kubesphere/tower", "v0.2.1")}, token="tok", token_basic=basic)
    ref = played.ref("kubesphere/tower:v0.2.1")
    host = ref.split("/", 1)[0]
    assert rc.Checker(backoff=0).ask(ref).state == rc.DENIED
    assert rc.Checker(backoff=0, credentials={host: ("robot", "s3cret-value")}).ask(ref).state == rc.FOUND


def test_docker_config_for_crane_is_private(tmp_path):
    directory = tmp_path / "auth"
    directory.mkdir()
    from kslab.steps import crane
    crane.write_docker_config(str(directory), {"docker.io": ("u", "p")})
    doc = json.loads((directory / "config.json").read_text())
    assert set(doc["auths"]) == {"docker.io", "https://index.docker.io/v1/"}
    assert (directory / "config.json").stat().st_mode & 0o077 == 0 and directory.stat().st_mode & 0o077 == 0


# --- locating and the refusal ---------------------------------------------------------------------------------

def test_the_first_source_that_has_an_image_wins(registry):  # noqa: F811
    first = registry({("mirror/tower", "v0.2.1")})
    second = registry({("kubesphere/tower", "v0.2.1"), ("kubesphere/kubefed", "v0.8.1")})
    sources = _sources([f"127.0.0.1:{first.port}/mirror", f"127.0.0.1:{second.port}"])
    wanted = {p: sources.candidates(p) for p in ("kubesphere/tower:v0.2.1", "kubesphere/kubefed:v0.8.1")}
    located = rc.locate(wanted, checker=rc.Checker(backoff=0))
    assert rc.found_at(located["kubesphere/tower:v0.2.1"]) == first.ref("mirror/tower:v0.2.1")
    assert rc.found_at(located["kubesphere/kubefed:v0.8.1"]) == second.ref("kubesphere/kubefed:v0.8.1")
    assert [m for m, path, _ in second.requests if "tower" in path] == [], "a found image is not asked again"


def test_the_refusal_lists_what_every_source_answered():
    located = {"kubesphere/tower:v0.2.1": [("a.local/kubesphere/tower:v0.2.1", rc.Answer(rc.MISSING, "404")),
                                           ("docker.io/kubesphere/tower:v0.2.1", rc.Answer(rc.DENIED, "401"))],
               "prom/prometheus:v2.39.1": [("a.local/prom/prometheus:v2.39.1", rc.Answer(rc.FOUND, "200"))]}
    text = rc.report_sources(located, {"kubesphere/tower:v0.2.1": ["host"]})
    assert text.startswith("1 of 2 planned images are in none of the image sources")
    assert "a.local/kubesphere/tower:v0.2.1: missing (404)" in text
    assert "docker.io/kubesphere/tower:v0.2.1: denied (401)" in text
    assert "2025-07-31" in text and "prometheus" not in text and "kslab:imageSources" in text


def test_no_refusal_when_every_image_is_found():
    assert rc.report_sources({"a/b:1": [("x/a/b:1", rc.Answer(rc.FOUND, "200"))]}, {}) is None
