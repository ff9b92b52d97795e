"""The lab's cross-cluster rules, written once for two callers.

The program checks them on the stack file before anything is registered (kslab/model/spec.py: each finding becomes
a Problem tagged with its policy, so validationMode 'warn' can leave it to that policy), and the policy pack checks
the same rules on what the program registers (policies/kslab_policies/rules.py). Inputs are plain names and
numbers, so both callers hand over what they have; pure functions, no Pulumi.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kslab.model import versions
from kslab.model.contract import PolicyName

ROLES = ("none", "host", "member")
# ks-installer's default hostClusterName for a host that sets none (roles/ks-core/config defaults: "host").
DEFAULT_HOST_CLUSTER_NAME = "host"


@dataclass(frozen=True)
class Finding:
    """One broken rule: which policy it is, the cluster (or member) it is about, what is wrong, what to do."""
    policy: PolicyName
    subject: str
    what: str
    fix: str

    def __str__(self) -> str:
        return f"{self.what}. Fix: {self.fix}."


def _repeats(owned: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(key, first owner, later owner) for every later owner of a key that an earlier one already has."""
    first: dict[str, str] = {}
    out = []
    for owner, key in owned:
        if key in first:
            out.append((key, first[key], owner))
        first.setdefault(key, owner)
    return out


def duplicate_host_ports(ports: Iterable[tuple[str, int]]) -> list[Finding]:
    """(cluster, host port) of each kind cluster: a port two clusters map lets only the first start."""
    return [Finding(PolicyName.DUPLICATE_PORT_OR_NAME, later,
                    f"host port {port} is also the console host port of cluster '{first}': only the first can start",
                    "give each kind cluster its own consoleHostPort")
            for port, first, later in _repeats((c, str(p)) for c, p in ports)]


def duplicate_name(name: str, count: int) -> Finding | None:
    """A cluster name used `count` times (kind would make one cluster, and the stack would lose the other)."""
    if count < 2:
        return None
    return Finding(PolicyName.DUPLICATE_PORT_OR_NAME, name, f"cluster name '{name}' is used {count} times",
                   "give every cluster its own name")


def duplicate_host_cluster_names(hosts: Iterable[tuple[str, str | None]]) -> list[Finding]:
    """(host cluster, hostClusterName or None) of each host: two hosts calling themselves the same in federation."""
    return [Finding(PolicyName.DUPLICATE_HOST_CLUSTER_NAME, later,
                    f"hosts '{first}' and '{later}' both set hostClusterName '{hcn}': two hosts would both call "
                    "themselves the same in federation",
                    "set a distinct hostClusterName per host (defaults to the cluster name)")
            for hcn, first, later in _repeats((c, h or DEFAULT_HOST_CLUSTER_NAME) for c, h in hosts)]


def invalid_role(cluster: str, role: str) -> Finding | None:
    if role in ROLES:
        return None
    return Finding(PolicyName.INVALID_ROLE, cluster, f"role {role!r} is not a KubeSphere cluster role",
                   "use one of none, host, member")


def join_side_role(join: str, side: str, cluster: str, role: str) -> Finding | None:
    """`side` is 'host' or 'member': the join's cluster on that side must have that role."""
    if role == side:
        return None
    return Finding(PolicyName.INVALID_ROLE, join,
                   f"{side} '{cluster}' has role {role!r}, but a join's {side} must have role '{side}'",
                   f"set role: {side} on cluster '{cluster}' (before its first install: roles are not undone)")


def hosts_per_member(joins: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(member, host) of each join -> the members joined to more than one host, with their hosts in order."""
    per: dict[str, list[str]] = {}
    for member, host in joins:
        per.setdefault(member, []).append(host)
    return {m: hosts for m, hosts in per.items() if len(hosts) > 1}


def member_multiple_hosts(member: str, hosts: list[str]) -> Finding:
    return Finding(PolicyName.MEMBER_MULTIPLE_HOSTS, member,
                   f"member '{member}' is joined to {len(hosts)} hosts ({', '.join(hosts)}); one member belongs to "
                   "one host upstream (kubesphere#6466, kubefed#749)",
                   "join it to one host, or set kslab:allowMultipleHosts: true to run the dual-host experiment "
                   "knowingly")


def unsupported_versions(cluster: str, kubesphere_version: str, kubernetes_version: str) -> Finding | None:
    """A KubeSphere release on a Kubernetes version outside the range it supports (versions.py)."""
    if versions.support_level(kubesphere_version, kubernetes_version) != versions.UNSUPPORTED:
        return None
    supported = (versions.supported_range_text(kubesphere_version)
                 if kubesphere_version in versions.KUBESPHERE_RELEASES else "unknown release")
    return Finding(PolicyName.UNSUPPORTED_VERSIONS, cluster,
                   f"Kubernetes {kubernetes_version or '?'} is not supported by KubeSphere "
                   f"{kubesphere_version or '?'} (supported: {supported})",
                   "pick a Kubernetes version in that range (nodeImage or kubernetesVersion), or another "
                   "kubesphereVersion")
