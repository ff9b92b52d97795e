"""Seeded stack configs for the config model's invariant test and its old-versus-new oracle: valid labs, and
mutations of them as users write them (wrong YAML types, unknown keys, typos, numbers out of range, references
to no cluster, missing fields, values that may be secrets). Each config is the `kslab:*` mapping of a stack file
(keys without the namespace), handed over as the engine does (tests/support/stack_config.FakeConfig).

`outcome(config)` runs the model's loader on one config and returns what a user sees of it: every problem
(field, value as shown, what is wrong, the fix, the policy), the warnings and the parsed lab. It uses only names
the loader has had since before the declared model, so the same function runs on an older checkout."""
from __future__ import annotations

import json
import random
from typing import Any

from tests.support.stack_config import FakeConfig

_NAMES = ["host", "member", "host2", "m1", "Bad_Name", "", "a" * 41, "lab"]
_IMAGES = ["kindest/node:v1.25.16", "kindest/node:v1.19.16", "kindest/node:v1.26.13@sha256:" + "a" * 64,
           "kindest/node:latest", "-rm", "kindest/node:v1.30.0", "kindest/node:v1.22.17"]
_VERSIONS = ["v3.4.1", "v3.2.1", "v3.3.2", "3.4", 3.4, "v9.9.9"]
_WEIRD = [None, True, False, 0, 1, -1, 1.2, 3.40, "", " ", "x", "yes", "True", "false", "10", "10m", [], ["x"],
          {}, {"a": 1}, "a\nb", "s" * 130, 70000, "0s", "61m", "1h", "300s"]
_CLUSTER_KEYS = ["name", "role", "backend", "nodeImage", "kubernetesVersion", "kubesphereVersion",
                 "hostClusterName", "consoleHostPort", "consolePort", "podSubnet", "serviceSubnet", "components",
                 "kubeconfigPath", "kubeconfigSecret", "internalServer", "consoleUrl", "allowLoopbackJoin",
                 "loopbackReason", "imageCheck"]
_TOP_KEYS = ["clusters", "joins", "jwtSecretMode", "allowMultipleHosts", "kubesphereVersion", "nodeImage",
             "registry", "namespaceOverride", "zone", "components", "kindWait", "installTimeoutSeconds",
             "joinTimeoutSeconds", "unjoinTimeoutSeconds", "validationMode", "devWorkspaces", "imageSources",
             "imageOverrides", "labRegistry", "imageArchives"]
_TYPOS = ["nodeImge", "rol", "Name", "consolePorts", "imagecheck", "kubeconfig", "token", "apiKey", "podSubnets"]
_TOP_TYPOS = ["cluster", "join", "kindwait", "registryy", "imageSource", "nodeimage", "password", "zones"]
_VALUES: dict[str, list[Any]] = {
    "role": ["none", "host", "member", "master", 1, None],
    "backend": ["kind", "existing", "docker", ["kind"]],
    "nodeImage": _IMAGES,
    "kubernetesVersion": ["v1.26.13", "1.26.13", "v1.19.16", "1.26", 1.26, "v1.30.1"],
    "kubesphereVersion": _VERSIONS,
    "hostClusterName": ["h", "Bad", "", None, 5],
    "consoleHostPort": [30880, 30881, 80, 65536, "30990", "x", True],
    "consolePort": [30880, 30000, 29999, 32768, "31000"],
    "podSubnet": ["10.245.0.0/16", "10.245.0.0/25", "10.0.0.0/7", "fd00:10:245::/56", "10.1.0.1/16", "x",
                  "10.96.0.0/16"],
    "serviceSubnet": ["10.97.0.0/16", "10.97.0.0/29", "10.0.0.0/11", "fd00:10:97::/112", "10.96.0.0/12"],
    "components": [{"devops": True}, {"devops": "yes"}, {"devop": True}, ["devops"], {"logging": "false"},
                   {"metricsServer": True, "x": 1}],
    "kubeconfigPath": ["member.kubeconfig", "", "~/.kube/x", ["a"]],
    "kubeconfigSecret": ["memberKubeconfig", "bad key!", "apiVersion: v1\nkind: Config\n", 12],
    "internalServer": ["https://10.0.0.12:6443", "http://x:1", "https://x", "https://[::1:6443"],
    "consoleUrl": ["http://192.168.1.20:30880", "ftp://x", "https://", "console"],
    "allowLoopbackJoin": [True, False, "true", "no"],
    "loopbackReason": ["all on one machine", "", " ", 7],
    "imageCheck": [True, False, "False", "off", 0],
}
_TOP_VALUES: dict[str, list[Any]] = {
    "jwtSecretMode": ["shared", "copy", "Shared", 1],
    "allowMultipleHosts": [True, False, "true", "maybe"],
    "kubesphereVersion": _VERSIONS,
    "nodeImage": _IMAGES,
    "registry": ["registry.local:5000", "registry.local:5000/ks/", "https://r", "/x", 5000, ""],
    "namespaceOverride": ["kubesphereio", "Bad NS", "", 1],
    "zone": ["", "cn", "us", ["cn"]],
    "components": [{"devops": True}, {"events": "true"}, {"devopz": True}, "devops"],
    "kindWait": ["5m", "0s", "3600s", "61m", "5 m", "2h", 5, "10"],
    "installTimeoutSeconds": [1800, 10, 9, 7201, "600", "x", 1.5, True],
    "joinTimeoutSeconds": [600, 5, 4, 3601, "30"],
    "unjoinTimeoutSeconds": [300, 5, 3601, "oops"],
    "validationMode": ["strict", "warn", "lenient", ["warn"]],
    "imageSources": [["harbor.corp"], ["harbor.corp/kubesphere", "docker.io/prom"], [], "harbor.corp",
                     ["https://x"], ["myregistry"], ["a.local", "a.local/"], ["a.local:70000"], [7]],
    "imageOverrides": [{"kubesphere/ks-apiserver": "me.local/ks:dev"}, {"ks-apiserver": "x/y:1"},
                       {"kubesphere/kubectl": "docker:kubectl:dev"}, ["x"], {"kubesphere/x": "https://y"}],
    "labRegistry": [{"name": "my-registry"}, {"hostPort": 80}, {"name": "Bad Name"}, {"port": 5000},
                    {"hostPort": "5200"}, {"hostPort": True}, "kslab-registry", {"name": "r", "hostPort": 5200}],
    "imageArchives": [["~/kslab-images.tar"], [], "x.tar", [""], [3, "ok.tar"]],
}
_CREDENTIALS = [None, json.dumps({"harbor.corp": {"username": "u", "password": "p"}}), "not json", "[]",
                json.dumps({"HARBOR.corp": {"username": "u", "password": "p"}}),
                json.dumps({"other.host": {"username": "u", "password": "p"}}),
                json.dumps({"harbor.corp": {"username": "u"}}), json.dumps({"https://h": {"username": "u"}})]


def _cluster(rng: random.Random, name: str, role: str, existing: bool) -> dict[str, Any]:
    cluster: dict[str, Any] = {"name": name, "role": role}
    if existing:
        cluster.update(backend="existing", kubernetesVersion="v1.26.13", kubeconfigPath=f"{name}.kubeconfig")
    elif rng.random() < 0.3:
        cluster["nodeImage"] = rng.choice(_IMAGES[:3])
    if rng.random() < 0.2:
        cluster["components"] = {"devops": True}
    return cluster


def valid(rng: random.Random) -> dict[str, Any]:
    """A lab kslab accepts: one to three clusters, joins of members to hosts, maybe workspaces and sources."""
    shape = rng.choice(["standalone", "host-member", "dual-host", "existing-member"])
    config: dict[str, Any]
    if shape == "standalone":
        config = {"clusters": [_cluster(rng, "lab", "none", False)]}
    elif shape == "host-member":
        config = {"clusters": [_cluster(rng, "host", "host", False), _cluster(rng, "member", "member", False)],
                  "joins": [{"member": "member", "host": "host"}]}
    elif shape == "dual-host":
        config = {"clusters": [_cluster(rng, "host", "host", False), _cluster(rng, "host2", "host", False),
                               _cluster(rng, "member", "member", False)],
                  "joins": [{"member": "member", "host": "host"}, {"member": "member", "host": "host2"}],
                  "allowMultipleHosts": True}
    else:
        config = {"clusters": [_cluster(rng, "host", "host", False), _cluster(rng, "member", "member", True)],
                  "joins": [{"member": "member", "host": "host"}]}
    if rng.random() < 0.3:
        config["kubesphereVersion"] = rng.choice(["v3.4.1", "v3.3.2"])
    if rng.random() < 0.2:
        config["devWorkspaces"] = [{"cluster": config["clusters"][0]["name"], "component": "ks-apiserver",
                                    "dir": "dev/api"}]
    if rng.random() < 0.2:
        config["imageSources"] = ["harbor.corp"]
    return config


def _mutate_cluster(rng: random.Random, cluster: Any) -> Any:
    if not isinstance(cluster, dict):
        return cluster
    cluster = dict(cluster)
    roll = rng.random()
    if roll < 0.45:
        key = rng.choice(_CLUSTER_KEYS[1:])
        cluster[key] = rng.choice(_VALUES[key] + _WEIRD[:6])
    elif roll < 0.6:
        cluster[rng.choice(_TYPOS)] = rng.choice(_WEIRD)
    elif roll < 0.7 and cluster:
        cluster.pop(rng.choice(list(cluster)), None)
    elif roll < 0.8:
        cluster["name"] = rng.choice(_NAMES + _WEIRD[:4])
    elif roll < 0.9:
        cluster["backend"] = "existing" if cluster.get("backend") != "existing" else "kind"
    else:
        return rng.choice(_WEIRD)
    return cluster


def mutate(rng: random.Random, config: dict[str, Any]) -> dict[str, Any]:
    """One to four mutations of a config."""
    config = json.loads(json.dumps(config))
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        clusters = config.get("clusters")
        if roll < 0.35 and isinstance(clusters, list) and clusters:
            i = rng.randrange(len(clusters))
            clusters[i] = _mutate_cluster(rng, clusters[i])
        elif roll < 0.65:
            key = rng.choice(list(_TOP_VALUES))
            config[key] = rng.choice(_TOP_VALUES[key] + _WEIRD[:8])
        elif roll < 0.72:
            config[rng.choice(_TOP_TYPOS)] = rng.choice(_WEIRD)
        elif roll < 0.8:
            config["joins"] = rng.choice([
                [{"member": "member", "host": "nohost"}], [{"member": "host", "host": "member"}],
                [{"member": "member"}], [{"member": "member", "host": "member"}], "member->host",
                [{"member": "member", "host": "host", "hots": "x"}], [["member", "host"]],
                [{"member": "member", "host": "host"}] * 2, [{"member": 1, "host": "host"}]])
        elif roll < 0.87:
            config["devWorkspaces"] = rng.choice([
                [{"cluster": "nowhere", "component": "ks-apiserver", "dir": "d"}],
                [{"cluster": "host", "component": "ks-console", "dir": "d"}], [{"cluster": "host"}],
                [{"cluster": "host", "component": "ks-apiserver", "dir": ".."}], "host",
                [{"cluster": "host", "component": "ks-apiserver", "dir": "d", "keepFiles": "yes", "x": 1}],
                [{"cluster": "host", "component": "ks-apiserver", "dir": "d"}] * 2, [7]])
        elif roll < 0.92 and config:
            config.pop(rng.choice(list(config)), None)
        else:
            config["clusters"] = rng.choice([[], {}, "host", None, [None], [{"name": "host"}] * 2])
    return config


def configs(seed: int = 26, count: int = 6000) -> list[tuple[dict[str, Any], str | None, str | None]]:
    """`count` configs, each with the jwtSecret and registryCredentials it sets (or None); about a fifth valid."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        config = valid(rng)
        if rng.random() < 0.75:
            config = mutate(rng, config)
            jwt, credentials = rng.choice([None, None, "s3cret", " "]), rng.choice(_CREDENTIALS)
        else:
            jwt, credentials = rng.choice([None, "s3cret"]), _CREDENTIALS[1] if "imageSources" in config else None
        out.append((config, jwt, credentials))
    return out


def outcome(config: dict[str, Any], jwt_secret: str | None, credentials: str | None) -> dict[str, Any]:
    """What a user sees of one config: every problem as shown, the warnings, and the lab parsed (no files read)."""
    from kslab.model import image_sources
    from kslab.model.fields import shown
    from kslab.model.spec import LabConfigError, parse_lab_problems, settle
    from kslab.model.stack_config import read_raw

    keys = list(config) + ([k for k, v in (("jwtSecret", jwt_secret), ("registryCredentials", credentials)) if v])
    lab, problems = parse_lab_problems(read_raw(FakeConfig(config)), keys, jwt_secret=jwt_secret)
    _, found = image_sources.parse_credentials(credentials, True, image_sources.source_hosts(lab.image_sources))
    everything = [tuple(p) if isinstance(p, tuple) else (p.field, p.value, p.message, p.fix, p.policy)
                  for p in problems] + [(*p, None) if len(p) == 4 else tuple(p) for p in found]
    shown_problems = [(f, shown(f, v), m, fix, str(policy) if policy else None) for f, v, m, fix, policy in everything]
    try:
        verdict = repr(settle(lab, problems).of_stack("t", "/p"))
    except LabConfigError as error:
        verdict = str(error)
    return {"problems": shown_problems, "warnings": list(lab.warnings), "verdict": verdict}
