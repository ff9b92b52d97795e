"""What `make status` knows about a running lab, and what it finds wrong with it (pure: no I/O).

`kslab/cli/status.py` reads the facts from the clusters into these records (kslab/cli/status_facts.py, whose
names are re-exported here); this module turns them into findings (one line each, with its fix), a table, a JSON
document and a state per cluster and join that the topology picture (kslab/cli/graph.py) colours. Nothing here
holds a secret: the jwtSecrets are compared where they are read and only the verdict is kept.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from kslab.cli.status_facts import (
    BUILT_IN_IAM,
    BUILT_IN_PREFIX,
    CHURN_CHANGES,
    DEFAULT_SAMPLE_SECONDS,
    FEDERATED_GROUP,
    FEDERATED_IAM_KINDS,
    FEDERATED_VERSION,
    KUBEFED_MANAGED_SELECTOR,
    MAX_SAMPLE_SECONDS,
    MEMBER_GROUP,
    MEMBER_VERSION,
    ChurningObject,
    ClusterStatus,
    JoinStatus,
    LabStatus,
    SharedObject,
    TenantPlacement,
    declared,
    expected_status_keys,
    is_built_in,
    reported_role,
)

__all__ = [
    "BUILT_IN_IAM", "BUILT_IN_PREFIX", "CHURN_CHANGES", "DEFAULT_SAMPLE_SECONDS", "FAILED", "FEDERATED_GROUP",
    "FEDERATED_IAM_KINDS", "FEDERATED_VERSION", "KUBEFED_MANAGED_SELECTOR", "MAX_SAMPLE_SECONDS", "MEMBER_GROUP",
    "MEMBER_VERSION", "READY", "STATES", "STUCK_DELETING_SECONDS", "UNKNOWN", "WAITING", "ChurningObject",
    "ClusterStatus", "Finding", "JoinStatus", "LabStatus", "SharedObject", "TenantPlacement", "as_json",
    "cluster_state", "declared",
    "expected_status_keys", "findings", "is_built_in", "join_state", "reported_role", "table",
]

# The states a cluster or a join is drawn and listed in.
READY, WAITING, FAILED, UNKNOWN = "ready", "waiting", "failed", "unknown"
STATES = (READY, WAITING, FAILED, UNKNOWN)

# A Cluster deleting for longer than this is stuck (a normal unjoin takes seconds).
STUCK_DELETING_SECONDS = 30


@dataclass
class Finding:
    kind: str
    subject: str
    message: str
    fix: str

    def line(self) -> str:
        return f"{self.subject}: {self.message} -> fix: {self.fix}"


def _roles_agree(declared: str, reported: str | None) -> bool:
    return reported is None or reported == declared or (reported == "not host" and declared != "host")


def findings(lab: LabStatus) -> list[Finding]:
    """Everything wrong with the lab, one line each with its fix."""
    stack = lab.stack
    if not lab.up:
        return [Finding("not-up", f"stack {stack}", "the lab has not been brought up (the stack has no outputs)",
                        f"make up STACK={stack}")]
    by_name = {c.name: c for c in lab.clusters}
    refresh_up = f"tools/lab.sh refresh {stack} --yes && make up STACK={stack}"
    found: list[Finding] = []
    for c in lab.clusters:
        found += _cluster_findings(stack, c, refresh_up)
    for j in lab.joins:
        found += _join_findings(stack, j, by_name, refresh_up)
    found += [_shared_object_finding(stack, s) for s in lab.shared_objects]
    found += [_churn_finding(o) for o in lab.churning]
    found += tenant_findings(lab)
    return found


def _cluster_findings(stack: str, c: ClusterStatus, refresh_up: str) -> list[Finding]:
    """One cluster: not up, refusing or unreachable, not installed, a failed component, its role drifted."""
    subject = f"cluster {c.name}"
    if not c.in_outputs:
        return [Finding("not-up", subject, "is declared but not in the stack's outputs (added since the "
                        "last up, or that up failed)", f"make up STACK={stack}")]
    if c.reachable is False and c.refused:
        return [Finding("cluster-refuses", subject,
                        f"its API server cannot be used with the lab's kubeconfig ({c.unreachable_reason})",
                        f"{refresh_up} (takes the cluster's current kubeconfig)")]
    if c.reachable is False:
        start = (f"docker start {c.name}-control-plane if its node is only stopped; if the cluster was "
                 f"deleted: {refresh_up}" if c.backend == "kind"
                 else "bring its API server back (the server of its kubeconfig)")
        return [Finding("cluster-unreachable", subject,
                        f"its API server does not answer ({c.unreachable_reason or 'unreachable'})", start)]
    if c.reachable is None:
        return []
    if not c.cc_found:
        return [Finding("not-installed", subject, "has no ks-installer ClusterConfiguration "
                        "(deleted out of band?)", refresh_up)]
    found = [Finding("install-failed", subject, f"the installer marked {key} failed",
                     f"read the installer's log: {_kubectl(stack, c)} -n kubesphere-system "
                     f"logs deploy/ks-installer; then make up STACK={stack}")
             for key, state in sorted(c.components.items()) if state == "failed"]
    if c.cc_role is not None and c.cc_role != c.role:
        found.append(Finding("role-drift", subject,
                             f"the ClusterConfiguration says clusterRole {c.cc_role!r}, the stack declares "
                             f"{c.role!r} (changed by hand)",
                             f"{refresh_up} (puts the declared role back; the installer then runs again)"))
    elif c.cc_role is not None and not _roles_agree(c.cc_role, c.reported_role):
        found.append(Finding("role-drift", subject,
                             f"the cluster reports role {c.reported_role!r} in kubesphere-config, its "
                             f"ClusterConfiguration says {c.cc_role!r} (the installer has not applied it)",
                             f"{_kubectl(stack, c)} -n kubesphere-system rollout restart "
                             f"deploy/ks-installer, and watch its log"))
    return found


def _join_findings(stack: str, j: JoinStatus, by_name: dict[str, ClusterStatus], refresh_up: str) -> list[Finding]:
    """One join, as its host (when reachable) sees it: unreadable, stuck deleting, its member away, not joined or
    not ready, insecure, a jwtSecret that differs."""
    subject = f"join {j.name}"
    member, host = by_name.get(j.member), by_name.get(j.host)
    if host is None or host.reachable is not True:
        return []
    if j.read_error:
        return [Finding("join-unreadable", subject, f"{j.host}'s objects for the join cannot be read "
                        f"({j.read_error})", f"check the lab's credentials on {j.host}; {refresh_up}")]
    found = []
    if j.deleting_since and j.finalizers and (j.deleting_seconds or 0) >= STUCK_DELETING_SECONDS:
        found.append(_stuck_deleting_finding(stack, j, subject))
    found += _join_health_findings(stack, j, host, subject, refresh_up)
    if j.insecure:
        found.append(Finding("insecure-join", subject,
                             f"{j.host} reaches {j.member} with insecure-skip-tls-verify (no CA check)",
                             f"give {j.member} a kubeconfig with its certificate-authority-data (kubectl "
                             f"config view --flatten --raw --minify), then make up STACK={stack}"))
    if j.jwt_matches is False and member is not None:
        found.append(_jwt_mismatch_finding(stack, j, host, member, subject, refresh_up))
    return found


def _stuck_deleting_finding(stack: str, j: JoinStatus, subject: str) -> Finding:
    return Finding("cluster-stuck-deleting", subject,
                   f"the Cluster {j.member} on {j.host} has been deleting since {j.deleting_since}, "
                   f"held by finalizer(s) {', '.join(j.finalizers)}",
                   # Narrowest first: the member back ends it by itself; forcing only this
                   # join touches nothing else; a destroy removes the whole lab.
                   f"bring {j.member} back (its API server) so the controller can finish the unjoin, "
                   f"then `make up STACK={stack}` makes the Cluster again if the join is still in "
                   f"kslab:joins; if {j.member} is gone for good, remove only this join from "
                   f"kslab:joins and run KSLAB_FORCE_UNJOIN=1 make up STACK={stack} (forces this "
                   f"unjoin alone); last resort: KSLAB_FORCE_UNJOIN=1 make destroy STACK={stack}, "
                   "which removes the whole lab (every cluster kslab made, every install and join)")


def _join_health_findings(stack: str, j: JoinStatus, host: ClusterStatus, subject: str,
                          refresh_up: str) -> list[Finding]:
    """At most one of: the member unreachable from its host, no Cluster object, a Cluster not Ready."""
    member_away = j.member_reachable is False or j.kubefed_offline is True or j.kubefed_ready == "False"
    if member_away and not j.deleting_since:
        seen = ("KubeFedCluster Offline" if j.kubefed_offline else "its API server does not answer here"
                if j.member_reachable is False else "KubeFedCluster not Ready: /healthz is not ok")
        return [Finding("member-unreachable", subject,
                        f"member {j.member} is unreachable from host {j.host} ({seen}); WARNING: if the "
                        f"host's ks-apiserver restarts now it hangs at cache sync and the whole console "
                        f"of {j.host} stays down",
                        f"bring {j.member} back; if it is gone for good, remove the join from kslab:joins "
                        f"and run KSLAB_FORCE_UNJOIN=1 make up STACK={stack}")]
    if j.cluster_found is False and not member_away:
        return [Finding("not-joined", subject, f"{j.host} has no Cluster object for {j.member} "
                        "(deleted out of band?)", refresh_up)]
    if j.conditions.get("Ready") == "False" and not member_away:
        return [Finding("join-not-ready", subject, f"the Cluster {j.member} on {j.host} is not Ready",
                        f"{_kubectl(stack, host)} describe cluster {j.member}; then "
                        f"make up STACK={stack}")]
    return []


def _jwt_mismatch_finding(stack: str, j: JoinStatus, host: ClusterStatus, member: ClusterStatus, subject: str,
                          refresh_up: str) -> Finding:
    # Which side moved: a kubesphere-config that no longer matches its own cc was edited by hand (the
    # installer writes it from the cc); if both match their cc, the member's cc was changed.
    edited = host if host.jwt_in_cc is False else member if member.jwt_in_cc is False else None
    if edited is not None:
        where = f"{edited.name}'s kubesphere-config was edited by hand; its ClusterConfiguration differs"
        fix = (f"{_kubectl(stack, edited)} -n kubesphere-system rollout restart deploy/ks-installer "
               "(the installer writes kubesphere-config from the ClusterConfiguration again)")
    else:
        where = f"{j.member}'s ClusterConfiguration jwtSecret was changed"
        fix = f"{refresh_up} (puts the host's jwtSecret back)"
    return Finding("jwt-mismatch", subject,
                   f"the jwtSecret of {j.member} differs from {j.host}'s ({where}); logins made on "
                   f"{j.host} are refused on {j.member}", fix)


def _shared_object_finding(stack: str, s: SharedObject) -> Finding:
    how = ("identical templates, so nothing fights yet, but an edit on one host is overwritten from the other"
           if s.identical else "different templates, so the member's copy is overwritten back and forth")
    if s.built_in:
        return Finding("federated-clash", f"member {s.member}",
                       f"built-in {s.kind} {s.name!r} is federated to it from {len(s.hosts)} hosts "
                       f"({', '.join(s.hosts)}; each installs its own): {how}. Two hosts of one member "
                       "are not supported upstream (kubesphere#6466)",
                       "do not delete it (each host needs it); keep one host per member: remove one of "
                       f"the member's joins from kslab:joins and make up STACK={stack}")
    others = s.hosts[1:]
    return Finding("federated-clash", f"member {s.member}",
                   f"{s.kind} {s.name!r} is federated to it from {len(s.hosts)} hosts "
                   f"({', '.join(s.hosts)}): {how}",
                   f"keep {s.name!r} on {s.hosts[0]} only: delete it on {', '.join(others)} (on each: "
                   f"kubectl --kubeconfig <(tools/lab.sh output {stack} kubeconfig-<host> --show-secrets) "
                   f"delete {s.kind}.{MEMBER_GROUP} {s.name})")


_FEDERATED_KIND = {"user": "FederatedUser", "workspace": "FederatedWorkspace"}


def tenant_findings(lab: LabStatus) -> list[Finding]:
    """Each tenant not on a cluster it should be on, with why; each declared user that flaps on a shared member."""
    stack = lab.stack
    by_name = {c.name: c for c in lab.clusters}
    joins = {(j.member, j.host): j for j in lab.joins}
    found = []
    for t in lab.tenants:
        if t.present is not False:
            continue
        join = joins.get((t.cluster, t.home))
        if t.cluster == t.home:
            why, fix = "is not there", f"run `make up STACK={stack}` (kslab applies it there)"
        elif join is not None and join_state(join) != READY:
            why = f"cannot be placed: the member is not joined to {t.home} (join {join_state(join)})"
            fix = f"see the join {join.name} above; KubeFed places it once the join is Ready"
        elif t.federated is False:
            why = (f"has no {_FEDERATED_KIND[t.kind]} on {t.home}: KubeSphere's controller there has not federated it "
                   "yet")
            fix = f"check ks-controller-manager runs on {t.home} with multicluster on"
        else:
            why = f"is not propagated there yet by KubeFed of {t.home}"
            fix = f"wait a sync period; if it stays, check the KubeFedCluster {t.cluster} on {t.home} is Ready"
        if by_name.get(t.cluster) and by_name[t.cluster].reachable is False:
            continue  # the cluster's own finding says it
        found.append(Finding("tenant-missing", t.subject, why, fix))
    users = {(t.name, t.home) for t in lab.tenants if t.kind == "user"}
    for s in lab.shared_objects:
        hosts = [h for h in s.hosts if (s.name, h) in users]
        if s.kind == "users" and len(hosts) > 1:
            found.append(Finding("tenant-flapping", f"user {s.name}",
                                 f"is declared on hosts {', '.join(hosts)}, which both place it on member {s.member}: "
                                 "its copy there flaps for ever (kubesphere#6466)",
                                 f"declare it on one host in kslab:users[].hosts (stack {stack})"))
    return found


def _churn_finding(o: ChurningObject) -> Finding:
    return Finding("churn", f"member {o.member}",
                   f"{o.kind} {o.name!r} changed {o.changes} times in {o.seconds:g} s with no one "
                   "editing it: two hosts are fighting over it",
                   "keep it on one host only (see its federated-clash finding); a built-in one only "
                   "stops when the member has one host")


def _kubectl(stack: str, cluster: ClusterStatus) -> str:
    """kubectl on one of the lab's clusters, with the kubeconfig the stack keeps (never printed)."""
    return f"kubectl --kubeconfig <(tools/lab.sh output {stack} kubeconfig-{cluster.name} --show-secrets)"


def cluster_state(c: ClusterStatus) -> str:
    """ready: installed as declared; waiting: reachable, install not finished; failed: unreachable, a failed
    component or role drift; unknown: not looked at."""
    if c.reachable is None:
        return UNKNOWN
    if not c.in_outputs:
        return UNKNOWN
    if c.reachable is False or any(s == "failed" for s in c.components.values()):
        return FAILED
    if c.cc_role is not None and (c.cc_role != c.role or not _roles_agree(c.cc_role, c.reported_role)):
        return FAILED
    done = c.installed_version is not None and all(c.components.get(k) == "enabled" for k in c.expected_components)
    return READY if c.cc_found and done else WAITING


def join_state(j: JoinStatus) -> str:
    if j.cluster_found is None or j.read_error:
        return UNKNOWN
    if (j.member_reachable is False or j.kubefed_offline or j.kubefed_ready == "False" or j.deleting_since
            or j.jwt_matches is False):
        return FAILED
    if j.cluster_found and j.conditions.get("Ready") == "True":
        return READY
    return WAITING


def as_json(lab: LabStatus, found: list[Finding]) -> dict:
    """The `--json` document (its shape is tested: tests/test_status.py)."""
    return {
        "stack": lab.stack,
        "up": lab.up,
        "clusters": [{**_camel(asdict(c)), "state": cluster_state(c)} for c in lab.clusters],
        "joins": [{**_camel(asdict(j)), "name": j.name, "state": join_state(j)} for j in lab.joins],
        "sharedObjects": [_camel(asdict(s)) for s in lab.shared_objects],
        "churning": [_camel(asdict(o)) for o in lab.churning],
        "tenants": [_camel(asdict(t)) for t in lab.tenants],
        "sampleSeconds": lab.sample_seconds,
        "findings": [asdict(f) for f in found],
    }


def _camel(d: dict) -> dict:
    out = {}
    for key, value in d.items():
        head, *rest = key.split("_")
        out[head + "".join(p.title() for p in rest)] = value
    return out


def _yes_no(value: bool | None, yes: str = "yes", no: str = "NO") -> str:
    return "-" if value is None else (yes if value else no)


def table(lab: LabStatus, found: list[Finding]) -> str:
    """The human view: one row per cluster, one per join, then the findings."""
    rows = [("CLUSTER", "ROLE (declared/cc/reported)", "KUBESPHERE", "API", "STATE", "COMPONENTS", "CONSOLE")]
    for c in lab.clusters:
        comps = ", ".join(f"{k}={v}" for k, v in sorted(c.components.items())) or "-"
        installed = c.installed_version or "-"
        rows.append((c.name, f"{c.role}/{c.cc_role or '-'}/{c.reported_role or '-'}",
                     f"{c.kubesphere_version} (installed {installed})",
                     _yes_no(c.reachable, "reachable", "UNREACHABLE"), cluster_state(c), comps, c.console_url or "-"))
    lines = _columns(rows)
    if lab.joins:
        lines.append("")
        jrows = [("JOIN", "CLUSTER CONDITIONS", "KUBEFEDCLUSTER READY", "HOST REACHES MEMBER", "STATE")]
        for j in lab.joins:
            conds = ", ".join(f"{k}={v}" for k, v in sorted(j.conditions.items())) or (
                "-" if j.cluster_found is None else "no Cluster object" if not j.cluster_found else "none yet")
            reaches = None if j.kubefed_offline is None and j.member_reachable is None else (
                not j.kubefed_offline and j.member_reachable is not False)
            jrows.append((j.name, conds + (" (DELETING)" if j.deleting_since else ""), j.kubefed_ready or "-",
                          _yes_no(reaches), join_state(j)))
        lines += _columns(jrows)
    if lab.tenants:
        lines.append("")
        trows = [("TENANT", "DECLARED ON", "CLUSTER", "THERE")]
        trows += [(f"{t.kind} {t.name}", t.home, t.cluster, _yes_no(t.present, "yes", "NO")) for t in lab.tenants]
        lines += _columns(trows)
    lines.append("")
    if lab.sample_seconds:
        lines.append(f"sampled members of several hosts for {lab.sample_seconds:g} s")
    if found:
        lines.append(f"{len(found)} finding(s):")
        lines += [f"  - [{f.kind}] {f.line()}" for f in found]
    else:
        lines.append("no findings: the lab is as declared")
    return "\n".join(lines)


def _columns(rows: list[tuple]) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
