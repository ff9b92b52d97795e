"""Apply-time steps run by the lab's command resources: `python -m kslab.steps <step>`.

Inputs come from environment variables (kubeconfigs are Pulumi secrets there, never
arguments, so they stay out of process lists and logs). Progress goes to stderr;
only the step's result goes to stdout, which the resource stores (as a secret
where it holds one). Exit status non-zero = the step failed, with the reason on stderr.

This module is the dispatcher: STEPS, one definition per step, and main. The steps themselves live by family:
kind_steps (preflight, kind clusters), image_steps (image check, lab registry), install_steps (KubeSphere's
install), join_steps (multicluster join and unjoin), dev_steps (developer workspaces); what they share is in
common. The stand-ins a test sets go on the module that holds the seam (common._kube, common._kind,
dev_steps._give_back), and tests call a step from its family's module.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kslab.steps.common import _fatal_api_errors, fail
from kslab.steps.dev_steps import step_dev_down, step_dev_up
from kslab.steps.image_steps import step_image_check, step_lab_images, step_lab_images_read
from kslab.steps.install_steps import (
    step_gen_secret,
    step_install_baseline,
    step_read_jwt,
    step_role_guard,
    step_wait_install,
)
from kslab.steps.join_steps import step_join_check, step_unjoin, step_wait_join
from kslab.steps.kind_steps import step_kind_create, step_kind_delete, step_kind_read, step_preflight


@dataclass(frozen=True)
class Step:
    """One apply-time step: the name a resource runs it by, the function that is it, and what it is for."""
    name: str
    function: Callable[[], None]
    purpose: str


STEPS: dict[str, Step] = {step.name: step for step in (
    Step("preflight", step_preflight, "refuse, before any cluster exists, a machine that cannot hold the lab"),
    Step("image-check", step_image_check, "ask each planned image's registry for it before anything is created"),
    Step("lab-images", step_lab_images, "put every image of the kind clusters into the lab registry"),
    Step("lab-images-read", step_lab_images_read, "refresh: gone unless the lab registry holds every image"),
    Step("kind-create", step_kind_create, "create (or adopt) a kind cluster; its kubeconfigs and IP"),
    Step("kind-delete", step_kind_delete, "delete a kind cluster"),
    Step("kind-read", step_kind_read, "refresh: a kind cluster's kubeconfigs and IP now, or gone"),
    Step("gen-secret", step_gen_secret, "a random 32-character secret (the lab's shared jwtSecret)"),
    Step("role-guard", step_role_guard, "refuse to change the KubeSphere role a cluster already has"),
    Step("install-baseline", step_install_baseline, "ks-installer's last run, before kslab changes the cc"),
    Step("wait-install", step_wait_install, "wait (bounded) for ks-installer's run that the change started"),
    Step("read-jwt", step_read_jwt, "the cluster's effective jwtSecret, after the install"),
    Step("join-check", step_join_check, "the console's import checks, before a member's Cluster is created"),
    Step("wait-join", step_wait_join, "wait (bounded) for a member's Cluster to be Ready on its host"),
    Step("unjoin", step_unjoin, "delete a member's Cluster and wait (bounded) for the controller's unjoin"),
    Step("dev-up", step_dev_up, "take a component over for local development"),
    Step("dev-down", step_dev_down, "give a component back as it was, and remove its workspace files"),
)}


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] not in STEPS:
        fail("usage: python -m kslab.steps {" + ",".join(STEPS) + "}")
    _fatal_api_errors(STEPS[argv[0]].function)()
