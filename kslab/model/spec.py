"""The lab topology: the single loader from raw `kslab:*` config to the typed model (kslab/model/types.py).

Pure code: no Pulumi calls. `parse_lab` either returns a fully valid LabSpec or raises LabConfigError listing
every problem (field, bad value, fix), so the program stops before a single resource is registered. One cluster's
fields are read in cluster_spec.py, the rules across clusters are lab_rules.py's (the policy pack checks the same).
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from dataclasses import replace
from typing import Any

from kslab.model import image_sources, lab_rules, versions
from kslab.model.cluster_spec import IMAGE_REF, REGISTRY_PATTERN, parse_cluster, parse_components
from kslab.model.contract import PolicyName
from kslab.model.dev_workspace_spec import parse_dev_workspaces
from kslab.model.fields import WRONG_TYPE, LabConfigError, Problem, yaml_kind
from kslab.model.settings import JOIN, LAB, Secret, read, text_keys, valid
from kslab.model.tenant_spec import parse_tenants
from kslab.model.types import (
    JOIN_FIELDS,
    ROLES,
    ClusterSpec,
    DevWorkspaceSpec,
    JoinSpec,
    LabSpec,
)

__all__ = ["JWT_SECRET_KEY", "ROLES", "STRING_KEYS", "STRUCTURED_KEYS", "ClusterSpec", "DevWorkspaceSpec",
           "JoinSpec", "LabConfigError", "LabSpec", "Problem", "check_config_keys", "parse_lab", "parse_lab_problems",
           "settle"]


# The top-level keys, as settings.py declares them: the strings (Pulumi hands every top-level scalar over as text),
# the rest that are not secrets (lists, mappings, numbers, booleans), and the secret ones.
STRING_KEYS = text_keys(LAB)
STRUCTURED_KEYS = tuple(k for k, s in LAB.items() if k not in STRING_KEYS and not isinstance(s.kind, Secret))
JWT_SECRET_KEY = LAB["jwtSecret"].key


def check_config_keys(keys: list[str], kubeconfig_secret_keys: list[str]) -> list[Problem]:
    """Unknown top-level `kslab:*` keys (a typo keeps a default silently), with the nearest valid one.
    `keys` are without the namespace; the secret keys clusters name as kubeconfigSecret are allowed."""
    known = set(LAB) | set(kubeconfig_secret_keys)
    problems = []
    for key in sorted(set(keys) - known):
        close = difflib.get_close_matches(key, sorted(known), n=1)
        problems.append(Problem(f"kslab:{key}", "(set)", "is not a kslab setting",
                                f"did you mean kslab:{close[0]}?" if close else
                                "remove it; settings: " + ", ".join(sorted(set(STRUCTURED_KEYS) | set(STRING_KEYS)))))
    return problems


# A registry namespace (distribution's path component grammar, one component).
_NAMESPACE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


def _naming(problems: list[Problem], raw: dict[str, Any]) -> tuple[str, str]:
    """kslab:namespaceOverride and kslab:zone: ks-installer's own naming inputs, passed to the cc as they are."""
    namespace = read(problems, "kslab:namespaceOverride", LAB["namespaceOverride"], raw.get("namespaceOverride"))
    if namespace is WRONG_TYPE:
        namespace = LAB["namespaceOverride"].default
    elif namespace and not _NAMESPACE.match(namespace):
        problems.append(Problem("kslab:namespaceOverride", namespace,
                                "is not one registry namespace (lower-case letters, digits, '.', '_', '-')",
                                "use e.g. kubesphereio, the namespace every image sits in on your registry"))
        namespace = LAB["namespaceOverride"].default
    zone = read(problems, "kslab:zone", LAB["zone"], raw.get("zone"))
    return namespace, valid(LAB["zone"], zone)


def parse_lab(raw: dict[str, Any], config_keys: list[str] | None = None, *,
              jwt_secret: str | None = None) -> LabSpec:
    """Parse and validate the `kslab:*` config (keys without the namespace). `config_keys`, when given, are
    every key the stack sets (unknown ones are refused); `jwt_secret` is the decrypted kslab:jwtSecret, if set,
    checked here and never put into a message."""
    return settle(*parse_lab_problems(raw, config_keys, jwt_secret=jwt_secret))


def parse_lab_problems(raw: dict[str, Any], config_keys: list[str] | None = None, *,
                       jwt_secret: str | None = None) -> tuple[LabSpec, list[Problem]]:
    """parse_lab without the verdict: the clusters and joins that parsed, and every problem found."""
    problems: list[Problem] = []
    warnings: list[str] = []
    defaults = _top_defaults(problems, raw)
    clusters_raw = _clusters_raw(problems, raw.get("clusters"))
    clusters = [spec for i, item in enumerate(clusters_raw)
                if (spec := parse_cluster(problems, i, item, defaults)) is not None]
    _across_clusters(problems, clusters_raw, clusters)
    joins = _parse_joins(problems, raw.get("joins"), {c.name: c for c in clusters})
    allow_multiple_hosts = _lab(problems, raw, "allowMultipleHosts")
    jwt_mode = _lab(problems, raw, "jwtSecretMode")
    _multi_host_members(problems, warnings, joins, allow_multiple_hosts, jwt_mode)
    warnings += _cluster_warnings(clusters, {j.member for j in joins})
    registry = _registry(problems, raw.get("registry"))
    namespace_override, zone = _naming(problems, raw)
    sources, source_problems = image_sources.parse_sources(raw.get("imageSources"), raw.get("imageOverrides"),
                                                           raw.get("labRegistry"), raw.get("imageArchives"))
    problems.extend(source_problems)
    kind_wait = valid(LAB["kindWait"], _lab(problems, raw, "kindWait"))
    _check_jwt_secret(problems, jwt_secret, jwt_mode)
    users, workspaces, projects = parse_tenants(problems, raw, clusters, joins, allow_multiple_hosts is True,
                                                warnings)
    if config_keys is not None:
        # Every secret key a cluster or user entry names, even of an entry with other problems.
        named = [item.get("kubeconfigSecret") for item in clusters_raw if isinstance(item, dict)]
        users_raw = raw.get("users")
        named += [item.get("passwordSecret") for item in (users_raw if isinstance(users_raw, list) else [])
                  if isinstance(item, dict)]
        problems.extend(check_config_keys(config_keys, [k for k in named if isinstance(k, str)]))
    mode = _lab(problems, raw, "validationMode")
    lab = LabSpec(
        clusters=tuple(clusters), joins=joins,
        jwt_secret_mode=valid(LAB["jwtSecretMode"], jwt_mode),
        validation_mode=valid(LAB["validationMode"], mode),
        allow_multiple_hosts=allow_multiple_hosts,
        install_timeout_seconds=_lab(problems, raw, "installTimeoutSeconds"),
        join_timeout_seconds=_lab(problems, raw, "joinTimeoutSeconds"),
        unjoin_timeout_seconds=_lab(problems, raw, "unjoinTimeoutSeconds"),
        kind_wait=kind_wait, registry=registry, namespace_override=namespace_override, zone=zone,
        warnings=tuple(warnings),
        dev_workspaces=parse_dev_workspaces(problems, raw.get("devWorkspaces"), {c.name for c in clusters}),
        image_sources=sources, users=users, workspaces=workspaces, projects=projects,
    )
    return lab, problems


def _lab(problems: list[Problem], raw: dict[str, Any], key: str) -> Any:
    """One top-level scalar setting, read as settings.LAB declares it."""
    return read(problems, f"kslab:{key}", LAB[key], raw.get(key))


def _top_defaults(problems: list[Problem], raw: dict[str, Any]) -> dict[str, Any]:
    """kslab:kubesphereVersion, nodeImage and components: the defaults of every cluster. A bad value is reported
    once, here; the clusters then fall back to kslab's defaults."""
    top_version = _lab(problems, raw, "kubesphereVersion")
    if top_version is not WRONG_TYPE and top_version not in versions.KUBESPHERE_RELEASES:
        number = re.match(r"^\d+(\.\d+)*$", top_version)
        problems.append(Problem("kslab:kubesphereVersion", top_version,
                                "is not a KubeSphere release kslab knows"
                                + (" (YAML reads an unquoted 3.40 as the number 3.4)" if number else ""),
                                "use one of " + ", ".join(versions.KUBESPHERE_RELEASES)))
    top_image = _lab(problems, raw, "nodeImage")
    if top_image is not WRONG_TYPE and (not IMAGE_REF.match(top_image)
                                        or versions.node_image_k8s_version(top_image) is None):
        problems.append(Problem("kslab:nodeImage", top_image, "is not an image reference with an exact vX.Y.Z tag",
                                f"use e.g. {versions.DEFAULT_NODE_IMAGE}"))
        top_image = WRONG_TYPE
    top_components = raw.get("components")
    if top_components is None:
        top_components = {}
    if not isinstance(top_components, dict):
        problems.append(Problem("kslab:components", top_components,
                                "must be a mapping of component: true/false, but YAML read "
                                f"{yaml_kind(top_components)}",
                                "e.g. components: {devops: true}"))
        top_components = {}
    return {
        "kubesphereVersion": top_version if top_version in versions.KUBESPHERE_RELEASES
        else LAB["kubesphereVersion"].default,
        "nodeImage": top_image if top_image is not WRONG_TYPE else LAB["nodeImage"].default,
        "components": parse_components(problems, "kslab:components", top_components),
    }


def _clusters_raw(problems: list[Problem], clusters_raw: Any) -> list[Any]:
    if clusters_raw is not None and not isinstance(clusters_raw, list):
        problems.append(Problem("kslab:clusters", clusters_raw,
                                f"must be a list of clusters, but YAML read {yaml_kind(clusters_raw)}",
                                "start each cluster with '- ', e.g. clusters: [{name: host, role: host}]"))
        return []
    if not clusters_raw:
        problems.append(Problem("kslab:clusters", clusters_raw, "must list at least one cluster",
                                "add e.g. clusters: [{name: host, role: host}] to the stack file"))
        return []
    return clusters_raw


def _across_clusters(problems: list[Problem], clusters_raw: list[Any], clusters: list[ClusterSpec]) -> None:
    """Names, console host ports, subnets and hostClusterNames no two clusters may share."""
    seen: dict[str, int] = {}
    for i, item in enumerate(clusters_raw):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str):
            if name in seen:
                problems.append(Problem(f"kslab:clusters[{i}].name", name,
                                        f"duplicates kslab:clusters[{seen[name]}].name",
                                        "give every cluster its own name"))
            seen.setdefault(name, i)
    ports = [(c.name, c.console_host_port) for c in clusters if c.console_host_port is not None]
    for found in lab_rules.duplicate_host_ports(ports):
        problems.append(Problem(f"kslab:clusters[{found.subject}].consoleHostPort", found.value,
                                f"is also the console host port of cluster '{found.first}'",
                                "give each kind cluster its own consoleHostPort", found.policy))
    subnets: list[tuple[str, str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for c in clusters:
        for label, value in (("podSubnet", c.pod_subnet), ("serviceSubnet", c.service_subnet)):
            if value:
                net = ipaddress.ip_network(value)
                for other_name, other_label, other in subnets:
                    if net.overlaps(other):
                        problems.append(Problem(f"kslab:clusters[{c.name}].{label}", value,
                                                f"overlaps {other_label} of cluster '{other_name}' ({other})",
                                                "give each cluster distinct pod and service subnets"))
                subnets.append((c.name, label, net))
    hosts = [(c.name, c.host_cluster_name) for c in clusters if c.role == "host" and c.host_cluster_name]
    for found in lab_rules.duplicate_host_cluster_names(hosts):
        problems.append(Problem(f"kslab:clusters[{found.subject}].hostClusterName", found.value,
                                f"is also the hostClusterName of '{found.first}': two hosts would both call "
                                "themselves the same",
                                "set a distinct hostClusterName per host (defaults to the cluster name)",
                                found.policy))


def _parse_joins(problems: list[Problem], joins_raw: Any, by_name: dict[str, ClusterSpec]) -> tuple[JoinSpec, ...]:
    if joins_raw is None:
        joins_raw = []
    if not isinstance(joins_raw, list):
        problems.append(Problem("kslab:joins", joins_raw, "must be a list of {member, host}",
                                "e.g. joins: [{member: member, host: host}]"))
        joins_raw = []
    joins: list[JoinSpec] = []
    for i, item in enumerate(joins_raw):
        join = _parse_join(problems, f"kslab:joins[{i}]", item, by_name)
        if join is not None and join in joins:
            problems.append(Problem(f"kslab:joins[{i}]", item, "joins this member to this host twice (kubefed#749: "
                                    "the sync controllers fight)", "remove the duplicate join"))
        elif join is not None:
            joins.append(join)
    return tuple(joins)


def _parse_join(problems: list[Problem], path: str, item: Any, by_name: dict[str, ClusterSpec]) -> JoinSpec | None:
    if not isinstance(item, dict):
        problems.append(Problem(path, item, "must be a mapping {member, host}", "e.g. {member: member, host: host}"))
        return None
    for unknown in sorted(set(item) - JOIN_FIELDS):
        problems.append(Problem(f"{path}.{unknown}", item[unknown], "is not a join field", "use member and host"))
    sides = {side: read(problems, f"{path}.{side}", JOIN[side], item.get(side)) for side in ("member", "host")}
    if any(v is WRONG_TYPE for v in sides.values()):
        return None
    if sides["member"] is not None and sides["member"] == sides["host"]:
        problems.append(Problem(path, item, "joins a cluster to itself", "join a member to a different host"))
        return None
    ok = True
    for side in ("member", "host"):
        target = sides[side]
        if target is None:
            problems.append(Problem(f"{path}.{side}", target, "is missing", f"name the join's {side} cluster"))
            ok = False
        elif target not in by_name:
            problems.append(Problem(f"{path}.{side}", target, "names no cluster of this stack",
                                    "use one of " + ", ".join(sorted(by_name)) if by_name else "add the cluster"))
            ok = False
        elif (found := lab_rules.join_side_role(side, target, by_name[target].role)) is not None:
            problems.append(Problem(f"{path}.{side}", target,
                                    f"has role '{found.value}', but a join's {side} must have role '{side}'",
                                    f"set role: {side} on cluster '{target}'", found.policy))
    return JoinSpec(member=item["member"], host=item["host"]) if ok else None


def _multi_host_members(problems: list[Problem], warnings: list[str], joins: tuple[JoinSpec, ...],
                        allow_multiple_hosts: bool, jwt_mode: Any) -> None:
    for member, hosts in sorted(lab_rules.hosts_per_member((j.member, j.host) for j in joins).items()):
        found = lab_rules.member_multiple_hosts(member, hosts, allow_multiple_hosts)
        if found is not None:
            problems.append(Problem("kslab:joins", f"{member} -> {', '.join(hosts)}",
                                    f"member '{member}' is joined to {len(hosts)} hosts; one member belongs to one "
                                    "host upstream (kubesphere#6466)",
                                    "join it to one host, or set kslab:allowMultipleHosts: true to run the "
                                    "dual-host experiment knowingly", found.policy))
        else:
            warnings.append(
                f"EXPERIMENT: member '{member}' is joined to {len(hosts)} hosts ({', '.join(hosts)}). Unsupported "
                "upstream (kubesphere#6466): same-named users/roles flap forever on the member, a delete on one host "
                f"leaves an undeletable Federated object, and both hosts federate through the same ServiceAccount "
                f"'{member}-kubesphere' on the member; an unjoin removes only that host's KubeFedCluster, so the "
                "member keeps every host's kubefed objects (README 'Destroy').")
        if jwt_mode == "copy":
            problems.append(Problem("kslab:jwtSecretMode", jwt_mode,
                                    f"cannot copy one host's jwtSecret when member '{member}' has several hosts",
                                    "use jwtSecretMode: shared so every cluster gets the same secret",
                                    PolicyName.JWT_SECRET_MISMATCH))


def _cluster_warnings(clusters: list[ClusterSpec], joined_members: set[str]) -> list[str]:
    warnings = []
    for c in clusters:
        if c.role == "member" and c.name not in joined_members:
            warnings.append(f"cluster '{c.name}' has role member but no join: it will wait for a host that "
                            "never adds it")
        level = versions.support_level(c.kubesphere_version, c.kubernetes_version) if c.kubernetes_version else None
        if level == versions.EXPERIMENTAL:
            warnings.append(f"cluster '{c.name}': Kubernetes {c.kubernetes_version} is only experimental/partial "
                            f"for KubeSphere {c.kubesphere_version}")
        if c.allow_loopback_join:
            warnings.append(f"cluster '{c.name}': loopback join rule switched off ({c.loopback_reason})")
    return warnings


def _registry(problems: list[Problem], value: Any) -> str:
    registry = read(problems, "kslab:registry", LAB["registry"], value)
    if registry is WRONG_TYPE:
        return str(LAB["registry"].default)
    if registry and not REGISTRY_PATTERN.match(registry.rstrip("/")):
        problems.append(Problem("kslab:registry", registry,
                                "is not a registry host[:port][/path] (no scheme, no leading '/')",
                                "use e.g. registry.local:5000 or registry.local:5000/kubesphere"))
        return str(registry)
    return str(registry).rstrip("/")  # a harmless trailing '/' (the cc and the image names get none)


def _check_jwt_secret(problems: list[Problem], jwt_secret: str | None, jwt_mode: Any) -> None:
    """The value is never shown: only what is wrong with it."""
    if jwt_secret is None:
        return
    if not jwt_secret.strip():
        problems.append(Problem("kslab:jwtSecret", "(secret)", "is empty",
                                "set a real secret (pulumi config set --secret jwtSecret ...), or remove it to "
                                "let kslab generate one"))
    if jwt_mode == "copy":
        problems.append(Problem("kslab:jwtSecret", "(secret)",
                                "is ignored in jwtSecretMode 'copy' (each member copies its host's)",
                                "remove kslab:jwtSecret, or use jwtSecretMode: shared to use it"))


def settle(lab: LabSpec, problems: list[Problem]) -> LabSpec:
    """Raise every problem at once; in validationMode 'warn' the policy-guarded ones become warnings."""
    if lab.validation_mode == "warn":
        soft = [p for p in problems if p.policy]
        problems = [p for p in problems if not p.policy]
        lab = replace(lab, warnings=lab.warnings + tuple(
            f"validationMode warn: {p} (left to policy {p.policy})" for p in soft))
    if problems:
        raise LabConfigError(problems)
    return lab
