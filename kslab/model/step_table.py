"""The one table of apply-time steps: each step's name, its resource type, its request, its function and purpose.

The program registers a step by its name (components/step_resources.py checks the request is the table's); the step
process (`python -m kslab.steps <step>`, kslab/steps/dispatch.py) runs the function the table names. The function is
named by its dotted path, so the table stays in the pure model, which the program and the policy pack import, and
neither loads a step's code; tests/test_step_requests.py resolves every path.

A step that a resource runs on create carries the resource's type (`kslab:steps:<type>`); a resource's delete and
read steps (no type of their own) run with the request of the step that created it.
"""
from __future__ import annotations

from dataclasses import dataclass

from kslab.model import contract
from kslab.model import requests as r


@dataclass(frozen=True)
class Step:
    name: str
    type_name: str | None  # the resource type a create step gives its resource; None for a delete or read step
    request: type[r.StepRequest]
    function: str  # "<module>:<function>" under kslab.steps
    purpose: str


_K, _I, _J, _D, _M, _T = ("kslab.steps.kind_steps", "kslab.steps.install_steps", "kslab.steps.join_steps",
                          "kslab.steps.dev_steps", "kslab.steps.image_steps", "kslab.steps.tenant_steps")
STEPS: dict[str, Step] = {step.name: step for step in (
    Step("preflight", "Preflight", r.Preflight, f"{_K}:step_preflight",
         "refuse, before any cluster exists, a machine that cannot hold the lab"),
    Step("image-check", "ImageCheck", r.ImageCheck, f"{_M}:step_image_check",
         "ask each planned image's registry for it before anything is created"),
    Step("lab-images", "LabImages", r.LabImages, f"{_M}:step_lab_images",
         "put every image of the kind clusters into the lab registry"),
    Step("lab-images-read", None, r.LabImages, f"{_M}:step_lab_images_read",
         "refresh: gone unless the lab registry holds every image"),
    Step("gen-password", "GeneratedPassword", r.GeneratedSecret, f"{_T}:step_gen_password",
         "a random password every KubeSphere release takes (a user without passwordSecret)"),
    Step("tenant-apply", "TenantObjects", r.TenantObjects, f"{_T}:step_tenant_apply",
         "apply a user, workspace or project with kslab's field manager; a password only when it changed"),
    Step("tenant-delete", None, r.TenantObjects, f"{_T}:step_tenant_delete",
         "delete the lab's tenant objects and wait (bounded) for KubeSphere's finalizers"),
    Step("tenant-read", None, r.TenantObjects, f"{_T}:step_tenant_read",
         "refresh: gone when the cluster no longer holds the lab's tenant objects"),
    Step("gen-secret", "GeneratedSecret", r.GeneratedSecret, f"{_I}:step_gen_secret",
         "a random 32-character secret (the lab's shared jwtSecret)"),
    Step("kind-create", "KindCluster", r.KindCluster, f"{_K}:step_kind_create",
         "create (or adopt) a kind cluster; its kubeconfigs and IP"),
    Step("kind-delete", None, r.KindCluster, f"{_K}:step_kind_delete", "delete a kind cluster"),
    Step("kind-read", None, r.KindCluster, f"{_K}:step_kind_read",
         "refresh: a kind cluster's kubeconfigs and IP now, or gone"),
    Step("role-guard", "RoleGuard", r.ClusterAccess, f"{_I}:step_role_guard",
         "refuse to change the KubeSphere role a cluster already has"),
    Step("install-baseline", "InstallBaseline", r.ClusterAccess, f"{_I}:step_install_baseline",
         "ks-installer's last run, before kslab changes the cc"),
    Step("wait-install", "InstallWait", r.InstallWait, f"{_I}:step_wait_install",
         "wait (bounded) for ks-installer's run that the change started"),
    Step("read-jwt", "JwtSecretRead", r.ClusterAccess, f"{_I}:step_read_jwt",
         "the cluster's effective jwtSecret, after the install"),
    Step("join-check", "JoinCheck", r.JoinCheck, f"{_J}:step_join_check",
         "the console's import checks, before a member's Cluster is created"),
    Step("wait-join", "JoinReady", r.JoinReady, f"{_J}:step_wait_join",
         "wait (bounded) for a member's Cluster to be Ready on its host"),
    Step("unjoin", None, r.JoinReady, f"{_J}:step_unjoin",
         "delete a member's Cluster and wait (bounded) for the controller's unjoin"),
    Step("dev-up", "DevWorkspace", r.DevWorkspace, f"{_D}:step_dev_up", "take a component over for local development"),
    Step("dev-down", None, r.DevWorkspace, f"{_D}:step_dev_down",
         "give a component back as it was, and remove its workspace files"),
)}


def step_type(step: str) -> str:
    """The resource type of a create step: kslab:steps:<type>."""
    type_name = STEPS[step].type_name
    if type_name is None:
        raise KeyError(f"step {step} is no resource's create step")
    return f"{contract.STEP_PACKAGE}:{contract.STEP_MODULE}:{type_name}"


STEP_TYPES = frozenset(step_type(s.name) for s in STEPS.values() if s.type_name is not None)
KIND_CLUSTER_TYPE = step_type("kind-create")
