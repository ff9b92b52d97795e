"""The objects kslab applies for the lab's tenants, as KubeSphere's own console and API make them (pure).

What kslab writes, and only that (its field manager owns these fields and no others): a User's email, labels and
password hash (the step adds it: kslab/steps/tenant_steps.py); a GlobalRoleBinding `<user>-<role>`; a
WorkspaceTemplate with its manager and placement; a WorkspaceRoleBinding `<user>-<ws>-<role>` per member; a
project's Namespace. What KubeSphere's controllers add is theirs (kslab/model/tenants.py cites them): the
`kubefed.io/managed` label, finalizers, owner references, the Federated objects and the manager's binding `<ws>-admin`.
The ks-apiserver handler is what turns a User's `iam.kubesphere.io/globalrole` annotation into a binding; no
controller does, so kslab writes the binding itself, named and labelled as the handler names it (am.go).
"""
from __future__ import annotations

from typing import Any, NamedTuple

from kslab.model import contract, tenants
from kslab.model.types import ProjectSpec, UserSpec, WorkspaceSpec

IAM = "iam.kubesphere.io/v1alpha2"
TENANT_TEMPLATE = "tenant.kubesphere.io/v1alpha2"
TENANT = "tenant.kubesphere.io/v1alpha1"
FEDERATED_API = "types.kubefed.io/v1beta1"


class Kind(NamedTuple):
    """A cluster-scoped kind the tenants touch: its API version, plural, and the Federated kind's plural a host makes
    of it (its deletion waits for KubeFed to remove the copies on the members; None: not federated)."""
    api_version: str
    plural: str
    federated: str | None = None


# What kslab writes, and the Workspace KubeFed places (what a project waits for and `make status` looks for).
KINDS = {
    "User": Kind(IAM, "users", "federatedusers"),
    "GlobalRoleBinding": Kind(IAM, "globalrolebindings", "federatedglobalrolebindings"),
    "WorkspaceTemplate": Kind(TENANT_TEMPLATE, "workspacetemplates", "federatedworkspaces"),
    "WorkspaceRoleBinding": Kind(IAM, "workspacerolebindings", "federatedworkspacerolebindings"),
    "Namespace": Kind("v1", "namespaces"),
    "Workspace": Kind(TENANT, "workspaces", "federatedworkspaces"),
}


def _meta(name: str, lab_id: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "labels": {contract.LAB_LABEL: lab_id, **(labels or {})}}


def user_objects(user: UserSpec, lab_id: str) -> list[dict[str, Any]]:
    """The User (its password is the step's to send) and its one GlobalRoleBinding."""
    return [
        {"apiVersion": IAM, "kind": "User", "metadata": _meta(user.name, lab_id),
         "spec": {"email": user.email}},
        {"apiVersion": IAM, "kind": "GlobalRoleBinding",
         "metadata": _meta(tenants.global_role_binding_name(user.name, user.global_role), lab_id,
                           {tenants.USER_REF_LABEL: user.name}),
         "roleRef": {"apiGroup": "iam.kubesphere.io", "kind": "GlobalRole", "name": user.global_role},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user.name}]},
    ]


def workspace_objects(workspace: WorkspaceSpec, placement: list[str], lab_id: str) -> list[dict[str, Any]]:
    """The WorkspaceTemplate placed on `placement` (the names the host's KubeSphere knows the clusters by) and a
    WorkspaceRoleBinding per member. The workspace's own WorkspaceRoles and its manager's binding are the
    workspacetemplate controller's (initWorkspaceRoles, initManagerRoleBinding)."""
    template = {
        "apiVersion": TENANT_TEMPLATE, "kind": "WorkspaceTemplate", "metadata": _meta(workspace.name, lab_id),
        "spec": {"template": {"spec": {"manager": workspace.manager}},
                 "placement": {"clusters": [{"name": name} for name in placement]}},
    }
    bindings = [
        {"apiVersion": IAM, "kind": "WorkspaceRoleBinding",
         "metadata": _meta(tenants.workspace_role_binding_name(m.user, workspace.name, m.role), lab_id,
                           {tenants.USER_REF_LABEL: m.user, tenants.WORKSPACE_LABEL: workspace.name}),
         "roleRef": {"apiGroup": "iam.kubesphere.io", "kind": "WorkspaceRole",
                     "name": tenants.workspace_role_name(workspace.name, m.role)},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": m.user}]}
        for m in workspace.members
    ]
    return [template, *bindings]


def project_objects(project: ProjectSpec, lab_id: str) -> list[dict[str, Any]]:
    """A project: its namespace, labelled with its workspace (tenant.go labelNamespaceWithWorkspaceName)."""
    return [{"apiVersion": "v1", "kind": "Namespace",
             "metadata": _meta(project.name, lab_id, {tenants.WORKSPACE_LABEL: project.workspace})}]


def project_waits_for(project: ProjectSpec) -> list[list[str]]:
    """The project's Workspace on its cluster, which KubeFed puts there: until it exists, the namespace controller
    unbinds a namespace labelled with it (namespace_controller.go unbindWorkspace)."""
    group, version = TENANT.split("/")
    return [[group, version, KINDS["Workspace"].plural, project.workspace]]
