"""Bad stack files, as a new user writes them: each is refused before anything is registered, with the
field, what is wrong and the fix, and never with a Python exception. Each case is a whole stack file,
read the way the engine hands it to the program (tests/support/stack_config.py) and loaded by the
program's own entry (stack_config.load_lab)."""
from __future__ import annotations

import json
import textwrap

import pytest
import yaml

from components.config import load_lab
from kslab.model.spec import LabConfigError
from tests.support.mock_run import fake_kubeconfig
from tests.support.stack_config import FakeConfig

STACK = "t"
GOOD_KIND = "    - {name: host, role: host}\n"
EXISTING_MEMBER = ("    - {name: host, role: host}\n"
                   "    - {name: member, role: member, backend: existing, kubernetesVersion: v1.26.13,"
                   " kubeconfigPath: member.kubeconfig}\n")
JOIN = "  kslab:joins: [{member: member, host: host}]\n"


def _load(tmp_path, stack_file: str, files: dict[str, bytes | str] | None = None):
    """Write Pulumi.yaml, the stack file and any side files, then load the lab as __main__.py does."""
    (tmp_path / "Pulumi.yaml").write_text("name: kslab\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir(exist_ok=True)
    text = "config:\n" + stack_file
    (tmp_path / "stacks" / f"Pulumi.{STACK}.yaml").write_text(text)
    for name, content in (files or {}).items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content == "<dir>":
            path.mkdir()
        else:
            path.write_text(content)
    config = yaml.safe_load(text)["config"]
    settings = {k.split(":", 1)[1]: v for k, v in config.items()}
    return load_lab(FakeConfig(settings), str(tmp_path), STACK)


def _refused(tmp_path, stack_file, files=None) -> list:
    with pytest.raises(LabConfigError) as info:
        _load(tmp_path, stack_file, files)
    problems = info.value.problems
    assert all(p.fix for p in problems), "every problem says what to do"
    assert "nothing was created" in str(info.value)
    return problems


def _kubeconfig(**cluster_changes) -> str:
    doc = yaml.safe_load(fake_kubeconfig("member", "https://10.0.0.5:6443"))
    doc["clusters"][0]["cluster"].update(cluster_changes)
    return yaml.safe_dump(doc)


def _kubeconfig_with(change) -> str:
    doc = yaml.safe_load(_kubeconfig())
    change(doc)
    return yaml.safe_dump(doc)


# (id, stack file (under `config:`), side files, field, a part of the message, a part of the fix)
CASES = [
    # 1. unknown top-level keys: a typo would silently keep the default
    ("typo-timeout", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:installTimeoutSecond: 60\n", None,
     "kslab:installTimeoutSecond", "is not a kslab setting", "kslab:installTimeoutSeconds"),
    ("typo-mode", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:validationMod: warn\n", None,
     "kslab:validationMod", "is not a kslab setting", "kslab:validationMode"),
    ("typo-jwt-mode", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:jwtSecretMod: copy\n", None,
     "kslab:jwtSecretMod", "is not a kslab setting", "kslab:jwtSecretMode"),
    ("unknown-key", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:flavour: vanilla\n", None,
     "kslab:flavour", "is not a kslab setting", "settings:"),
    ("typo-cluster-field", "  kslab:clusters:\n    - {name: host, role: host, nodeImge: x}\n", None,
     "kslab:clusters[0].nodeImge", "is not a known cluster field", "nodeImage"),

    # 2. values of the wrong YAML type
    ("version-as-number", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:kubesphereVersion: 3.40\n", None,
     "kslab:kubesphereVersion", "YAML reads an unquoted 3.40 as the number 3.4", "v3.4.1"),
    ("cluster-version-as-number", "  kslab:clusters:\n    - {name: host, kubesphereVersion: 3.40}\n", None,
     "kslab:clusters[0].kubesphereVersion", "YAML read the number 3.4", "quote it"),
    ("k8s-version-as-number", "  kslab:clusters:\n    - {name: e, backend: existing, kubernetesVersion: 1.20,"
     " kubeconfigPath: x}\n", None, "kslab:clusters[0].kubernetesVersion", "YAML read the number 1.2", "quote it"),
    ("version-as-list", "  kslab:clusters:\n    - {name: host, kubesphereVersion: [v3.4.1]}\n", None,
     "kslab:clusters[0].kubesphereVersion", "YAML read a list", "one string"),
    ("role-as-list", "  kslab:clusters:\n    - {name: host, role: [host]}\n", None,
     "kslab:clusters[0].role", "YAML read a list", "one string"),
    ("backend-as-mapping", "  kslab:clusters:\n    - {name: host, backend: {kind: true}}\n", None,
     "kslab:clusters[0].backend", "YAML read a mapping", "one string"),
    ("host-cluster-name-as-list", "  kslab:clusters:\n    - {name: host, role: host, hostClusterName: [a]}\n", None,
     "kslab:clusters[0].hostClusterName", "YAML read a list", "one string"),
    ("console-url-as-list", "  kslab:clusters:\n    - {name: e, backend: existing, kubernetesVersion: v1.26.13,"
     " kubeconfigPath: x, consoleUrl: [http://a]}\n", None, "kslab:clusters[0].consoleUrl", "YAML read a list",
     "one string"),
    ("node-image-as-mapping", "  kslab:clusters:\n    - {name: host, nodeImage: {tag: v1}}\n", None,
     "kslab:clusters[0].nodeImage", "YAML read a mapping", "one string"),
    ("join-member-as-list", "  kslab:clusters:\n    - {name: host, role: host}\n    - {name: m, role: member}\n"
     "  kslab:joins: [{member: [m], host: host}]\n", None, "kslab:joins[0].member", "YAML read a list", "one string"),
    ("join-host-as-mapping", "  kslab:clusters:\n    - {name: host, role: host}\n    - {name: m, role: member}\n"
     "  kslab:joins: [{member: m, host: {name: host}}]\n", None, "kslab:joins[0].host", "YAML read a mapping",
     "one string"),
    ("components-as-list", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:components: [devops]\n", None,
     "kslab:components", "YAML read a list", "components: {devops: true}"),
    ("registry-as-mapping", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:registry: {host: r.local}\n", None,
     "kslab:registry", "YAML read a mapping", "registry.local:5000"),
    ("mode-as-list", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:jwtSecretMode: [copy]\n", None,
     "kslab:jwtSecretMode", "YAML read a list", "one string"),
    ("kind-wait-as-number", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:kindWait: 300\n", None,
     "kslab:kindWait", "must be a duration", "5m"),
    ("kind-wait-as-list", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:kindWait: [5m]\n", None,
     "kslab:kindWait", "YAML read a list", "one string"),
    ("clusters-as-mapping", "  kslab:clusters: {name: host}\n", None,
     "kslab:clusters", "must be a list of clusters, but YAML read a mapping", "'- '"),
    ("timeout-as-list", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:installTimeoutSeconds: [60]\n", None,
     "kslab:installTimeoutSeconds", "whole number", "in that range"),
    ("name-as-number", "  kslab:clusters:\n    - {name: 5}\n", None,
     "kslab:clusters[0].name", "YAML read the number 5", "one string"),

    # 3. malformed kubeconfigs, found before anything is registered
    ("kubeconfig-clusters-a-string", "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN,
     {"member.kubeconfig": "clusters: oops\n"}, "kslab:clusters[member].kubeconfigPath",
     "'clusters' must be a list", "kubectl config view --flatten"),
    ("kubeconfig-cluster-entry-a-list", "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN,
     {"member.kubeconfig": "clusters: [{name: m, cluster: [1]}]\n"}, "kslab:clusters[member].kubeconfigPath",
     "'clusters' must be a list", "kubectl config view --flatten"),
    ("kubeconfig-context-name-a-list", "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN,
     {"member.kubeconfig": _kubeconfig_with(lambda doc: doc["contexts"][0].update(name=["x"]))},
     "kslab:clusters[member].kubeconfigPath", "'contexts' must be a list", "kubectl config view --flatten"),
    ("kubeconfig-server-a-list", "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN,
     {"member.kubeconfig": _kubeconfig(server=["https://a"])}, "kslab:clusters[member].kubeconfigPath",
     "no server URL", "kubectl config view --flatten"),
    ("kubeconfig-binary", "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN,
     {"member.kubeconfig": b"\x7fELF\x02\x01\x01\x00\xff\xfe"}, "kslab:clusters[member].kubeconfigPath",
     "not a text file", "kubeconfig"),
    ("kubeconfig-a-directory", "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN,
     {"member.kubeconfig": "<dir>"}, "kslab:clusters[member].kubeconfigPath", "is a directory", "kubeconfig file"),
    ("kubeconfig-not-yaml", "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN,
     {"member.kubeconfig": "clusters: [\n"}, "kslab:clusters[member].kubeconfigPath", "not valid YAML",
     "kubectl config view --flatten"),
    ("secret-not-a-kubeconfig", "  kslab:clusters:\n    - {name: host, role: host}\n"
     "    - {name: member, role: member, backend: existing, kubernetesVersion: v1.26.13,"
     " kubeconfigSecret: memberKubeconfig}\n" + JOIN + "  kslab:memberKubeconfig: eyJhbGciOiJSUzI1NiJ9.token\n",
     None, "kslab:clusters[member].kubeconfigSecret", "has no clusters", "kubectl config view --flatten"),
    ("member-loopback-server", "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN,
     {"member.kubeconfig": _kubeconfig(server="https://127.0.0.1:6443")}, "kslab:clusters[member].kubeconfigPath",
     "loopback address", "internalServer"),
    ("member-insecure-tls", "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN,
     {"member.kubeconfig": _kubeconfig(**{"insecure-skip-tls-verify": True})},
     "kslab:clusters[member].kubeconfigPath", "insecure-skip-tls-verify", "kubectl config view --flatten"),
    ("kubeconfig-path-with-nul", "  kslab:clusters:\n    - {name: host, role: host}\n"
     "    - {name: member, role: member, backend: existing, kubernetesVersion: v1.26.13,"
     " kubeconfigPath: \"a\\0b\"}\n" + JOIN, None, "kslab:clusters[member].kubeconfigPath", "not a usable file path",
     "kubeconfig file"),
    ("member-server-bad-ipv6", "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN,
     {"member.kubeconfig": _kubeconfig(server="https://[::1")}, "kslab:clusters[member].kubeconfigPath",
     "has no valid host", "kubectl config view --flatten"),
    ("member-no-ca", "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN,
     {"member.kubeconfig": _kubeconfig(**{"certificate-authority-data": None})},
     "kslab:clusters[member].kubeconfigPath", "no certificate-authority-data", "kubectl config view --flatten"),

    # 4. values that used to pass
    ("empty-jwt-secret", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:jwtSecret: ''\n", None,
     "kslab:jwtSecret", "is empty", "let kslab generate one"),
    ("jwt-secret-in-copy-mode", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:jwtSecretMode: copy\n"
     "  kslab:jwtSecret: abcdefghijklmnopqrstuvwxyz012345\n", None,
     "kslab:jwtSecret", "ignored in jwtSecretMode 'copy'", "jwtSecretMode: shared"),
    ("registry-with-scheme", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:registry: https://r.local:5000\n", None,
     "kslab:registry", "no scheme", "registry.local:5000"),
    ("registry-leading-slash", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:registry: /r.local\n", None,
     "kslab:registry", "no scheme, no leading", "registry.local:5000"),
    ("image-starting-with-dash", "  kslab:clusters:\n    - {name: host, nodeImage: '-kindest/node:v1.25.16'}\n",
     None, "kslab:clusters[0].nodeImage", "is not an image reference", "kindest/node"),
    ("top-image-starting-with-dash", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:nodeImage: --rm\n", None,
     "kslab:nodeImage", "is not an image reference", "kindest/node"),
    ("pod-subnet-too-small", "  kslab:clusters:\n    - {name: host, podSubnet: 10.245.0.0/26}\n", None,
     "kslab:clusters[0].podSubnet", "too small", "/16 or larger"),
    ("service-subnet-too-small", "  kslab:clusters:\n    - {name: host, serviceSubnet: 10.97.0.0/29}\n", None,
     "kslab:clusters[0].serviceSubnet", "too small", "/28 or larger"),
    ("service-subnet-too-large", "  kslab:clusters:\n    - {name: host, serviceSubnet: 10.0.0.0/8}\n", None,
     "kslab:clusters[0].serviceSubnet", "too large", "/12 or smaller"),
    ("mixed-address-families", "  kslab:clusters:\n    - {name: host, podSubnet: 'fd00:10:245::/56',"
     " serviceSubnet: 10.97.0.0/16}\n", None, "kslab:clusters[0].serviceSubnet", "no dual-stack", "same address"),
    ("console-url-on-kind", "  kslab:clusters:\n    - {name: host, consoleUrl: 'http://127.0.0.1:30880'}\n", None,
     "kslab:clusters[0].consoleUrl", "only applies to backend 'existing'", "consoleHostPort"),
    ("console-url-bad-scheme", "  kslab:clusters:\n    - {name: e, backend: existing, kubernetesVersion: v1.26.13,"
     " kubeconfigPath: x, consoleUrl: 'ftp://console'}\n", None, "kslab:clusters[0].consoleUrl", "http:// or https://",
     "http://"),
    ("kind-wait-unbounded", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:kindWait: 999h\n", None,
     "kslab:kindWait", "from 0s to 60m", "5m"),
    ("kind-wait-not-a-duration", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:kindWait: 5 minutes\n", None,
     "kslab:kindWait", "from 0s to 60m", "5m"),
    ("pod-subnet-too-large", "  kslab:clusters:\n    - {name: host, podSubnet: 'fd00::/32'}\n", None,
     "kslab:clusters[0].podSubnet", "too large", "/48 or smaller"),
    ("console-url-bad-ipv6", "  kslab:clusters:\n    - {name: e, backend: existing, kubernetesVersion: v1.26.13,"
     " kubeconfigPath: x, consoleUrl: 'http://[::1'}\n", None, "kslab:clusters[0].consoleUrl", "http:// or https://",
     "http://"),
    ("internal-server-bad-ipv6", "  kslab:clusters:\n    - {name: e, backend: existing, kubernetesVersion: v1.26.13,"
     " kubeconfigPath: x, internalServer: 'https://[::1'}\n", None, "kslab:clusters[0].internalServer",
     "https:// URL with host and port", "https://10.0.0.12:6443"),
    ("internal-server-no-port", "  kslab:clusters:\n    - {name: e, backend: existing, kubernetesVersion: v1.26.13,"
     " kubeconfigPath: x, internalServer: 'https://10.0.0.12'}\n", None, "kslab:clusters[0].internalServer",
     "https:// URL with host and port", "https://10.0.0.12:6443"),
    ("joins-a-mapping", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:joins: {}\n", None,
     "kslab:joins", "must be a list", "joins: [{member: member, host: host}]"),
    ("joins-false", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:joins: false\n", None,
     "kslab:joins", "must be a list", "joins: [{member: member, host: host}]"),
    ("string-false-is-false", "  kslab:clusters:\n    - {name: e, backend: existing, kubernetesVersion: v1.26.13,"
     " kubeconfigPath: x, allowLoopbackJoin: 'false', nodeImage: y}\n", None,
     "kslab:clusters[0].nodeImage", "only applies to backend 'kind'", "backend: kind"),
    ("boolean-not-a-boolean", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:allowMultipleHosts: sometimes\n", None,
     "kslab:allowMultipleHosts", "true or false", "true or false"),

    # 6. developer workspaces
    ("workspace-unknown-cluster", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:devWorkspaces: [{cluster: nope, "
     "component: ks-controller-manager, dir: dev/kcm}]\n", None, "kslab:devWorkspaces[0].cluster",
     "names no cluster", "host"),
    ("workspace-unknown-component", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:devWorkspaces: [{cluster: host, "
     "component: ks-console, dir: dev/c}]\n", None, "kslab:devWorkspaces[0].component", "a workspace can take over",
     "ks-controller-manager, ks-apiserver"),
    ("workspace-no-dir", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:devWorkspaces: [{cluster: host, "
     "component: ks-apiserver}]\n", None, "kslab:devWorkspaces[0].dir", "must name the workspace folder",
     "relative to the project"),
    ("workspace-twice", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:devWorkspaces: [{cluster: host, "
     "component: ks-apiserver, dir: a}, {cluster: host, component: ks-apiserver, dir: b}]\n", None,
     "kslab:devWorkspaces[1]", "a second time", "one workspace per cluster and component"),
    ("workspace-same-dir", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:devWorkspaces: [{cluster: host, "
     "component: ks-apiserver, dir: a}, {cluster: host, component: ks-controller-manager, dir: a}]\n", None,
     "kslab:devWorkspaces[1].dir", "is also", "its own folder"),
    ("workspace-dir-is-the-project", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:devWorkspaces: [{cluster: host, "
     "component: ks-apiserver, dir: ./}]\n", None, "kslab:devWorkspaces[0].dir", "is the project",
     "a folder of its own"),
    ("workspaces-a-mapping", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:devWorkspaces: {cluster: host}\n",
     None, "kslab:devWorkspaces", "must be a list", "devWorkspaces: [{cluster: host"),
    ("workspace-keep-not-bool", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:devWorkspaces: [{cluster: host, "
     "component: ks-apiserver, dir: a, keepFiles: maybe}]\n", None, "kslab:devWorkspaces[0].keepFiles",
     "true or false", "true or false"),

    # 7. the image supply: each previewed cleanly, then failed later or pulled from the wrong registry
    ("source-port-too-high", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:imageSources: [harbor.corp:70000]\n", None,
     "kslab:imageSources[0]", "has the port 70000, outside 1 to 65535", "harbor.corp:5000"),
    ("source-port-zero", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:imageSources: ['harbor.corp:0/ks']\n", None,
     "kslab:imageSources[0]", "has the port 0, outside 1 to 65535", "harbor.corp:5000"),
    ("source-port-99999", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:imageSources: ['10.0.0.5:99999']\n", None,
     "kslab:imageSources[0]", "has the port 99999", "10.0.0.5:5000"),
    ("source-without-a-host", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:imageSources: [myregistry/kubesphere]\n",
     None, "kslab:imageSources[0]", "is not a registry host", "docker.io/myregistry/kubesphere if Docker Hub"),
    ("archive-missing", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:imageArchives: [no-such.tar]\n", None,
     "kslab:imageArchives[0]", "does not exist", "make images-save"),
    ("archive-a-folder", "  kslab:clusters:\n" + GOOD_KIND + "  kslab:imageArchives: [images]\n",
     {"images": "<dir>"}, "kslab:imageArchives[0]", "is a folder", "make images-save"),

    # 5. the right message
    ("name-not-a-string-is-not-missing", "  kslab:clusters:\n    - {name: [host]}\n", None,
     "kslab:clusters[0].name", "must be a string", "one string"),
    ("member-joined-to-itself", "  kslab:clusters:\n    - {name: host, role: host}\n    - {name: m, role: member}\n"
     "  kslab:joins: [{member: m, host: m}]\n", None, "kslab:joins[0]", "joins a cluster to itself", "different host"),
    ("top-components-blame-the-top", "  kslab:clusters:\n    - {name: a}\n    - {name: b}\n"
     "  kslab:components: {devopz: true}\n", None, "kslab:components.devopz", "not a KubeSphere 3.x optional",
     "devops"),
]


@pytest.mark.parametrize("stack_file,files,field,message,fix", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_stack_file_is_refused_with_its_field_and_fix(tmp_path, stack_file, files, field, message, fix):
    problems = _refused(tmp_path, stack_file, files)
    matching = [p for p in problems if p.field == field and message in p.message]
    assert matching, f"no problem at {field} saying {message!r}: {[str(p) for p in problems]}"
    assert fix in matching[0].fix, matching[0].fix


def test_the_categories_have_their_cases():
    """The closing note's counts; a category that loses its cases fails here."""
    counts = {"unknown keys": 5, "wrong YAML types": 19, "kubeconfigs": 13, "values that passed": 22,
              "developer workspaces": 8, "messages": 3, "image supply": 6}
    assert sum(counts.values()) == len(CASES)


def test_a_member_joined_to_itself_gets_one_problem_not_two_role_errors(tmp_path):
    problems = _refused(tmp_path, "  kslab:clusters:\n    - {name: host, role: host}\n    - {name: m, role: member}\n"
                                  "  kslab:joins: [{member: m, host: m}]\n")
    assert [p.field for p in problems] == ["kslab:joins[0]"]


def test_a_top_level_components_mistake_is_reported_once_at_the_top(tmp_path):
    problems = _refused(tmp_path, "  kslab:clusters:\n    - {name: a}\n    - {name: b}\n"
                                  "  kslab:components: {devopz: true}\n")
    assert [p.field for p in problems] == ["kslab:components.devopz"]


def test_the_string_false_turns_nothing_on(tmp_path):
    lab, _, _, _ = _load(tmp_path, "  kslab:clusters:\n    - {name: a, allowLoopbackJoin: 'false', components: "
                             "{devops: 'false'}}\n  kslab:allowMultipleHosts: 'false'\n")
    assert lab.clusters[0].allow_loopback_join is False and lab.clusters[0].components["devops"] is False
    assert lab.allow_multiple_hosts is False


def test_secret_keys_the_config_names_are_allowed(tmp_path):
    lab, kubeconfigs, _, _ = _load(
        tmp_path, "  kslab:clusters:\n    - {name: host, role: host}\n    - {name: member, role: member, "
        "backend: existing, kubernetesVersion: v1.26.13, kubeconfigSecret: memberKubeconfig}\n" + JOIN
        + "  kslab:jwtSecret: abcdefghijklmnopqrstuvwxyz012345\n"
        + "  kslab:memberKubeconfig: |\n" + textwrap.indent(_kubeconfig(), "    "))
    assert [j.name for j in lab.joins] == ["member-to-host"] and set(kubeconfigs) == {"member"}


def test_every_problem_of_settings_and_kubeconfigs_comes_at_once(tmp_path):
    problems = _refused(tmp_path, "  kslab:clusters:\n" + EXISTING_MEMBER + JOIN + "  kslab:kindWait: forever\n"
                        "  kslab:registry: http://r\n  kslab:flavour: x\n",
                        {"member.kubeconfig": "clusters: oops\n"})
    assert {p.field for p in problems} == {"kslab:kindWait", "kslab:registry", "kslab:flavour",
                                           "kslab:clusters[member].kubeconfigPath"}


def test_no_message_carries_the_jwt_secret_or_a_kubeconfig_secret(tmp_path):
    secret = "S3cr3t-value-that-must-not-show"
    with pytest.raises(LabConfigError) as info:
        _load(tmp_path, "  kslab:clusters:\n    - {name: host, role: host}\n    - {name: member, role: member, "
              "backend: existing, kubernetesVersion: v1.26.13, kubeconfigSecret: memberKubeconfig}\n" + JOIN
              + f"  kslab:jwtSecretMode: copy\n  kslab:jwtSecret: {secret}\n  kslab:memberKubeconfig: {secret}\n")
    assert secret not in str(info.value)
    assert {p.field for p in info.value.problems} == {"kslab:jwtSecret", "kslab:clusters[member].kubeconfigSecret"}


def test_an_ipv6_lab_renders_kinds_ipv6_family(tmp_path):
    from kslab.render import manifests as render
    lab, _, _, _ = _load(tmp_path, "  kslab:clusters:\n    - {name: a, podSubnet: 'fd00:10:245::/56', "
                             "serviceSubnet: 'fd00:10:97::/112'}\n")
    assert render.kind_config(lab.clusters[0])["networking"]["ipFamily"] == "ipv6"


def test_a_kubeconfig_pasted_under_a_mistyped_key_is_not_shown(tmp_path):
    with pytest.raises(LabConfigError) as info:
        _load(tmp_path, "  kslab:clusters:\n    - name: host\n      kubeconfig: |\n"
                        + textwrap.indent(_kubeconfig(), "        "))
    assert "a2V5" not in str(info.value) and "Y2VydA==" not in str(info.value)
    assert "kslab:clusters[0].kubeconfig = (a string, not shown): is not a known cluster field" in str(info.value)


def test_the_secret_key_a_broken_cluster_names_is_not_called_unknown(tmp_path):
    problems = _refused(tmp_path, "  kslab:clusters:\n    - {name: member, role: boss, backend: existing, "
                                  "kubernetesVersion: v1.26.13, kubeconfigSecret: memberKubeconfig}\n"
                                  "  kslab:memberKubeconfig: x\n")
    assert "kslab:memberKubeconfig" not in {p.field for p in problems}


def test_kind_wait_0s_is_kinds_own_do_not_wait(tmp_path):
    lab, _, _, _ = _load(tmp_path, "  kslab:clusters:\n" + GOOD_KIND + "  kslab:kindWait: 0s\n")
    assert lab.kind_wait == "0s"


def test_a_workspace_is_parsed_with_its_defaults(tmp_path):
    lab, _, _, _ = _load(tmp_path, "  kslab:clusters:\n" + GOOD_KIND + "  kslab:devWorkspaces: [{cluster: host, "
                             "component: ks-controller-manager, dir: dev/kcm}]\n")
    [w] = lab.dev_workspaces
    assert (w.cluster, w.component, w.dir, w.keep_files, w.name) == (
        "host", "ks-controller-manager", "dev/kcm", False, "host-ks-controller-manager-dev")


@pytest.mark.parametrize("host, fix", [("Harbor.Corp", "write the host as the source does: harbor.corp"),
                                       ("registry.corp", "name one of the sources' hosts: harbor.corp, docker.io")])
def test_credentials_for_a_host_no_source_has_are_refused(tmp_path, host, fix):
    """Credentials go only to a source's host exactly as written: one that matches none would never be sent, and the
    lab would then fail at the registry's login (#25 item 11)."""
    from kslab.model.stack_config import load_lab_values
    credentials = json.dumps({host: {"username": "robot", "password": "s3cret-value"}})
    settings = {"clusters": [{"name": "host"}], "imageSources": ["harbor.corp", "docker.io/prom"],
                "registryCredentials": credentials}
    (tmp_path / "Pulumi.yaml").write_text("name: kslab\n")
    with pytest.raises(LabConfigError) as info:
        load_lab_values(FakeConfig(settings), str(tmp_path), None, credentials_are_secret=True)
    [problem] = info.value.problems
    assert problem.field == f"kslab:registryCredentials[{host}]" and problem.value == "(secret)"
    assert "matches no host of kslab:imageSources" in problem.message and fix in problem.fix
    assert "s3cret-value" not in str(info.value)


def test_credentials_for_a_source_host_or_an_override_host_are_taken(tmp_path):
    from kslab.model.stack_config import load_lab_values
    credentials = {h: {"username": "robot", "password": "pw"} for h in ("harbor.corp", "me.local:5000")}
    settings = {"clusters": [{"name": "host"}], "imageSources": ["harbor.corp/kubesphere"],
                "imageOverrides": {"kubesphere/ks-apiserver": "me.local:5000/ks-apiserver:dev"},
                "registryCredentials": json.dumps(credentials)}
    _, _, normal = load_lab_values(FakeConfig(settings), str(tmp_path), None, credentials_are_secret=True)
    assert normal is not None and set(json.loads(normal)) == {"harbor.corp", "me.local:5000"}
