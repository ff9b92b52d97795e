"""The tenants' policies (kslab:users, kslab:workspaces): on what the tenant steps register, the rules the loader
checks on the stack file (kslab/model/lab_rules.py), so validationMode 'warn' leaves them to the pack."""
from __future__ import annotations

from collections import defaultdict

from pulumi_policy import ReportViolation, ResourceValidationArgs, StackValidationArgs

from kslab.model import lab_rules, tenants

from .facts import TENANT_TYPE, LabView, Res, dig, is_unknown, tenant_of


def users_by_host(lab: LabView) -> dict[str, tuple[str, ...]]:
    """Each user the lab declares, with the hosts it is applied on."""
    hosts: dict[str, list[str]] = defaultdict(list)
    for t in lab.tenants:
        for user in t.of_kind("User"):
            hosts[user["metadata"]["name"]].append(t.cluster)
    return {u: tuple(h) for u, h in hosts.items()}


def users_on_shared_member(args: StackValidationArgs, report: ReportViolation):
    lab = LabView.of(args.resources)
    joined = [(j.member, j.host) for j in lab.joins]
    for found in lab_rules.users_on_shared_members(users_by_host(lab).items(), joined):
        member, hosts = found.value
        joins = [j for j in lab.joins if j.member == member]
        if all(j.allow_multiple_hosts for j in joins):
            continue  # the opted-in experiment: kslab-dual-host-experiment names the user
        report(f"user '{found.subject}' is declared on hosts {', '.join(hosts)}, which share member '{member}': each "
               "host federates its own User of that name there and it flaps for ever (kubesphere#6466). Fix: declare "
               "it on one host, or set kslab:allowMultipleHosts: true to run the experiment knowingly.",
               joins[0].urn)


def workspace_unjoined(args: StackValidationArgs, report: ReportViolation):
    lab = LabView.of(args.resources)
    for t in lab.tenants:
        cluster = lab.clusters.get(t.cluster)
        if cluster is None:
            continue
        own = str(cluster.host_cluster_name or t.cluster)
        joined = [(j.member, own) for j in lab.joins if j.host == t.cluster]
        for template in t.of_kind("WorkspaceTemplate"):
            placed = [str(c.get("name")) for c in dig(template, "spec", "placement", "clusters", default=[]) or []]
            for found in lab_rules.workspace_unjoined_clusters(template["metadata"]["name"], own, placed, joined):
                report(f"workspace '{found.subject}' is placed on '{found.value}', which is not joined to its host "
                       f"'{t.cluster}': KubeFed of '{t.cluster}' never places it there. Fix: join '{found.value}' to "
                       f"'{t.cluster}' in kslab:joins, or drop it from the workspace's clusters.", t.urn)


def weak_admin_password(args: ResourceValidationArgs, report: ReportViolation):
    r = Res.of(args)
    if r.type != TENANT_TYPE:
        return
    t = tenant_of(r)
    if t is None or not t.of_kind("User") or t.password is None or is_unknown(t.password):
        return  # no user, or a password kslab generates (unknown until it is made; always strong)
    roles = [dig(b, "roleRef", "name") for b in t.of_kind("GlobalRoleBinding")]
    for user in t.of_kind("User"):
        for role in roles:
            found = lab_rules.weak_admin_password(user["metadata"]["name"], str(role), tenants.is_weak(str(t.password)))
            if found is not None:
                report(f"'{r.name}': platform-admin '{found.subject}' has a weak or default password (anyone who "
                       "reaches the console owns every cluster of the lab). Fix: set a strong one in its "
                       "passwordSecret key, or leave passwordSecret out and kslab makes one.")


def flapping_users(args: StackValidationArgs, member: str) -> str:
    lab = LabView.of(args.resources)
    users = [f.subject for f in lab_rules.users_on_shared_members(users_by_host(lab).items(),
                                                                  ((j.member, j.host) for j in lab.joins))
             if f.value[0] == member]
    return (f" The stack declares user(s) {', '.join(users)} on more than one of them: they will flap "
            "(kubesphere#6466)." if users else "")
