"""The lab's cross-cluster rules, written once for two callers.

The program checks them on the stack file before anything is registered (kslab/model/spec.py: each finding becomes
a Problem on the field, tagged with its policy, so validationMode 'warn' can leave it to that policy), and the
policy pack checks the same rules on what the program registers (policies/kslab_policies/rules.py). A rule decides
what breaks it and which policy guards it; each caller words the finding for its reader (a stack-file field, or a
registered resource). Inputs are plain names and numbers, so both callers hand over what they have; pure functions.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kslab.model import versions
from kslab.model.contract import PolicyName

ROLES = ("none", "host", "member")
# KubeSphere's hostClusterName for a host whose kubesphere-config sets none: ks-installer writes the key only when
# the cc sets it (ks-installer@v3.2.1/v3.4.1: roles/ks-core/config/templates/kubesphere-config.yaml.j2), and
# ks-apiserver then defaults it (kubesphere@v3.2.1/v3.4.1: pkg/simple/client/multicluster/options.go,
# DefaultHostClusterName).
DEFAULT_HOST_CLUSTER_NAME = "host"


@dataclass(frozen=True)
class Finding:
    """One broken rule: the policy that guards it, what it is about (a cluster, member or join), the value at
    fault (a port, a role, a hostClusterName, a member's hosts, a supported range), and for a value two clusters
    share, the cluster that had it first."""
    policy: PolicyName
    subject: str
    value: Any = None
    first: str = ""


def _repeats(owned: Iterable[tuple[str, Any]]) -> list[tuple[Any, str, str]]:
    """(value, first owner, later owner) for every later owner of a value an earlier owner already has."""
    first: dict[Any, str] = {}
    out = []
    for owner, value in owned:
        if value in first:
            out.append((value, first[value], owner))
        first.setdefault(value, owner)
    return out


def duplicate_host_ports(ports: Iterable[tuple[str, int]]) -> list[Finding]:
    """(cluster, host port) of each kind cluster, in order: each later cluster mapping a port an earlier one maps
    (only the first can start, kind#2509)."""
    return [Finding(PolicyName.DUPLICATE_PORT_OR_NAME, later, port, first)
            for port, first, later in _repeats(ports)]


def duplicate_name(name: str, count: int) -> Finding | None:
    """A cluster name used `count` times (kind would make one cluster, and the stack would lose the other)."""
    return Finding(PolicyName.DUPLICATE_PORT_OR_NAME, name, count) if count > 1 else None


def duplicate_host_cluster_names(hosts: Iterable[tuple[str, str | None]]) -> list[Finding]:
    """(host cluster, hostClusterName or None) of each host, in order: each later host calling itself what an
    earlier one does in federation."""
    return [Finding(PolicyName.DUPLICATE_HOST_CLUSTER_NAME, later, name, first)
            for name, first, later in _repeats((c, h or DEFAULT_HOST_CLUSTER_NAME) for c, h in hosts)]


def invalid_role(cluster: str, role: str) -> Finding | None:
    """A role ks-installer does not know (it ignores it: the cluster is no host and no member)."""
    return None if role in ROLES else Finding(PolicyName.INVALID_ROLE, cluster, role)


def join_side_role(side: str, cluster: str, role: str) -> Finding | None:
    """`side` is 'host' or 'member': a join's cluster on that side must have that role."""
    return None if role == side else Finding(PolicyName.INVALID_ROLE, cluster, role)


def hosts_per_member(joins: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(member, host) of each join -> the members joined to more than one host, with their hosts in order."""
    per: dict[str, list[str]] = {}
    for member, host in joins:
        per.setdefault(member, []).append(host)
    return {m: hosts for m, hosts in per.items() if len(hosts) > 1}


def member_multiple_hosts(member: str, hosts: list[str], opted_in: bool) -> Finding | None:
    """A member of several hosts without the opt-in (unsupported upstream, kubesphere#6466, kubefed#749)."""
    return None if opted_in else Finding(PolicyName.MEMBER_MULTIPLE_HOSTS, member, hosts)


def unsupported_versions(cluster: str, kubesphere_version: str, kubernetes_version: str) -> Finding | None:
    """A KubeSphere release on a Kubernetes version outside the range it supports (versions.py); the value is
    the supported range, as text."""
    if versions.support_level(kubesphere_version, kubernetes_version) != versions.UNSUPPORTED:
        return None
    supported = (versions.supported_range_text(kubesphere_version)
                 if kubesphere_version in versions.KUBESPHERE_RELEASES else "unknown release")
    return Finding(PolicyName.UNSUPPORTED_VERSIONS, cluster, supported)


def users_on_shared_members(user_hosts: Iterable[tuple[str, tuple[str, ...]]],
                            joins: Iterable[tuple[str, str]]) -> list[Finding]:
    """(user, hosts it is declared on) and (member, host) of each join: each user declared on two hosts that share a
    member. Both hosts federate their own User of that name to the member, which flaps for ever (the notes' trap,
    kubesphere#6466); the value is (member, its hosts the user is on)."""
    several = hosts_per_member(joins)
    found = []
    for user, hosts in user_hosts:
        for member, member_hosts in sorted(several.items()):
            shared = [h for h in member_hosts if h in hosts]
            if len(shared) > 1:
                found.append(Finding(PolicyName.USER_ON_SHARED_MEMBER, user, (member, tuple(shared))))
    return found


def workspace_unjoined_clusters(workspace: str, host: str, clusters: Iterable[str],
                                joins: Iterable[tuple[str, str]]) -> list[Finding]:
    """A workspace placed on a cluster that is neither its host nor a member joined to it: KubeFed of that host
    never reaches it, so the workspace never appears there."""
    joined = {m for m, h in joins if h == host}
    return [Finding(PolicyName.WORKSPACE_UNJOINED_CLUSTER, workspace, c, host)
            for c in clusters if c != host and c not in joined]


def weak_admin_password(user: str, global_role: str, weak: bool) -> Finding | None:
    """A platform-admin whose password is the chart's default or a well-known first try (`weak`, from
    tenants.is_weak): anyone who reaches the console owns every cluster of the lab."""
    return Finding(PolicyName.WEAK_ADMIN_PASSWORD, user) if global_role == "platform-admin" and weak else None
