"""The typed lab model: what a stack file describes, once validated (kslab/model/spec.py makes it).

Pure data with the few facts derived from it (a kind cluster's console URL, the images a cluster pulls).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from kslab.model import contract, image_sources, images, versions
from kslab.model.lab_rules import ROLES as ROLES  # the model's roles are the rules' (one source)
from kslab.model.settings import CLUSTER, DEV_WORKSPACE, JOIN, LAB, Setting, choices, scalar_settings

BACKENDS = choices(CLUSTER["backend"])
JWT_MODES = choices(LAB["jwtSecretMode"])
COMPONENTS = tuple(versions.COMPONENT_MEMORY_MIB)
CONSOLE_NODE_PORT: int = CLUSTER["consolePort"].default
FIRST_CONSOLE_HOST_PORT: int = CLUSTER["consoleHostPort"].default

# The lab-wide `kslab:*` settings that hold one value, each with its default and description: kslab/model/settings.py
# declares them (and every other setting) once.
LAB_SETTINGS: dict[str, Setting] = scalar_settings(LAB)
LAB_DEFAULTS: dict[str, Any] = {key: setting.default for key, setting in LAB_SETTINGS.items()}

CLUSTER_FIELDS = set(CLUSTER)
JOIN_FIELDS = set(JOIN)


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    role: str
    backend: str
    kubesphere_version: str
    kubernetes_version: str
    node_image: str | None  # kind only
    host_cluster_name: str | None  # hosts only
    console_host_port: int | None  # kind only
    console_port: int
    pod_subnet: str | None
    service_subnet: str | None
    components: dict[str, bool]
    kubeconfig_path: str | None = None  # existing only
    kubeconfig_secret: str | None = None  # existing only: name of a secret config key
    internal_server: str | None = None  # existing only: server the hosts use
    console_url: str | None = None
    allow_loopback_join: bool = CLUSTER["allowLoopbackJoin"].default
    loopback_reason: str | None = None
    image_check: bool = CLUSTER["imageCheck"].default  # settings.py says what it means

    @property
    def is_kind(self) -> bool:
        return self.backend == "kind"

    @property
    def declared_console_url(self) -> str | None:
        """The console URL the stack file alone gives (kind: its published host port); None for an existing
        cluster without consoleUrl, whose address is known only from its kubeconfig."""
        if self.is_kind:
            return f"http://127.0.0.1:{self.console_host_port}"
        return self.console_url

    @property
    def context_name(self) -> str:
        return f"kind-{self.name}" if self.is_kind else f"kslab-{self.name}"


@dataclass(frozen=True)
class JoinSpec:
    member: str
    host: str

    @property
    def name(self) -> str:
        return f"{self.member}-to-{self.host}"


# The KubeSphere components a developer workspace can take over (settings.DEV_COMPONENTS), and the workspace fields.
DEV_WORKSPACE_FIELDS = set(DEV_WORKSPACE)


@dataclass(frozen=True)
class DevWorkspaceSpec:
    cluster: str
    component: str
    dir: str  # relative to the project directory, or absolute
    keep_files: bool = DEV_WORKSPACE["keepFiles"].default

    @property
    def name(self) -> str:
        return f"{self.cluster}-{self.component}-dev"


@dataclass(frozen=True)
class UserSpec:
    """A KubeSphere user, declared on each of `hosts` (kslab/model/tenant_spec.py)."""
    name: str
    email: str
    global_role: str
    hosts: tuple[str, ...]
    password_secret: str | None = None  # the secret config key of its password; None: kslab makes one


@dataclass(frozen=True)
class WorkspaceMemberSpec:
    user: str
    role: str


@dataclass(frozen=True)
class WorkspaceSpec:
    """A workspace template on `host`, placed on `clusters` (the host and members joined to it)."""
    name: str
    host: str
    manager: str
    clusters: tuple[str, ...]
    members: tuple[WorkspaceMemberSpec, ...] = ()


@dataclass(frozen=True)
class ProjectSpec:
    """A project: a namespace of `workspace` on `cluster`."""
    name: str
    workspace: str
    cluster: str


@dataclass(frozen=True)
class LabSpec:
    clusters: tuple[ClusterSpec, ...]
    joins: tuple[JoinSpec, ...]
    jwt_secret_mode: str
    allow_multiple_hosts: bool
    install_timeout_seconds: int
    join_timeout_seconds: int
    unjoin_timeout_seconds: int
    kind_wait: str
    registry: str
    validation_mode: str = LAB["validationMode"].default
    namespace_override: str = LAB["namespaceOverride"].default
    zone: str = LAB["zone"].default
    warnings: tuple[str, ...] = field(default=())
    dev_workspaces: tuple[DevWorkspaceSpec, ...] = field(default=())
    # kslab:imageSources: kind clusters pull from the lab registry, filled from these (kslab/model/image_sources.py)
    image_sources: image_sources.ImageSources | None = None
    # Tenants (kslab/model/tenant_spec.py): applied on their hosts once the lab's joins are Ready.
    users: tuple[UserSpec, ...] = field(default=())
    workspaces: tuple[WorkspaceSpec, ...] = field(default=())
    projects: tuple[ProjectSpec, ...] = field(default=())

    @property
    def naming(self) -> images.Naming:
        """ks-installer's image naming inputs from kslab:registry, namespaceOverride and zone."""
        return images.Naming(self.registry, self.namespace_override, self.zone)

    def of_stack(self, stack: str, project_dir: str = contract.PROJECT_DIR) -> LabSpec:
        """The lab as stack `stack` of this checkout runs it: its kind clusters pull from the lab's own repositories
        in the lab registry (contract.lab_id), which no other lab writes."""
        if self.image_sources is None:
            return self
        return replace(self, image_sources=replace(self.image_sources,
                                                   lab_id=contract.lab_id(stack, project_dir)))

    def uses_lab_registry(self, cluster: ClusterSpec) -> bool:
        """A kind cluster of a lab with image sources pulls from the lab registry (on kind's network, which an
        existing cluster cannot reach)."""
        return self.image_sources is not None and cluster.is_kind

    def naming_of(self, cluster: ClusterSpec) -> images.Naming:
        """The naming inputs this cluster's cc carries."""
        if self.image_sources is not None and cluster.is_kind:
            return self.image_sources.naming
        return self.naming

    def images_of(self, cluster: ClusterSpec) -> list[images.PlannedImage]:
        return images.plan(cluster.kubesphere_version, cluster.role, cluster.kubernetes_version,
                           self.naming_of(cluster))

    def cluster(self, name: str) -> ClusterSpec:
        return next(c for c in self.clusters if c.name == name)

    def hosts_of(self, member: str) -> list[str]:
        return [j.host for j in self.joins if j.member == member]

    def federation_name(self, cluster: str) -> str:
        """The name a host's KubeSphere knows a cluster by in a placement: a member's Cluster object is named after
        it; the host's own is its hostClusterName."""
        c = self.cluster(cluster)
        return (c.host_cluster_name or c.name) if c.role == "host" else c.name

    def members_of(self, host: str) -> list[str]:
        return [j.member for j in self.joins if j.host == host]

    @property
    def multi_host_members(self) -> list[str]:
        members = [j.member for j in self.joins]
        return sorted({m for m in members if members.count(m) > 1})
