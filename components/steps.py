"""Wiring shared by the components: apply-time steps as resources, and typed Kubernetes
resources from rendered objects.

A step is a resource whose create (and update) runs `python -m components.ops <step>` and
whose delete runs its delete step. It is a Pulumi dynamic resource rather than a
pulumi-command `local.Command`: the dynamic provider ships inside the Pulumi Python SDK, so
it needs no extra plugin (the command provider cannot be built from published Go modules),
and it lets kslab decide precisely what replaces a step (its `triggers`) and what re-runs it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from typing import Mapping, Sequence

import pulumi
import pulumi.dynamic as dynamic
import pulumi_kubernetes as k8s

from .ops import GONE_EXIT

PROJECT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The program's own interpreter has every library the steps import.
PYTHON = sys.executable
STEP_TYPE = "pulumi-python:dynamic:Resource"
# Inputs whose change re-runs the step in place; a change of `triggers` replaces it.
_RERUN_KEYS = ("step", "environment", "delete_step")


class StepError(Exception):
    pass


class _Gone(Exception):
    pass


_ENGINE = None


def _progress(line: str) -> None:
    """Show a step's progress line in the `pulumi up` output. The dynamic provider process is started
    with the engine's address as its argument; without one (or if it fails) the line goes to stderr."""
    global _ENGINE
    try:
        if _ENGINE is None and len(sys.argv) > 1 and ":" in sys.argv[1]:
            import grpc
            from pulumi.runtime.proto import engine_pb2_grpc
            _ENGINE = engine_pb2_grpc.EngineStub(grpc.insecure_channel(sys.argv[1]))
        if _ENGINE:
            from pulumi.runtime.proto import engine_pb2
            _ENGINE.Log(engine_pb2.LogRequest(severity=engine_pb2.INFO, message=line), timeout=5)
            return
    except Exception:
        _ENGINE = False  # do not retry a broken channel for every line
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def run_step(props: dict, step_key: str = "step") -> str:
    """Run one step; its stderr (progress) passes through, its stdout is the step's result."""
    step = props.get(step_key)
    env = {**os.environ, **{k: str(v) for k, v in (props.get("environment") or {}).items()}}
    # The provider imports this module from the current checkout, so the interpreter and the project
    # directory are today's, not those of the run that created the step (a moved checkout still works).
    proc = subprocess.Popen([PYTHON, "-m", "components.ops", step], cwd=PROJECT_DIR,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    progress: list[str] = []

    def relay() -> None:  # progress lines as they come, for long waits
        for line in proc.stderr:
            progress.append(line.rstrip("\n"))
            _progress(line.rstrip("\n"))

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    stdout = proc.stdout.read()
    proc.wait()
    reader.join(timeout=10)
    if proc.returncode == GONE_EXIT and step_key == "read_step":
        raise _Gone()
    if proc.returncode != 0:
        # The step's own message (stderr) names what failed and the fix; stdout may hold secrets.
        reason = "\n".join(line for line in progress if "ERROR" in line or not line.startswith("[kslab] "))
        raise StepError(reason or f"step {step} failed with exit status {proc.returncode}")
    return stdout


class StepProvider(dynamic.ResourceProvider):
    def create(self, props):
        return dynamic.CreateResult(id_=uuid.uuid4().hex, outs={**props, "stdout": run_step(props)})

    def diff(self, _id, olds, news):
        replaces = ["triggers"] if (olds.get("triggers") or []) != (news.get("triggers") or []) else []
        changed = [k for k in _RERUN_KEYS if olds.get(k) != news.get(k)]
        return dynamic.DiffResult(changes=bool(replaces or changed), replaces=replaces,
                                  delete_before_replace=bool(news.get("delete_before_replace")))

    def update(self, _id, olds, news):
        if not news.get("rerun_on_change", True):
            # Only its triggers re-run this step (by replacing it); a new kubeconfig or the like is stored.
            return dynamic.UpdateResult(outs={**news, "stdout": olds.get("stdout")})
        return dynamic.UpdateResult(outs={**news, "stdout": run_step(news)})

    def read(self, id_, props):
        """Refresh: a step with a read step reports what is there now, or that it is gone."""
        if not props.get("read_step"):
            return dynamic.ReadResult(id_=id_, outs=props)
        try:
            return dynamic.ReadResult(id_=id_, outs={**props, "stdout": run_step(props, "read_step")})
        except _Gone:
            return dynamic.ReadResult(id_="", outs={})

    def delete(self, _id, props):
        if props.get("delete_step"):
            run_step(props, "delete_step")


class LabStep(dynamic.Resource):
    stdout: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(StepProvider(), name, {**props, "stdout": None}, opts)


def ops_step(
    name: str,
    step: str,
    environment: Mapping[str, pulumi.Input[str]],
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
    secret_outputs = ["environment"] + (["stdout"] if secret_stdout else [])
    props = {
        "step": step,
        "delete_step": delete_step,
        "read_step": read_step,
        "environment": dict(environment),
        "triggers": list(triggers) if triggers is not None else [],
        "delete_before_replace": delete_before_replace,
        "rerun_on_change": rerun_on_change,
    }
    return LabStep(name, props, pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(
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
