"""What the policies read: resource properties with their secret and unknown markers kept,
and a view of the lab (clusters, kind nodes, joins) built from the resources the lab
components register. No Pulumi engine or policy server is needed to use this module."""
from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from kslab.model import contract as names
from kslab.model import step_table, versions

# The engine's markers (the same values pulumi and pulumi-policy use on the wire).
SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"
UNKNOWNS = {
    UNKNOWN_STRING,
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7", "3eeb2bf0-c639-47a8-9e75-3b44932eb421",
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2", "030794c1-ac77-496b-92df-f27374a8bd58",
    "e48ece36-62e2-4504-bad9-02848725956a", "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",
}

CC_TYPE = "kubernetes:installer.kubesphere.io/v1alpha1:ClusterConfiguration"
JOIN_TYPE = "kubernetes:cluster.kubesphere.io/v1alpha1:Cluster"
# kslab's apply-time steps (components/step_resources.py): one type per kind of step, each with a `step` input.
STEP_TYPES = step_table.STEP_TYPES
KIND_CLUSTER_TYPE = step_table.KIND_CLUSTER_TYPE
DEPLOYMENT_TYPE = "kubernetes:apps/v1:Deployment"
K8S_PROVIDER_TYPE = "pulumi:providers:kubernetes"
TENANT_TYPE = step_table.step_type("tenant-apply")


# --- secret markers --------------------------------------------------------------------------
# pulumi-policy's Python SDK drops secretness before validation; the pack keeps it with these
# subclasses (installed by policies/__main__.py), so "is this kubeconfig a secret?" can be asked.

class SecretStr(str):
    pass


class SecretDict(dict):
    pass


class SecretList(list):
    pass


def _mark(value: Any) -> Any:
    if isinstance(value, str):
        return SecretStr(value)
    if isinstance(value, dict):
        return SecretDict(value)
    if isinstance(value, list):
        return SecretList(value)
    return value  # numbers/bools: secretness cannot be carried, and none of ours are secret


def is_secret(value: Any) -> bool:
    return isinstance(value, (SecretStr, SecretDict, SecretList))


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and str(value) in UNKNOWNS


def _from_rpc(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_rpc(v) for v in value]
    if isinstance(value, dict):
        if value.get(SIG_KEY) == SECRET_SIG:
            return _mark(_from_rpc(value.get("value")))
        return {k: _from_rpc(v) for k, v in value.items()}
    return value


def props_from_rpc(props: dict, proxy_secrets: bool = False) -> dict:
    """Properties as the engine sent them (JSON form), with secrets marked and unknowns kept."""
    return {k: _from_rpc(v) for k, v in (props or {}).items()}


def plain(value: Any) -> Any:
    """Unwrap pulumi-policy's read-only proxies, keeping our markers and unknown sentinels."""
    try:
        target = value["__target"]
    except Exception:
        target = None
    if target is not None and target is not value:
        return plain(target)
    if isinstance(value, (SecretDict, SecretList, SecretStr)):
        return value
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def dig(obj: Any, *path: str, default: Any = None) -> Any:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return default
        obj = obj[key]
    return obj


def secret_paths(value: Any, prefix: str = "") -> Iterable[tuple[str, Any, bool]]:
    """Every leaf string with its dotted path and whether it (or a parent) is secret."""
    def walk(v, path, secret):
        secret = secret or is_secret(v)
        if isinstance(v, dict):
            for k, child in v.items():
                yield from walk(child, f"{path}.{k}" if path else k, secret)
        elif isinstance(v, list):
            for i, child in enumerate(v):
                yield from walk(child, f"{path}[{i}]", secret)
        elif isinstance(v, str):
            yield path, v, secret
    yield from walk(value, prefix, False)


# --- the lab as the policies see it ----------------------------------------------------------

@dataclass
class Res:
    """The parts of a resource every policy uses (from PolicyResource or ResourceValidationArgs)."""
    type: str
    name: str
    urn: str
    props: dict
    additional_secret_outputs: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, r: Any) -> Res:
        opts = getattr(r, "opts", None)
        return cls(type=getattr(r, "resource_type", ""), name=getattr(r, "name", ""), urn=getattr(r, "urn", ""),
                   props=plain(getattr(r, "props", {}) or {}),
                   additional_secret_outputs=list(getattr(opts, "additional_secret_outputs", None) or []))


@dataclass
class Cluster:
    name: str
    urn: str
    role: Any
    host_cluster_name: Any
    kubesphere_version: str
    kubernetes_version: str
    jwt: Any
    jwt_source: str
    components: dict


@dataclass
class KindNode:
    name: str
    urn: str
    image: str
    host_ports: list[int]


@dataclass
class Join:
    host: str
    member: str
    urn: str
    name: str
    kubeconfig_b64: Any
    allow_multiple_hosts: bool
    loopback_reason: str | None


def _labels(props: dict) -> dict:
    return dig(props, "metadata", "labels", default={}) or {}


def _annotations(props: dict) -> dict:
    return dig(props, "metadata", "annotations", default={}) or {}


def cluster_of(r: Res) -> Cluster:
    spec = r.props.get("spec") or {}
    labels, ann = _labels(r.props), _annotations(r.props)
    components = {name: dig(spec, *path) is True for name, path in versions.COMPONENT_CC_PATHS.items()}
    components["edgeruntime"] = (dig(spec, "edgeruntime", "enabled") is True or
                                 dig(spec, "kubeedge", "enabled") is True)
    return Cluster(
        name=labels.get(names.CLUSTER_LABEL) or r.name, urn=r.urn,
        role=dig(spec, "multicluster", "clusterRole", default="none"),
        host_cluster_name=dig(spec, "multicluster", "hostClusterName"),
        kubesphere_version=str(labels.get(names.CC_VERSION_LABEL, "")),
        kubernetes_version=str(ann.get(names.K8S_VERSION_ANNOTATION, "")),
        jwt=dig(spec, "authentication", "jwtSecret", default=""),
        jwt_source=str(ann.get(names.JWT_SOURCE_ANNOTATION, "")),
        components=components,
    )


def kind_node_of(r: Res) -> KindNode | None:
    env = r.props.get("environment") or {}
    text = env.get(names.ENV_KIND_CONFIG) if isinstance(env, dict) else None
    if not isinstance(text, str) or is_unknown(text):
        return None
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return None
    nodes = doc.get("nodes") or [{}]
    ports = [m.get("hostPort") for n in nodes for m in (n.get("extraPortMappings") or []) if m.get("hostPort")]
    return KindNode(name=str(doc.get("name") or env.get(names.ENV_CLUSTER) or r.name), urn=r.urn,
                    image=str(env.get(names.ENV_NODE_IMAGE) or nodes[0].get("image") or ""), host_ports=ports)


def join_of(r: Res) -> Join:
    labels, ann = _labels(r.props), _annotations(r.props)
    return Join(host=str(labels.get(names.HOST_LABEL, "")), member=str(labels.get(names.MEMBER_LABEL, "")),
                urn=r.urn, name=r.name,
                kubeconfig_b64=dig(r.props, "spec", "connection", "kubeconfig"),
                allow_multiple_hosts=str(ann.get(names.MULTI_HOST_ANNOTATION, "")).lower() == "true",
                loopback_reason=ann.get(names.LOOPBACK_ANNOTATION))


# What the program registered, per URN, as the per-resource analysis saw it (the inputs). The
# engine hands stack validations each resource's provider outputs instead, and those are empty for
# Kubernetes objects whose cluster does not exist yet (every kind stack in preview). The engine calls
# the per-resource analysis for every resource before the stack analysis, in the same process.
REGISTERED: dict[str, Res] = {}


def record(args: Any) -> None:
    r = Res.of(args)
    REGISTERED[r.urn] = r


@dataclass
class Tenant:
    """A tenant step: the cluster it applies on and the objects it applies (kslab/render/tenants.py)."""
    cluster: str
    urn: str
    name: str
    objects: list[dict]
    password: Any  # a user's password (secret; unknown in preview when kslab generates it), else None

    def of_kind(self, kind: str) -> list[dict]:
        return [o for o in self.objects if o.get("kind") == kind]


def tenant_of(r: Res) -> Tenant | None:
    env = r.props.get("environment") or {}
    text = env.get(names.ENV_TENANT_OBJECTS) if isinstance(env, dict) else None
    if not isinstance(text, str) or is_unknown(text):
        return None
    try:
        objects = json.loads(text)
    except ValueError:
        return None
    return Tenant(cluster=str(env.get(names.ENV_CLUSTER) or ""), urn=r.urn, name=r.name,
                  objects=objects if isinstance(objects, list) else [], password=env.get(names.ENV_TENANT_PASSWORD))


@dataclass
class LabView:
    clusters: dict[str, Cluster]
    kind_nodes: dict[str, KindNode]
    joins: list[Join]
    resources: list[Res]

    @property
    def tenants(self) -> list[Tenant]:
        return [t for r in self.resources if r.type == TENANT_TYPE and (t := tenant_of(r)) is not None]

    @classmethod
    def of(cls, resources: Iterable[Any]) -> LabView:
        res = [r if isinstance(r, Res) else REGISTERED.get(getattr(r, "urn", ""), None) or Res.of(r)
               for r in resources]
        clusters = {}
        for r in res:
            if r.type == CC_TYPE:
                c = cluster_of(r)
                clusters[c.name] = c
        kind_nodes = {}
        for r in res:
            if r.type == KIND_CLUSTER_TYPE:
                node = kind_node_of(r)
                if node:
                    kind_nodes[node.name] = node
        joins = [join_of(r) for r in res if r.type == JOIN_TYPE]
        return cls(clusters, kind_nodes, joins, res)


def decode_kubeconfig(value: Any) -> str | None:
    try:
        return base64.b64decode(str(value)).decode()
    except Exception:
        return None
