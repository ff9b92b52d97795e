"""The kslab policies: the lab's known traps, checked on what the components register.

Each policy reports which resource/field is wrong and how to fix it. Where a value is
unknown during preview, the policy says so (pulumi-policy shows it as an advisory
"can't run ... during preview") instead of passing silently; `pulumi up` checks again with
the real values before the resource is created. The join kubeconfig policies stay quiet instead:
a kind member's kubeconfig is always unknown in preview, and the join-check step applies the
same rules at apply time.
"""
from __future__ import annotations

from collections import Counter, defaultdict

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from kslab.model import contract as names
from kslab.model import kubeconfig as kc
from kslab.model import lab_rules, versions
from kslab.model.contract import PolicyName

from .facts import (
    CC_TYPE,
    DEPLOYMENT_TYPE,
    JOIN_TYPE,
    K8S_PROVIDER_TYPE,
    KIND_CLUSTER_TYPE,
    STEP_TYPES,
    UNKNOWN_STRING,
    LabView,
    Res,
    decode_kubeconfig,
    dig,
    is_secret,
    is_unknown,
    record,
    secret_paths,
)
from .tenant_rules import flapping_users, users_on_shared_member, weak_admin_password, workspace_unjoined

MANDATORY, ADVISORY = EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY


def _unknown(fields: list[str]) -> None:
    """Say which values could not be checked in preview (shown by the CLI as an advisory)."""
    if fields:
        more = f" (and {len(fields) - 1} more)" if len(fields) > 1 else ""
        raise UnknownValueError(UNKNOWN_STRING, [fields[0] + more])


def _config(args, defaults: dict) -> dict:
    cfg = dict(defaults)
    cfg.update({k: v for k, v in (args.get_config() or {}).items() if k != "enforcementLevel"})
    return cfg


# 1 ------------------------------------------------------------------------------------------
def _jwt_mismatch(args: StackValidationArgs, report: ReportViolation):
    lab = LabView.of(args.resources)
    for j in lab.joins:
        host, member = lab.clusters.get(j.host), lab.clusters.get(j.member)
        if not host or not member:
            continue  # a join to a cluster without KubeSphere is policy 2's finding
        # Equal by construction: the member is given the host's own secret (read after the host's
        # install), or both take the stack's one shared secret.
        if member.jwt_source == f"copy:{host.name}":
            continue
        if member.jwt_source == host.jwt_source == "shared" and (
                is_unknown(member.jwt) or is_unknown(host.jwt) or str(member.jwt) == str(host.jwt)):
            continue
        if is_unknown(member.jwt) or is_unknown(host.jwt):
            report(f"member '{member.name}' jwtSecret cannot be shown equal to host '{host.name}''s (source "
                   f"{member.jwt_source or 'unknown'} vs {host.jwt_source or 'unknown'}): tokens the host issues "
                   "would fail on the member. Fix: kslab:jwtSecretMode shared (or copy with a single host).",
                   member.urn)
        elif not str(member.jwt) or str(member.jwt) != str(host.jwt):
            report(f"member '{member.name}' jwtSecret {'is empty (random)' if not str(member.jwt) else 'differs'} "
                   f"and cannot be shown equal to host '{host.name}''s: tokens the host issues would fail on the "
                   "member. Fix: kslab:jwtSecretMode shared (or copy), never a per-cluster secret.", member.urn)


# 2 ------------------------------------------------------------------------------------------
def _roles(args: StackValidationArgs, report: ReportViolation):
    lab = LabView.of(args.resources)
    for c in lab.clusters.values():
        if lab_rules.invalid_role(c.name, c.role) is not None:
            report(f"cluster '{c.name}': spec.multicluster.clusterRole {c.role!r} is not one of none/host/member. "
                   "Fix: set role to none, host or member.", c.urn)
    for j in lab.joins:
        for side, wanted in ((j.host, "host"), (j.member, "member")):
            c = lab.clusters.get(side)
            if c is None:
                report(f"join '{j.name}': {wanted} '{side}' has no KubeSphere ClusterConfiguration in this stack. "
                       "Fix: join clusters of this stack only.", j.urn)
            elif lab_rules.join_side_role(wanted, side, c.role) is not None:
                report(f"join '{j.name}': {wanted} '{side}' has role {c.role!r}, not '{wanted}'. "
                       f"Fix: set role: {wanted} on '{side}' (before its first install: roles are not undone).", j.urn)


# 3, 4 ----------------------------------------------------------------------------------------
def _join_kubeconfig(args: ResourceValidationArgs):
    if args.resource_type != JOIN_TYPE:
        return None, None
    r = Res.of(args)
    value = dig(r.props, "spec", "connection", "kubeconfig")
    if is_unknown(value):
        # A kind member's kubeconfig exists only once its cluster does. Nothing is missed by staying quiet:
        # `up` runs these policies again on the real value before the join is created, and the join-check
        # step applies the same rules (kubeconfig.join_problems) before that (issue #20: no advisory noise in
        # every preview of the shipped stacks).
        return None, None
    return r, decode_kubeconfig(value)


def _insecure_tls(args: ResourceValidationArgs, report: ReportViolation):
    r, text = _join_kubeconfig(args)
    if r is None:
        return
    if text is None:
        report(f"join '{r.name}': spec.connection.kubeconfig is not base64 kubeconfig. Fix: let kslab render it.")
        return
    for message, policy in kc.join_findings(text, allow_loopback=True):
        if policy == kc.INSECURE_POLICY:
            report(f"join '{r.name}': {message}.")


def _loopback(args: ResourceValidationArgs, report: ReportViolation):
    r, text = _join_kubeconfig(args)
    if r is None or text is None:
        return
    cfg = _config(args, {"allowLoopbackWithReason": False})
    reason = dig(r.props, "metadata", "annotations", names.LOOPBACK_ANNOTATION)
    allowed = bool(cfg["allowLoopbackWithReason"]) and bool(reason)
    for message, policy in kc.join_findings(text, allow_loopback=allowed):
        if policy == kc.LOOPBACK_POLICY:
            report(f"join '{r.name}': {message}.")


# 5 ------------------------------------------------------------------------------------------
def _k8s_version(lab: LabView, cluster: str) -> str:
    """A kind cluster's version comes from its node image; an existing one's from the cc annotation."""
    node = lab.kind_nodes.get(cluster)
    from_image = versions.node_image_k8s_version(node.image) if node else None
    c = lab.clusters.get(cluster)
    return from_image or (c.kubernetes_version if c else "")


def _versions(args: StackValidationArgs, report: ReportViolation):
    lab = LabView.of(args.resources)
    for c in lab.clusters.values():
        k8s = _k8s_version(lab, c.name)
        found = lab_rules.unsupported_versions(c.name, c.kubesphere_version, k8s)
        if found is not None:
            report(f"cluster '{c.name}': KubeSphere {c.kubesphere_version or '?'} on Kubernetes {k8s or '?'} is "
                   f"outside the supported range ({found.value}). Fix: change nodeImage/kubernetesVersion or "
                   "kubesphereVersion (see README, Versions).", c.urn)
    for j in lab.joins:
        for side in (j.host, j.member):
            c = lab.clusters.get(side)
            release = versions.KUBESPHERE_RELEASES.get(c.kubesphere_version) if c else None
            parsed = versions.parse_k8s_version(_k8s_version(lab, side)) if c else None
            if release and release.join_needs_legacy_sa_token and parsed and parsed[1] >= 24:
                report(f"join '{j.name}': KubeSphere {c.kubesphere_version} on '{side}' waits for an auto-created "
                       f"ServiceAccount token secret that Kubernetes {_k8s_version(lab, side)} never makes, so "
                       "the join hangs. Fix: KubeSphere >= v3.3.0 or Kubernetes < 1.24.", j.urn)


# 6 ------------------------------------------------------------------------------------------
def _ports_and_names(args: StackValidationArgs, report: ReportViolation):
    lab = LabView.of(args.resources)
    owners: dict[int, list] = defaultdict(list)
    nodes = list(lab.kind_nodes.values())
    for found in lab_rules.duplicate_host_ports((node.name, port) for node in nodes for port in node.host_ports):
        owners[found.value] = owners[found.value] or [lab.kind_nodes[found.first]]
        owners[found.value].append(lab.kind_nodes[found.subject])
    for port, sharing in sorted(owners.items()):
        report(f"host port {port} is mapped by kind clusters {', '.join(n.name for n in sharing)}: only the first "
               "can start. Fix: give each cluster its own consoleHostPort.", sharing[1].urn)
    # Count the raw resources: the view keys clusters by name and would hide a duplicate.
    kind_names = Counter(str(r.props["environment"].get(names.ENV_CLUSTER)) for r in lab.resources
                         if r.type == KIND_CLUSTER_TYPE and isinstance(r.props.get("environment"), dict))
    cc_names = Counter(str(dig(r.props, "metadata", "labels", names.CLUSTER_LABEL))
                       for r in lab.resources if r.type == CC_TYPE)
    for name in sorted(set(kind_names) | set(cc_names)):
        count = max(kind_names[name], cc_names[name])
        if lab_rules.duplicate_name(name, count) is not None:
            report(f"cluster name '{name}' is used {count} times. Fix: give every cluster its own name.")


# 7 ------------------------------------------------------------------------------------------
SECRET_STDOUT_STEPS = ("kind-create", "read-jwt", "gen-secret")


def _looks_secret(text: str) -> bool:
    return any(marker in text for marker in ("client-key-data", "BEGIN RSA PRIVATE KEY", "BEGIN EC PRIVATE KEY",
                                             "BEGIN PRIVATE KEY", "\ntoken:", "    token: "))


def _plaintext_secrets(args: ResourceValidationArgs, report: ReportViolation):
    r = Res.of(args)
    found: list[str] = []
    unknown: list[str] = []
    if r.type == CC_TYPE:
        jwt = dig(r.props, "spec", "authentication", "jwtSecret", default="")
        if str(jwt) and not is_secret(jwt) and not is_unknown(jwt):
            found.append("spec.authentication.jwtSecret")
    if r.type == JOIN_TYPE:
        value = dig(r.props, "spec", "connection", "kubeconfig")
        if value is not None and not is_secret(value):
            (unknown if is_unknown(value) else found).append("spec.connection.kubeconfig")
    if r.type == K8S_PROVIDER_TYPE:
        value = r.props.get("kubeconfig")
        if value is not None and not is_secret(value) and not is_unknown(value):
            found.append("kubeconfig")
    if r.type in STEP_TYPES:
        env = r.props.get("environment") or {}
        for key, value in (env.items() if isinstance(env, dict) else []):
            if names.is_secret_env(key) and not is_secret(value) and not is_secret(env):
                (unknown if is_unknown(value) else found).append(f"environment.{key}")
        if str(r.props.get("step", "")) in SECRET_STDOUT_STEPS and "stdout" not in r.additional_secret_outputs:
            found.append("stdout (not in additionalSecretOutputs)")
        if env and "environment" not in r.additional_secret_outputs and any(
                names.is_secret_env(key) for key in env):
            found.append("environment output (not in additionalSecretOutputs)")
    for path, value, secret in secret_paths(r.props):
        if not secret and not is_unknown(value) and _looks_secret(value) and path not in found:
            found.append(path)
    if found:
        report(f"'{r.name}' ({r.type}) holds credentials in plaintext: {', '.join(found)}. They would be stored "
               "unencrypted in the state. Fix: pass them as Pulumi secrets (pulumi.Output.secret / "
               "`pulumi config set --secret`).")
    _unknown([f"{r.name}.{u}" for u in unknown])


# 8 ------------------------------------------------------------------------------------------
def _hosts_per_member(lab: LabView) -> dict[str, list]:
    """The joins of each member joined to several hosts (lab_rules.hosts_per_member decides which)."""
    several = lab_rules.hosts_per_member((j.member, j.host) for j in lab.joins)
    return {m: [j for j in lab.joins if j.member == m] for m in several}


def _multi_host(args: StackValidationArgs, report: ReportViolation):
    for member, joins in _hosts_per_member(LabView.of(args.resources)).items():
        if lab_rules.member_multiple_hosts(member, [j.host for j in joins],
                                           all(j.allow_multiple_hosts for j in joins)) is not None:
            report(f"member '{member}' is joined to {len(joins)} hosts ({', '.join(j.host for j in joins)}); "
                   "one member belongs to one host (kubesphere#6466, kubefed#749). Fix: join it to one host, or "
                   "set kslab:allowMultipleHosts: true to run the experiment knowingly.", joins[1].urn)


def _dual_host_experiment(args: StackValidationArgs, report: ReportViolation):
    for member, joins in _hosts_per_member(LabView.of(args.resources)).items():
        if all(j.allow_multiple_hosts for j in joins):
            report(f"EXPERIMENT: member '{member}' is managed by {', '.join(j.host for j in joins)} (opted in). "
                   "Expect: same-named users/roles created on both hosts flap forever on the member; deleting on one "
                   "host leaves an undeletable Federated object that reappears; both hosts federate through the same "
                   f"ServiceAccount '{member}-kubesphere', and an unjoin removes only that host's KubeFedCluster "
                   "(the member keeps every host's kubefed objects). Avoid same-named resources across hosts."
                   + flapping_users(args, member), joins[0].urn)


# 9 ------------------------------------------------------------------------------------------
def _host_cluster_names(args: StackValidationArgs, report: ReportViolation):
    lab = LabView.of(args.resources)
    hosts = [(c.name, c.host_cluster_name) for c in sorted(lab.clusters.values(), key=lambda c: c.name)
             if c.role == "host"]
    for found in lab_rules.duplicate_host_cluster_names(hosts):
        report(f"hosts '{found.first}' and '{found.subject}' both set hostClusterName '{found.value}': both would "
               "call themselves the same in federation. Fix: set a distinct hostClusterName per host.",
               lab.clusters[found.subject].urn)


# 10 -----------------------------------------------------------------------------------------
MEMORY_DEFAULTS = {"budgetMib": 8192, "perClusterMib": {}, "componentMib": {}}


def _memory(args: StackValidationArgs, report: ReportViolation):
    cfg = _config(args, MEMORY_DEFAULTS)
    lab = LabView.of(args.resources)
    parts = {c.name: versions.cluster_memory_mib(c.kubesphere_version, c.components, c.name in lab.kind_nodes,
                                                 cfg.get("perClusterMib") or {}, cfg.get("componentMib") or {})
             for c in lab.clusters.values()}
    total, budget = sum(parts.values()), int(cfg["budgetMib"])
    if total > budget:
        detail = ", ".join(f"{n} ~{m} MiB" for n, m in sorted(parts.items()))
        report(f"the lab needs about {total} MiB ({detail}), over the {budget} MiB budget (a 4-core/8 GB "
               "laptop by default): installs may be OOM-killed. Fix: fewer clusters or components, or raise "
               "kslab-memory-budget.budgetMib in the policy config if the machine is bigger.")


# 11 -----------------------------------------------------------------------------------------
def _unpinned(args: ResourceValidationArgs, report: ReportViolation):
    r = Res.of(args)
    if r.type == KIND_CLUSTER_TYPE:
        env = r.props.get("environment") or {}
        image = env.get(names.ENV_NODE_IMAGE) if isinstance(env, dict) else None
        if isinstance(image, str) and not is_unknown(image) and not versions.image_is_pinned(image):
            report(f"'{r.name}': node image {image!r} has no exact vX.Y.Z tag or digest, so the cluster's "
                   "Kubernetes version can change under you. Fix: pin e.g. kindest/node:v1.25.16.")
    if r.type == DEPLOYMENT_TYPE:
        for c in dig(r.props, "spec", "template", "spec", "containers", default=[]) or []:
            image = str(c.get("image", ""))
            if "ks-installer" in image and not (versions.parse_k8s_version(image.rsplit(":", 1)[-1])
                                                or "@sha256:" in image):
                report(f"'{r.name}': installer image {image!r} is not pinned to a release. Fix: use a "
                       "kubesphereVersion such as v3.4.1.")


# 12 -----------------------------------------------------------------------------------------
def _inotify(args: StackValidationArgs, report: ReportViolation):
    cfg = _config(args, {"maxClustersWithoutNote": 2})
    lab = LabView.of(args.resources)
    if len(lab.kind_nodes) > int(cfg["maxClustersWithoutNote"]):
        report(f"{len(lab.kind_nodes)} kind clusters on one machine: raise inotify limits first or the later "
               "clusters fail to start (kind known issues): sudo sysctl -w fs.inotify.max_user_watches=524288 "
               "fs.inotify.max_user_instances=512. kslab's preflight checks this before creating clusters.")


def _schema(properties: dict) -> PolicyConfigSchema:
    return PolicyConfigSchema(properties=properties)


def _collect(args: ResourceValidationArgs, report: ReportViolation):
    record(args)


POLICIES = [
    ResourceValidationPolicy(
        name=PolicyName.REGISTERED_INPUTS, enforcement_level=ADVISORY, validate=_collect,
        description="Never reports: records what the program registers, for the stack policies (see facts.py)."),
    StackValidationPolicy(
        name=PolicyName.JWT_SECRET_MISMATCH, enforcement_level=MANDATORY, validate=_jwt_mismatch,
        description="A member's jwtSecret must equal its host's (seed notes; the console's validation API)."),
    StackValidationPolicy(
        name=PolicyName.INVALID_ROLE, enforcement_level=MANDATORY, validate=_roles,
        description="Roles are none/host/member; a join's host is a host and its member a member."),
    ResourceValidationPolicy(
        name=PolicyName.JOIN_INSECURE_TLS, enforcement_level=MANDATORY, validate=_insecure_tls,
        description="A join kubeconfig with insecure-skip-tls-verify panics kubefed (kubesphere#4891, kubefed#1504)."),
    ResourceValidationPolicy(
        name=PolicyName.JOIN_LOOPBACK_SERVER, enforcement_level=MANDATORY, validate=_loopback,
        description="A join kubeconfig must not point at a loopback address the host cannot reach.",
        config_schema=_schema({"allowLoopbackWithReason": {"type": "boolean", "default": False}})),
    StackValidationPolicy(
        name=PolicyName.UNSUPPORTED_VERSIONS, enforcement_level=MANDATORY, validate=_versions,
        description="KubeSphere and Kubernetes versions must be a supported pair; 3.2.x cannot join on k8s >= 1.24."),
    StackValidationPolicy(
        name=PolicyName.DUPLICATE_PORT_OR_NAME, enforcement_level=MANDATORY, validate=_ports_and_names,
        description="Clusters need distinct console host ports and distinct names."),
    ResourceValidationPolicy(
        name=PolicyName.PLAINTEXT_SECRET, enforcement_level=MANDATORY, validate=_plaintext_secrets,
        description="Kubeconfigs, tokens and jwtSecrets must be Pulumi secrets, never plaintext in state."),
    StackValidationPolicy(
        name=PolicyName.MEMBER_MULTIPLE_HOSTS, enforcement_level=MANDATORY, validate=_multi_host,
        description="A member joined to several hosts needs the explicit dual-host opt-in (kubesphere#6466)."),
    StackValidationPolicy(
        name=PolicyName.DUAL_HOST_EXPERIMENT, enforcement_level=ADVISORY, validate=_dual_host_experiment,
        description="An opted-in dual-host lab: the flapping risks, spelled out."),
    StackValidationPolicy(
        name=PolicyName.DUPLICATE_HOST_CLUSTER_NAME, enforcement_level=MANDATORY, validate=_host_cluster_names,
        description="Two hosts must not share a hostClusterName."),
    StackValidationPolicy(
        name=PolicyName.MEMORY_BUDGET, enforcement_level=ADVISORY, validate=_memory,
        description="The lab's estimated memory against a budget (default: a 4-core/8 GB laptop).",
        config_schema=_schema({"budgetMib": {"type": "integer", "default": 8192},
                               "perClusterMib": {"type": "object"}, "componentMib": {"type": "object"}})),
    ResourceValidationPolicy(
        name=PolicyName.UNPINNED_VERSIONS, enforcement_level=ADVISORY, validate=_unpinned,
        description="Node images and the installer should be pinned to exact versions."),
    StackValidationPolicy(
        name=PolicyName.USER_ON_SHARED_MEMBER, enforcement_level=MANDATORY, validate=users_on_shared_member,
        description="A user declared on two hosts of one member flaps there for ever (kubesphere#6466)."),
    StackValidationPolicy(
        name=PolicyName.WORKSPACE_UNJOINED_CLUSTER, enforcement_level=MANDATORY, validate=workspace_unjoined,
        description="A workspace is placed only on its host and members joined to that host."),
    ResourceValidationPolicy(
        name=PolicyName.WEAK_ADMIN_PASSWORD, enforcement_level=MANDATORY, validate=weak_admin_password,
        description="A platform-admin's password must not be weak or the chart's default (P@88w0rd)."),
    StackValidationPolicy(
        name=PolicyName.INOTIFY_NOTE, enforcement_level=ADVISORY, validate=_inotify,
        description="More than two kind clusters need higher inotify limits.",
        config_schema=_schema({"maxClustersWithoutNote": {"type": "integer", "default": 2}})),
]

POLICY_NAMES = [p.name for p in POLICIES]
MANDATORY_POLICIES = [p.name for p in POLICIES if p.enforcement_level == MANDATORY]
