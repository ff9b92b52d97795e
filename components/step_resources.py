"""Wiring shared by the components: apply-time steps as resources, and typed Kubernetes
resources from rendered objects.

A step is a resource of kslab's own provider plugin (kslab/steps/plugin.py, declared in Pulumi.yaml),
typed `kslab:steps:<Kind>` (kslab/model/contract.py). Its create (and update) runs
`python -m kslab.steps <step>`, its delete runs its delete step, and a refresh its read step. kslab
decides precisely what replaces a step (its `triggers`) and what re-runs it (provider.diff).
"""
from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_kubernetes as k8s

from kslab.model import contract, step_table
from kslab.model.requests import StepRequest


class LabStep(pulumi.CustomResource):
    """One apply-time step; `stdout` is its result."""
    stdout: pulumi.Output[str]

    def __init__(self, name: str, step: str, props: dict, opts: pulumi.ResourceOptions):
        # Stacks made before steps had their own types hold them as dynamic resources: the alias keeps them.
        legacy = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=contract.LEGACY_STEP_TYPE)])
        super().__init__(step_table.step_type(step), name, {**props, "stdout": None},
                         pulumi.ResourceOptions.merge(opts, legacy))


def ops_step(
    name: str,
    step: str,
    request: StepRequest,  # the table's request type of `step` (kslab/model/step_table.py), built by the component
    opts: pulumi.ResourceOptions,
    *,
    delete_step: str | None = None,
    read_step: str | None = None,
    secret_stdout: bool = False,
    triggers: Sequence[pulumi.Input] | None = None,
    delete_before_replace: bool = False,
    rerun_on_change: bool = True,
) -> LabStep:
    """A step run at apply time (never in preview). Its environment is kept secret in the state
    (it carries kubeconfigs), and its stdout too when it holds a secret. With rerun_on_change=False
    only a change of `triggers` runs it again (a wait for an event that happens once per trigger)."""
    for runs in (step, delete_step, read_step):
        if runs is not None and type(request) is not step_table.STEPS[runs].request:
            raise TypeError(f"step {runs} reads {step_table.STEPS[runs].request.__name__}, not "
                            f"{type(request).__name__}")
    secret_outputs = ["environment"] + (["stdout"] if secret_stdout else [])
    props = {
        "step": step,
        "delete_step": delete_step,
        "read_step": read_step,
        "environment": request.to_env(),
        "triggers": list(triggers) if triggers is not None else [],
        "delete_before_replace": delete_before_replace,
        "rerun_on_change": rerun_on_change,
    }
    return LabStep(name, step, props, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
        additional_secret_outputs=secret_outputs, delete_before_replace=delete_before_replace or None)))


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


def secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """pulumi.Output.secret of a string, typed (mypy infers Never from Output.secret(Output[str]))."""
    return pulumi.Output.secret(value)
