"""Run the real program (__main__.py) under Pulumi mocks and record every registration.

The mock monitor sees the same RegisterResource requests the engine would: type, name,
parent, dependencies, inputs (with which of them are secret) and options, plus the
stack outputs. Tests and the policy pack's tests read resource shapes from here, so
they cannot drift from what the components really register.
"""
from __future__ import annotations

import json
import logging
import os
import runpy
import signal
from dataclasses import dataclass, field

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks, rpc

from kslab.model import contract as names
from kslab.model.step_table import STEP_TYPES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAIN = os.path.join(ROOT, "__main__.py")
STACKS_DIR = os.path.join(ROOT, "stacks")


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    inputs: dict
    secret_inputs: set[str]
    custom: bool
    provider: str
    additional_secret_outputs: list[str]
    delete_before_replace: bool
    raw_props: dict  # the request's properties in wire (JSON) form, secret and unknown markers kept


@dataclass
class Run:
    resources: list[Registration] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    logs: list[tuple[str, str]] = field(default_factory=list)

    def by_urn(self, urn: str) -> Registration:
        return next(r for r in self.resources if r.urn == urn)

    def named(self, name: str) -> Registration:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name!r}, found {len(matches)}"
        return matches[0]

    def all_dependencies(self, reg: Registration) -> set[str]:
        """Transitive dependencies (explicit, through inputs, and through parents' dependencies)."""
        by_urn = {r.urn: r for r in self.resources}
        seen: set[str] = set()
        todo = [reg.urn]
        while todo:
            current = by_urn.get(todo.pop())
            if current is None:
                continue
            direct = set(current.dependencies).union(*current.property_dependencies.values())
            # A component dependency means all of its children too.
            direct |= {r.urn for r in self.resources if r.parent in direct}
            for urn in direct - seen:
                seen.add(urn)
                todo.append(urn)
        return seen


def _split_secrets(props: dict) -> tuple[dict, set[str]]:
    secret = {k for k, v in props.items() if rpc.is_rpc_secret(v)}
    return {k: rpc.unwrap_rpc_secret(v) for k, v in props.items()}, secret


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, the_mocks, run: Run):
        super().__init__(the_mocks)
        self.run = run

    def RegisterResource(self, request):
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs, secret = _split_secrets(rpc.deserialize_properties(request.object, keep_unknowns=True))
            self.run.resources.append(Registration(
                type=request.type, name=request.name, urn=response.urn, parent=request.parent,
                dependencies=list(request.dependencies),
                property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                inputs=inputs, secret_inputs=secret, custom=request.custom, provider=request.provider,
                additional_secret_outputs=list(request.additionalSecretOutputs),
                delete_before_replace=request.deleteBeforeReplace,
                raw_props=json_format.MessageToDict(request.object),
            ))
        return response


class LabMocks(pulumi.runtime.Mocks):
    """Fills in what apply-time steps would print, so outputs resolve like after an `up`.
    In preview mode commands print nothing (they never run in preview), so those outputs stay unknown."""

    def __init__(self, preview: bool = False):
        super().__init__()
        self.preview = preview

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        state = dict(args.inputs)
        if args.typ in STEP_TYPES and not self.preview:
            create = args.inputs.get("step", "")
            env = args.inputs.get("environment", {})
            name = env.get(names.ENV_CLUSTER, "x")
            if create.endswith("kind-create"):
                kubeconfig = fake_kubeconfig(name, "https://127.0.0.1:40000")
                state["stdout"] = json.dumps({
                    "kubeconfig": kubeconfig,
                    "internalKubeconfig": fake_kubeconfig(name, "https://172.18.0.10:6443"),
                    "containerIp": "172.18.0.10"})
            elif create.endswith("wait-install"):
                state["stdout"] = json.dumps({"cluster": name, "state": "enabled", "version": "v3"})
            elif create.endswith("read-jwt") or create.endswith("gen-secret"):
                state["stdout"] = "mock-jwt-secret-0123456789abcdef"
            elif create.endswith("gen-password"):
                state["stdout"] = "MockGenerated0Password1xyz"
            elif create.endswith("wait-join"):
                state["stdout"] = json.dumps({"state": "Ready"})
            else:
                state["stdout"] = "{}"
        return [f"{args.name}-id", state]

    def call(self, args: pulumi.runtime.MockCallArgs):
        return {}


def fake_kubeconfig(name: str, server: str) -> str:
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": f"kind-{name}",
        "clusters": [{"name": f"kind-{name}", "cluster": {"server": server, "certificate-authority-data": "Q0E="}}],
        "contexts": [{"name": f"kind-{name}", "context": {"cluster": f"kind-{name}", "user": f"kind-{name}"}}],
        "users": [{"name": f"kind-{name}", "user": {"client-certificate-data": "Y2VydA==",
                                                  "client-key-data": "a2V5"}}],
    })


def stack_config(stack: str) -> dict[str, str]:
    """Config of stacks/Pulumi.<stack>.yaml in the string form Pulumi hands the program."""
    path = stack if os.path.isabs(stack) else os.path.join(STACKS_DIR, f"Pulumi.{stack}.yaml")
    with open(path) as fh:
        doc = yaml.safe_load(fh) or {}
    return {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (doc.get("config") or {}).items()}


class _LogCapture(logging.Handler):
    def __init__(self, run: Run):
        super().__init__(logging.DEBUG)
        self.run = run

    def emit(self, record: logging.LogRecord) -> None:
        self.run.logs.append((record.levelname, record.getMessage()))


def run_program(config: dict[str, str], preview: bool = False, secret_keys: list[str] | None = None) -> Run:
    run = Run()
    the_mocks = LabMocks(preview)
    logger = logging.getLogger(f"kslab-mock-{id(run)}")
    logger.propagate = False
    logger.addHandler(_LogCapture(run))
    pulumi.runtime.set_mocks(the_mocks, project="kslab", stack="kslab-test", preview=preview,
                             monitor=RecordingMonitor(the_mocks, run), logger=logger)
    pulumi.runtime.set_all_config(config, secret_keys or [])

    @pulumi.runtime.test
    def program():
        # The program ends itself quietly on SIGINT (the language host's stop); pytest keeps its own Ctrl-C.
        handler = signal.getsignal(signal.SIGINT)
        try:
            runpy.run_path(MAIN, run_name="__main__")
        finally:
            signal.signal(signal.SIGINT, handler)

    program()
    _collect_stack_outputs(run)
    return run


def _collect_stack_outputs(run: Run) -> None:
    """Read `pulumi.export`ed values off the root stack, with their secretness."""
    from pulumi.runtime.sync_await import _sync_await

    root = pulumi.runtime.get_root_resource()
    for key, value in (getattr(root, "outputs", None) or {}).items():
        output = pulumi.Output.from_input(value)
        run.outputs[key] = _sync_await(output.future(with_unknowns=True))
        if _sync_await(output.is_secret()):
            run.secret_outputs.add(key)
