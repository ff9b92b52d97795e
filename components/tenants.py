"""The lab's tenants: users, workspaces and projects, each a component applied on its cluster by a tenant step
(kslab/steps/tenant_steps.py) once the lab around it is ready: a user and a workspace on their host after the host's
install and every join to it are Ready (in jwtSecretMode copy, the members' installs took the host's secret before
that), a project after its workspace. Destroy removes them in the reverse order, before the joins."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.step_resources import LabStep, ops_step, secret
from kslab.model import contract as names
from kslab.model import requests
from kslab.model.types import ProjectSpec, UserSpec, WorkspaceSpec
from kslab.render import tenants as render


@dataclass
class TenantTarget:
    """A cluster a tenant object is applied on: its name, release, kubeconfig (secret) and what must be ready
    first (its install and the joins to it)."""
    cluster: str
    ks_version: str
    kubeconfig: pulumi.Output[str]
    ready: Sequence[pulumi.Resource]


@dataclass
class UserArgs:
    spec: UserSpec
    hosts: list[TenantTarget]
    lab_id: str
    timeout_seconds: int
    password: pulumi.Output[str] | None = None  # its passwordSecret's value; None: generated once


def _request(target: TenantTarget, objects: list[dict], lab_id: str, timeout: int, **more) -> requests.TenantObjects:
    return requests.TenantObjects(cluster=target.cluster, ks_version=target.ks_version, kubeconfig=target.kubeconfig,
                                  objects=objects, timeout=timeout, lab_id=lab_id, **more)


def _step(name: str, request: requests.TenantObjects, parent: pulumi.Resource,
          depends_on: Sequence[pulumi.Resource]) -> LabStep:
    return ops_step(name, "tenant-apply", request, pulumi.ResourceOptions(parent=parent, depends_on=list(depends_on)),
                    delete_step="tenant-delete", read_step="tenant-read",
                    # Another cluster is another object: the old one goes first.
                    triggers=[request.cluster], delete_before_replace=True)


class KubeSphereUser(pulumi.ComponentResource):
    """A KubeSphere user and its GlobalRoleBinding on each of its hosts; each host federates both to its members."""

    def __init__(self, name: str, args: UserArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{names.TYPE_PREFIX}:KubeSphereUser", name, None, opts)
        u = self.spec = args.spec
        if args.password is not None:
            self.password = secret(args.password)
        else:
            made = ops_step(f"{name}-password", "gen-password", requests.GeneratedSecret(),
                            pulumi.ResourceOptions(parent=self), secret_stdout=True)
            self.password = secret(made.stdout.apply(str.strip))
        self.steps = {
            t.cluster: _step(f"{name}-on-{t.cluster}",
                             _request(t, render.user_objects(u, args.lab_id), args.lab_id, args.timeout_seconds,
                                      password=self.password), self, t.ready)
            for t in args.hosts
        }
        self.register_outputs({"hosts": sorted(self.steps)})


@dataclass
class WorkspaceArgs:
    spec: WorkspaceSpec
    host: TenantTarget
    placement: list[str]  # the placed clusters as the host's KubeSphere names them
    users: Sequence[pulumi.Resource]  # the manager's and members' user steps on the host
    lab_id: str
    timeout_seconds: int


class KubeSphereWorkspace(pulumi.ComponentResource):
    """A workspace template on its host, placed on its clusters, with a role binding per member."""

    def __init__(self, name: str, args: WorkspaceArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{names.TYPE_PREFIX}:KubeSphereWorkspace", name, None, opts)
        self.spec = args.spec
        objects = render.workspace_objects(args.spec, args.placement, args.lab_id)
        self.step = _step(f"{name}-on-{args.host.cluster}",
                          _request(args.host, objects, args.lab_id, args.timeout_seconds), self,
                          [*args.host.ready, *args.users])
        self.register_outputs({"host": args.host.cluster, "clusters": list(args.spec.clusters)})


@dataclass
class ProjectArgs:
    spec: ProjectSpec
    cluster: TenantTarget
    workspace: pulumi.Resource
    lab_id: str
    timeout_seconds: int


class KubeSphereProject(pulumi.ComponentResource):
    """A project: a namespace of its workspace on one cluster, made once KubeFed has placed the workspace there."""

    def __init__(self, name: str, args: ProjectArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{names.TYPE_PREFIX}:KubeSphereProject", name, None, opts)
        p = self.spec = args.spec
        self.step = _step(f"{name}-namespace",
                          _request(args.cluster, render.project_objects(p, args.lab_id), args.lab_id,
                                   args.timeout_seconds, wait_for=render.project_waits_for(p)),
                          self, [*args.cluster.ready, args.workspace])
        self.register_outputs({"cluster": p.cluster, "workspace": p.workspace})

