"""The facts `make status` reads about a running lab (pure: no I/O): the records `kslab/cli/status.py` fills
from the clusters, the objects it knows to read, and the lab as declared before anything is read.
`kslab/cli/findings.py` judges these records (and re-exports every name here).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kslab.model import versions
from kslab.model.spec import ClusterSpec, LabSpec

# Default and bound of the window over which member objects are sampled for churn (`--sample-seconds`).
DEFAULT_SAMPLE_SECONDS = 5.0
MAX_SAMPLE_SECONDS = 120.0
# An object whose resourceVersion changed this many times within the window is fighting over: one change may
# be a legitimate edit, two in a few seconds with no one editing is two controllers overwriting each other.
CHURN_CHANGES = 2

# What two hosts both propagate to one member: KubeSphere's federated IAM kinds (group types.kubefed.io/v1beta1,
# kubesphere@v3.4.1:staging/src/kubesphere.io/api/iam/v1alpha2/federated_types.go), each created from the plain
# object of the same name (e.g. pkg/controller/user/user_controller.go, createFederatedUser), and the member's
# copy (iam.kubesphere.io/v1alpha2) that kubefed's sync controller writes with label kubefed.io/managed=true
# (kubefed@v0.8.1:pkg/controller/util/managedlabel.go).
FEDERATED_GROUP, FEDERATED_VERSION = "types.kubefed.io", "v1beta1"
MEMBER_GROUP, MEMBER_VERSION = "iam.kubesphere.io", "v1alpha2"
FEDERATED_IAM_KINDS = (  # (member plural, federated plural)
    ("users", "federatedusers"),
    ("globalroles", "federatedglobalroles"),
    ("globalrolebindings", "federatedglobalrolebindings"),
    ("workspaceroles", "federatedworkspaceroles"),
    ("workspacerolebindings", "federatedworkspacerolebindings"),
)
KUBEFED_MANAGED_SELECTOR = "kubefed.io/managed=true"
# What every host installs itself, so two hosts of one member always both federate it (and, for the admin user,
# whose password each host encrypts with its own bcrypt salt, fight over it): ks-installer@v3.2.1/v3.4.1
# roles/ks-core/ks-core/files/ks-core/templates/account.yaml (User admin) and
# roles/ks-core/prepare/files/ks-init/role-templates.yaml (GlobalRoles, GlobalRoleBindings, role-template-*).
BUILT_IN_IAM = {
    "users": frozenset({"admin"}),
    "globalroles": frozenset({"anonymous", "authenticated", "pre-registration", "platform-admin", "platform-regular",
                              "platform-self-provisioner", "users-manager", "workspaces-manager"}),
    "globalrolebindings": frozenset({"admin", "anonymous", "authenticated", "pre-registration"}),
}
BUILT_IN_PREFIX = "role-template-"


def is_built_in(member_plural: str, name: str) -> bool:
    return name in BUILT_IN_IAM.get(member_plural, ()) or name.startswith(BUILT_IN_PREFIX)


@dataclass
class ClusterStatus:
    name: str
    backend: str                   # kind or existing
    role: str                      # as the stack file declares it
    kubesphere_version: str        # declared
    kubernetes_version: str        # declared
    console_url: str | None
    reachable: bool | None = None  # None: not looked at (no kubeconfig: the lab is not up)
    unreachable_reason: str | None = None
    # it answers but refuses the lab's credentials (401/403), or its kubeconfig is unusable
    refused: bool = False
    in_outputs: bool = True        # the stack's outputs have its kubeconfig (False: declared after the last up)
    cc_found: bool = False
    cc_role: str | None = None     # spec.multicluster.clusterRole of the ClusterConfiguration
    reported_role: str | None = None  # what the cluster itself says (kubesphere-config), see reported_role()
    installed_version: str | None = None  # status.core.version, written last by a finished run
    components: dict[str, str] = field(default_factory=dict)  # cc status key -> status
    expected_components: list[str] = field(default_factory=list)  # status keys a finished run writes
    jwt_in_cc: bool | None = None  # the cc spec's jwtSecret equals kubesphere-config's (None: not compared)


@dataclass
class JoinStatus:
    member: str
    host: str
    cluster_found: bool | None = None      # the host's Cluster object for the member (None: host not read)
    conditions: dict[str, str] = field(default_factory=dict)  # Cluster condition type -> status
    deleting_since: str | None = None      # metadata.deletionTimestamp
    deleting_seconds: float | None = None  # how long it has been deleting
    read_error: str | None = None          # the host's objects for this join could not be read
    finalizers: list[str] = field(default_factory=list)
    kubefed_ready: str | None = None       # KubeFedCluster Ready condition: True/False, "absent", None: not read
    kubefed_offline: bool | None = None    # KubeFedCluster Offline condition is True (the host cannot reach it)
    member_reachable: bool | None = None   # the member's API server answers here
    insecure: bool = False                 # the join's kubeconfig skips TLS verification
    jwt_matches: bool | None = None        # member's and host's kubesphere-config jwtSecret (None: not compared)

    @property
    def name(self) -> str:
        return f"{self.member}-to-{self.host}"


@dataclass
class SharedObject:
    """A federated object of one name that several hosts propagate to one member."""
    member: str
    kind: str        # the member's plural (users, globalroles, ...)
    name: str
    hosts: list[str]
    identical: bool  # the hosts' templates are the same (no fight until one of them changes)
    built_in: bool = False


@dataclass
class ChurningObject:
    member: str
    kind: str
    name: str
    changes: int
    seconds: float


@dataclass
class TenantPlacement:
    """One tenant on one cluster it is declared or placed on (a user on its host and the host's members, a
    workspace on its placement, a project on its cluster), and what reading the cluster found."""
    kind: str                      # user, workspace or project
    name: str
    home: str                      # the cluster it is declared on (a project: its own)
    cluster: str                   # where it should be
    present: bool | None = None    # None: not read (the cluster cannot be read)
    federated: bool | None = None  # the home has its Federated object (users, workspaces on a host), None: n/a
    workspace: str | None = None   # a project's workspace

    @property
    def subject(self) -> str:
        return f"{self.kind} {self.name} on {self.cluster}"


@dataclass
class LabStatus:
    stack: str
    up: bool  # the stack has outputs: `up` has run
    clusters: list[ClusterStatus]
    joins: list[JoinStatus]
    shared_objects: list[SharedObject] = field(default_factory=list)
    churning: list[ChurningObject] = field(default_factory=list)
    sample_seconds: float = 0.0
    tenants: list[TenantPlacement] = field(default_factory=list)


def reported_role(release: versions.KubeSphereRelease, kubesphere_config: dict) -> str | None:
    """The role a cluster itself reports. v3.4.1 writes multicluster.clusterRole into kubesphere-config; v3.2.1
    writes a multicluster section (with `enable: true`) for hosts only, so a cluster without it reports
    "not host" (member or none cannot be told apart there). roles/ks-core/config/templates/
    kubesphere-config.yaml.j2 at both tags. None while kubesphere-config is not written."""
    if not kubesphere_config:
        return None
    section = kubesphere_config.get("multicluster")
    section = section if isinstance(section, dict) else {}
    if release.kubesphere_config_has_role:
        role = section.get("clusterRole")
        return str(role) if role else None
    return "host" if section.get("enable") is True else "not host"


def expected_status_keys(spec: ClusterSpec) -> list[str]:
    """The cc status keys a finished run of the cluster's release writes for what the lab asks."""
    release = versions.KUBESPHERE_RELEASES.get(spec.kubesphere_version)
    if release is None:
        return []
    keys = {release.component_status_keys.get(c) for c, on in spec.components.items() if on}
    if spec.role == "host":
        keys.add(release.component_status_keys.get("multicluster", "multicluster"))
    return sorted(k for k in keys if k)


def declared(spec: LabSpec, stack: str) -> LabStatus:
    """The lab as the stack file declares it, with nothing read yet (every state unknown)."""
    clusters = [ClusterStatus(c.name, c.backend, c.role, c.kubesphere_version, c.kubernetes_version,
                              c.declared_console_url,
                              expected_components=expected_status_keys(c)) for c in spec.clusters]
    joins = [JoinStatus(j.member, j.host) for j in spec.joins]
    return LabStatus(stack, False, clusters, joins, tenants=declared_tenants(spec))


def declared_tenants(spec: LabSpec) -> list[TenantPlacement]:
    """Where each tenant should be: a user on its hosts and every member joined to them (KubeSphere federates a
    User to every cluster, createFederatedUser's empty clusterSelector), a workspace on its placement, a project on
    its cluster."""
    out = []
    for u in spec.users:
        for host in u.hosts:
            out += [TenantPlacement("user", u.name, host, c) for c in (host, *spec.members_of(host))]
    for w in spec.workspaces:
        out += [TenantPlacement("workspace", w.name, w.host, c) for c in w.clusters]
    out += [TenantPlacement("project", p.name, p.cluster, p.cluster, workspace=p.workspace) for p in spec.projects]
    return out
