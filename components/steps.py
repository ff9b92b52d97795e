"""Wiring shared by the components: apply-time steps as command resources, and typed
Kubernetes resources from rendered objects."""
from __future__ import annotations

import os
import shlex
import sys
from typing import Mapping, Sequence

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The program's own interpreter has every library the steps import.
PYTHON = sys.executable


def step_command(step: str) -> str:
    return f"{shlex.quote(PYTHON)} -m components.ops {shlex.quote(step)}"


def ops_step(
    name: str,
    step: str,
    environment: Mapping[str, pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
    *,
    delete_step: str | None = None,
    secret_stdout: bool = False,
    triggers: Sequence[pulumi.Input] | None = None,
) -> command.local.Command:
    """A local command running `python -m components.ops <step>` at apply time (never in preview).

    Only stderr (progress) is logged; stdout carries the step's result and is kept as
    a secret when it holds one.
    """
    secret_opts = pulumi.ResourceOptions(additional_secret_outputs=["stdout"]) if secret_stdout else None
    return command.local.Command(
        name,
        create=step_command(step),
        delete=step_command(delete_step) if delete_step else None,
        dir=PROJECT_DIR,
        environment=dict(environment),
        triggers=list(triggers) if triggers is not None else None,
        logging=command.local.Logging.STDERR,
        opts=pulumi.ResourceOptions.merge(opts, secret_opts),
    )


_TYPED = {
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): k8s.apiextensions.v1.CustomResourceDefinition,
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ServiceAccount"): k8s.core.v1.ServiceAccount,
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): k8s.rbac.v1.ClusterRole,
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): k8s.rbac.v1.ClusterRoleBinding,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
}
_SNAKE = {"roleRef": "role_ref"}


def apply_object(name: str, obj: dict, opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
    """Register a rendered object as its typed pulumi-kubernetes resource."""
    cls = _TYPED[(obj["apiVersion"], obj["kind"])]
    fields = {_SNAKE.get(k, k): v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    return cls(name, **fields, opts=opts)
