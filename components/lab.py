"""The whole lab from a validated LabSpec: clusters, roles, installs and joins.

Only real dependencies become edges: clusters and installs proceed in parallel;
a join waits for both its installs; in jwtSecretMode 'copy' a member's install waits
for its host's secret.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import pulumi

from components.clusters import (
    ClusterBase,
    ExistingCluster,
    ExistingClusterArgs,
    KindCluster,
    KindClusterArgs,
    node_image_of,
)
from components.join import KubeFedJoin, KubeFedJoinArgs
from components.kubesphere import KubeSphereInstall, KubeSphereInstallArgs, MulticlusterRole, MulticlusterRoleArgs
from components.step_resources import LabStep, ops_step, secret
from components.tenants import (
    KubeSphereProject,
    KubeSphereUser,
    KubeSphereWorkspace,
    ProjectArgs,
    TenantTarget,
    UserArgs,
    WorkspaceArgs,
)
from kslab.model import contract as names
from kslab.model import requests, versions
from kslab.model.spec import ClusterSpec, DevWorkspaceSpec, LabSpec
from kslab.render import devworkspace


@dataclass
class DevWorkspaceArgs:
    spec: DevWorkspaceSpec
    cluster: ClusterSpec
    kubeconfig: pulumi.Output[str]
    # The cluster's API server address as other clusters reach it (a kind node's container IP).
    cluster_address: pulumi.Output[str]
    install: pulumi.Resource


class DevWorkspace(pulumi.ComponentResource):
    """A KubeSphere component taken over for local development (README "Develop KubeSphere against the lab"):
    its workspace folder, the Deployment at 0 replicas and the Service pointing at this machine; given back
    exactly as it was when the workspace leaves the config or the lab is destroyed."""

    def __init__(self, name: str, args: DevWorkspaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{names.TYPE_PREFIX}:DevWorkspace", name, None, opts)
        w = args.spec
        self.directory = devworkspace.workspace_dir(names.PROJECT_DIR, w.dir)
        self.step = ops_step(
            f"{name}-takeover", "dev-up",
            requests.DevWorkspace(cluster=w.cluster, ks_version=args.cluster.kubesphere_version, component=w.component,
                                  directory=self.directory, keep_files=w.keep_files, kubeconfig=args.kubeconfig,
                                  cluster_address=args.cluster_address),
            pulumi.ResourceOptions(parent=self, depends_on=[args.install]), delete_step="dev-down",
            # Another cluster, component or folder is another workspace: give the old one back first.
            triggers=[w.cluster, w.component, self.directory], delete_before_replace=True)
        self.register_outputs({"dir": self.directory})


@dataclass
class LabArgs:
    spec: LabSpec
    # Kubeconfig (secret) of each existing-backend cluster, resolved before anything is registered.
    existing_kubeconfigs: dict[str, pulumi.Output[str]]
    # A user-provided shared jwtSecret (secret config), or None to generate one once.
    jwt_secret: pulumi.Output[str] | None = None
    # kslab:registryCredentials (secret JSON: {host: {username, password}}) for the image sources, or None.
    registry_credentials: pulumi.Output[str] | None = None
    # Each user's password from its passwordSecret key (secrets); a user without one gets a generated password.
    user_passwords: dict[str, pulumi.Output[str]] | None = None


class Lab(pulumi.ComponentResource):
    """The whole lab. Resources are registered in this order: the checks that run before any cluster (preflight,
    image check, lab images), the shared jwtSecret, the clusters, roles, installs, joins, developer workspaces, and
    the tenants (users, workspaces, projects)."""

    def __init__(self, name: str, args: LabArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{names.TYPE_PREFIX}:Lab", name, None, opts)
        spec = args.spec
        child = pulumi.ResourceOptions(parent=self)
        for warning in spec.warnings:
            pulumi.log.warn(f"kslab: {warning}", resource=self)
        self.image_plan = {c.name: spec.images_of(c) for c in spec.clusters}
        self.preflight = self._preflight(spec, child)
        self.image_check = self._image_check(spec, child)
        self.lab_images = self._lab_images(spec, args.registry_credentials, child)
        before_clusters = [r for r in (self.preflight, self.image_check, self.lab_images) if r is not None]
        self.shared_jwt = self._shared_jwt(spec, args.jwt_secret, child)
        self.clusters = self._clusters(spec, args, before_clusters, child)
        self.roles = {
            c.name: MulticlusterRole(f"{c.name}-role", MulticlusterRoleArgs(
                c, self.clusters[c.name].kubeconfig, self.clusters[c.name]), child)
            for c in spec.clusters
        }
        self.installs: dict[str, KubeSphereInstall] = {}
        self._add_installs(spec, child)
        self.joins = {
            j.name: KubeFedJoin(j.name, KubeFedJoinArgs(
                host=self.clusters[j.host], member=self.clusters[j.member],
                host_install=self.installs[j.host], member_install=self.installs[j.member],
                timeout_seconds=spec.join_timeout_seconds,
                unjoin_timeout_seconds=spec.unjoin_timeout_seconds,
                allow_multiple_hosts=spec.allow_multiple_hosts), child)
            for j in spec.joins
        }
        self.dev_workspaces = {
            w.name: DevWorkspace(w.name, DevWorkspaceArgs(
                spec=w, cluster=spec.cluster(w.cluster), kubeconfig=self.clusters[w.cluster].kubeconfig,
                cluster_address=self.clusters[w.cluster].address, install=self.installs[w.cluster]), child)
            for w in spec.dev_workspaces
        }
        self._add_tenants(spec, args.user_passwords or {}, child)
        self.register_outputs({"clusters": sorted(self.clusters), "joins": sorted(self.joins)})

    def _target(self, spec: LabSpec, cluster: str) -> TenantTarget:
        """A tenant's cluster, ready once its install and every join to it are."""
        joins = [j for j in self.joins.values() if cluster in (j.host_name, j.member_name)]
        return TenantTarget(cluster, spec.cluster(cluster).kubesphere_version, self.clusters[cluster].kubeconfig,
                            [self.installs[cluster], *joins])

    def _add_tenants(self, spec: LabSpec, passwords: dict[str, pulumi.Output[str]],
                     child: pulumi.ResourceOptions) -> None:
        lab_id = names.lab_id(pulumi.get_stack())
        timeout = spec.join_timeout_seconds
        self.users = {
            u.name: KubeSphereUser(f"user-{u.name}", UserArgs(
                spec=u, hosts=[self._target(spec, h) for h in u.hosts], lab_id=lab_id, timeout_seconds=timeout,
                password=passwords.get(u.name)), child)
            for u in spec.users
        }
        self.workspaces: dict[str, KubeSphereWorkspace] = {}
        for w in spec.workspaces:
            named = [w.manager, *(m.user for m in w.members)]
            self.workspaces[w.name] = KubeSphereWorkspace(f"workspace-{w.name}", WorkspaceArgs(
                spec=w, host=self._target(spec, w.host), placement=[spec.federation_name(c) for c in w.clusters],
                users=[self.users[n].steps[w.host] for n in named if n in self.users], lab_id=lab_id,
                timeout_seconds=timeout), child)
        self.projects = {
            (p.name, p.cluster): KubeSphereProject(f"project-{p.name}-on-{p.cluster}", ProjectArgs(
                spec=p, cluster=self._target(spec, p.cluster), workspace=self.workspaces[p.workspace].step,
                lab_id=lab_id, timeout_seconds=timeout), child)
            for p in spec.projects
        }

    @staticmethod
    def _preflight(spec: LabSpec, child: pulumi.ResourceOptions) -> LabStep | None:
        kind_clusters = [c for c in spec.clusters if c.is_kind]
        if not kind_clusters:
            return None
        plan = requests.PreflightPlan(
            node_images=[node_image_of(c) for c in kind_clusters],
            memory_estimate_mib=sum(versions.cluster_memory_mib(c.kubesphere_version, c.components, True)
                                    for c in kind_clusters),
            # Checked against the kind clusters that exist: one that is not this lab's own is refused here, before
            # anything of the lab is created (kslab/steps/kind_marks.py). A stack from before it re-runs the check
            # once; it changes nothing.
            kind_clusters=[c.name for c in kind_clusters])
        return ops_step("preflight", "preflight", requests.Preflight(plan), child)

    def _image_check(self, spec: LabSpec, child: pulumi.ResourceOptions) -> LabStep | None:
        """Every image the clusters will pull, asked of its registry before anything is created."""
        wanted: dict[str, list[str]] = {}
        for c in spec.clusters:
            if c.image_check and not spec.uses_lab_registry(c):  # the lab registry's images: _lab_images
                for image in self.image_plan[c.name]:
                    wanted.setdefault(image.ref, []).append(c.name)
        if not wanted:
            return None
        return ops_step("image-check", "image-check", requests.ImageCheck(wanted), child)

    def _lab_images(self, spec: LabSpec, credentials: pulumi.Output[str] | None,
                    child: pulumi.ResourceOptions) -> LabStep | None:
        """kslab:imageSources: each image of the kind clusters found in the sources, then copied once into the lab
        registry they all pull from. The registry outlives the lab, so this step deletes nothing."""
        sources = spec.image_sources
        if sources is None:
            return None
        lab_wanted: dict[str, requests.LabImage] = {}
        for c in spec.clusters:
            for image in self.image_plan[c.name] if spec.uses_lab_registry(c) else ():
                path = sources.upstream_path(image.ref)
                entry = lab_wanted.setdefault(path, requests.LabImage(
                    candidates=sources.candidates(path), clusters=[], override=sources.override_for(path) is not None))
                entry.clusters.append(c.name)
        if not lab_wanted:
            return None
        archives = [os.path.join(names.PROJECT_DIR, os.path.expanduser(a)) for a in sources.archives]
        request = requests.LabImages(registry=sources.lab, images=lab_wanted, lab_id=sources.lab_id,
                                     archives=archives or None,
                                     credentials=secret(credentials) if credentials is not None else None)
        # its read step: `up --refresh` fills the registry again when it lost an image (or was removed)
        return ops_step("lab-images", "lab-images", request, child, read_step="lab-images-read")

    @staticmethod
    def _shared_jwt(spec: LabSpec, given: pulumi.Output[str] | None,
                    child: pulumi.ResourceOptions) -> pulumi.Output[str] | None:
        if spec.jwt_secret_mode != "shared":
            return None
        if given is not None:
            return secret(given)
        generated = ops_step("jwt-secret", "gen-secret", requests.GeneratedSecret(), child, secret_stdout=True)
        return secret(generated.stdout.apply(str.strip))

    @staticmethod
    def _clusters(spec: LabSpec, args: LabArgs, before_clusters: list[LabStep],
                  child: pulumi.ResourceOptions) -> dict[str, ClusterBase]:
        clusters: dict[str, ClusterBase] = {}
        for c in spec.clusters:
            if c.is_kind:
                lab_registry = spec.image_sources.lab if spec.image_sources and spec.uses_lab_registry(c) else None
                clusters[c.name] = KindCluster(c.name, KindClusterArgs(c, spec.kind_wait, before_clusters,
                                                                       lab_registry), child)
            else:
                clusters[c.name] = ExistingCluster(
                    c.name, ExistingClusterArgs(c, args.existing_kubeconfigs[c.name]), child)
        return clusters

    def _add_installs(self, spec: LabSpec, child: pulumi.ResourceOptions) -> None:
        """Hosts (and standalone clusters) first, so copy mode can hand members their host's secret."""
        for c in sorted(spec.clusters, key=lambda c: c.role == "member"):
            self.installs[c.name] = KubeSphereInstall(f"{c.name}-kubesphere", KubeSphereInstallArgs(
                spec=c, provider=self.clusters[c.name].provider, kubeconfig=self.clusters[c.name].kubeconfig,
                cluster=self.clusters[c.name], role=self.roles[c.name], jwt_secret=self._jwt_for(spec, c),
                jwt_source=self._jwt_source(spec, c),
                naming=spec.naming_of(c), timeout_seconds=spec.install_timeout_seconds,
                image_check=self.image_check),
                child)

    def _jwt_for(self, spec: LabSpec, cluster: ClusterSpec) -> pulumi.Input[str]:
        if self.shared_jwt is not None:
            return self.shared_jwt
        hosts = spec.hosts_of(cluster.name)
        if cluster.role == "member" and hosts:
            return self.installs[hosts[0]].jwt_secret  # copy mode: exactly one host (validated)
        return ""

    def _jwt_source(self, spec: LabSpec, cluster: ClusterSpec) -> str:
        if self.shared_jwt is not None:
            return "shared"
        hosts = spec.hosts_of(cluster.name)
        return f"copy:{hosts[0]}" if cluster.role == "member" and hosts else "installer"

    def outputs(self) -> dict:
        """What `pulumi stack output` shows: enough to use the lab.

        Secrets sit in their own outputs so the plain facts (roles, URLs, states) stay readable.
        """
        clusters, kubeconfigs, internal, jwts = {}, {}, {}, {}
        for name, cluster in self.clusters.items():
            s = cluster.spec
            clusters[name] = {
                "context": s.context_name,
                "address": cluster.address,
                "consoleUrl": cluster.console_url,
                "role": s.role,
                "hostClusterName": s.host_cluster_name or "",
                "kubesphereVersion": s.kubesphere_version,
                "kubernetesVersion": s.kubernetes_version,
                "backend": s.backend,
                "installState": self.installs[name].state,
            }
            kubeconfigs[name] = cluster.kubeconfig
            internal[name] = cluster.internal_kubeconfig
            jwts[name] = self.installs[name].jwt_secret
        joins = {name: {"host": j.host_name, "member": j.member_name, "state": j.state}
                 for name, j in self.joins.items()}
        outputs = {
            "clusters": clusters,
            # The image plan per cluster: what its nodes pull, as ks-installer names it (make images).
            "images": {name: [image.ref for image in plan] for name, plan in self.image_plan.items()},
            "joins": joins,
            "kubeconfigs": pulumi.Output.secret(kubeconfigs),
            "internalKubeconfigs": pulumi.Output.secret(internal),
            "jwtSecrets": pulumi.Output.secret(jwts),
        }
        for name, cluster in self.clusters.items():
            outputs[f"kubeconfig-{name}"] = cluster.kubeconfig
        if self.users:
            # Each user's login: where (each host's console) and as what; the passwords only as a secret.
            outputs["users"] = {name: {"hosts": sorted(u.steps), "globalRole": u.spec.global_role,
                                       "email": u.spec.email,
                                       "consoleUrls": [self.clusters[h].console_url for h in sorted(u.steps)]}
                                for name, u in self.users.items()}
            outputs["userPasswords"] = pulumi.Output.secret({name: u.password for name, u in self.users.items()})
        if self.workspaces:
            outputs["workspaces"] = {name: {"host": w.spec.host, "clusters": list(w.spec.clusters),
                                            "manager": w.spec.manager,
                                            "projects": sorted(f"{p.spec.name}@{p.spec.cluster}"
                                                               for p in self.projects.values()
                                                               if p.spec.workspace == name)}
                                     for name, w in self.workspaces.items()}
        if self.dev_workspaces:
            outputs["devWorkspaces"] = {name: {"dir": w.directory, "takeover": w.step.stdout}
                                        for name, w in self.dev_workspaces.items()}
        return outputs
