"""kslab's step provider: the resource provider plugin behind every `kslab:steps:*` resource.

The engine starts it as `provider/pulumi-resource-kslab` (declared under `plugins:` in Pulumi.yaml; no
download, no Go build) and speaks Pulumi's ResourceProvider gRPC protocol to it. Each resource runs one
apply-time step, `python -m kslab.steps <step>` (components/step_resources.py registers them).

Why a plugin rather than a Pulumi dynamic provider: the dynamic provider reports every failure as a full
Python traceback, and gives every step the one type `pulumi-python:dynamic:Resource`. Here a failing step
shows only the step's own message, with any secret of its environment blotted out, and each kind of step has
its own type (kslab/model/contract.py).

Secrets: the provider tells the engine it does not accept secrets, so the engine sends plain values and
marks every output secret whose input was (the step's environment, which carries kubeconfigs); stdout is
secret through the resource's additionalSecretOutputs where it holds one.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent import futures
from typing import Any

from kslab.model import contract
from kslab.model import kubeconfig as kc
from kslab.steps.redaction import redact, secret_fragments

PROJECT_DIR = contract.PROJECT_DIR
VERSION = "1.0.0"
# Inputs whose change re-runs the step in place; a change of `triggers` replaces it.
RERUN_KEYS = ("step", "environment", "delete_step")
# Kept in outputs by steps created through the dynamic provider (a pickled provider); never compared.
LEGACY_KEYS = ("__provider",)
ERROR_PREFIX = "[kslab] ERROR"  # how a step's own failure starts (kslab/steps/common.py, fail)


class StepError(Exception):
    """A step failed; the message is the step's own, already redacted."""


class Gone(Exception):
    """A read step found its object gone."""


# --- pure parts: environment, redaction, diff ---------------------------------------------------

def step_environment(step_env: Mapping[str, Any], machine: Mapping[str, str], urn: str = "",
                     in_state: bool = False, stored: str | None = None) -> dict[str, str]:
    """What a step's process gets: the few machine variables its programs need, the user's kslab knobs, and
    the step's own settings, by name from contract.STEP_ENV only (a request naming LD_PRELOAD or PATH gets
    nothing of it). Never the Pulumi passphrase or any other PULUMI_* variable, never the user's KUBECONFIG,
    never another step's kubeconfig."""
    env = {k: machine[k] for k in contract.MACHINE_ENV + contract.USER_STEP_ENV if k in machine}
    env.update({k: str(v) for k, v in step_env.items() if v is not None and k in contract.STEP_ENV})
    # The stack, from the resource's URN (urn:pulumi:<stack>::<project>::<type>::<name>), never from the inputs:
    # an input would change every existing step's environment, and so re-run every step, on upgrade.
    if urn.startswith("urn:pulumi:") and "::" in urn:
        env[contract.ENV_STACK_NAME] = urn[len("urn:pulumi:"):].split("::", 1)[0]
    # Whether the step's resource is already in the stack's state (an update): what it acts on is the lab's own.
    for name in (contract.ENV_IN_STATE, contract.ENV_STATE_CA, contract.ENV_STATE_OBJECTS):
        env.pop(name, None)  # the plugin's word alone, never a request's
    env.update({contract.ENV_IN_STATE: "1"} if in_state else {}, **state_facts(stored, in_state))
    return env


def state_facts(stored: str | None, in_state: bool) -> dict[str, str]:
    """From a step's stored result (its stdout in the state): the CA fingerprint of the cluster its "kubeconfig" names
    (kind steps), and on a re-run the "objects" a tenant step made, so it removes those no longer declared."""
    try:
        result = json.loads(stored) if stored else {}
    except ValueError:
        result = {}
    result, facts = (result if isinstance(result, dict) else {}), {}
    if isinstance(result.get("kubeconfig"), str) and (fingerprint := kc.ca_fingerprint(result["kubeconfig"])):
        facts[contract.ENV_STATE_CA] = fingerprint
    if in_state and isinstance(result.get("objects"), list):
        facts[contract.ENV_STATE_OBJECTS] = json.dumps([o for o in result["objects"] if isinstance(o, str)])
    return facts


def undeclared(step_env: Mapping[str, Any]) -> list[str]:
    """Names a request carries that are no step variable (dropped, and said so)."""
    return sorted(k for k in step_env if k not in contract.STEP_ENV)


# --- who may call: the engine that started this plugin --------------------------------------------

def _tcp_inode(local_port: int, remote_port: int, tables: tuple[str, ...] = ("/proc/net/tcp", "/proc/net/tcp6")
               ) -> str | None:
    """The inode of the loopback TCP socket from `local_port` to `remote_port` (the caller's end)."""
    for table in tables:
        try:
            with open(table) as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, remote, inode = fields[1], fields[2], fields[9]
            if (int(local.rsplit(":", 1)[1], 16) == local_port and int(remote.rsplit(":", 1)[1], 16) == remote_port
                    and inode != "0"):  # 0: a socket in TIME_WAIT, held by no process
                return inode
    return None


def caller_is(pid: int, peer: str, server_port: int, proc_root: str = "/proc") -> bool | None:
    """Whether the gRPC peer (`ipv4:127.0.0.1:PORT`) is a socket process `pid` holds; None where /proc cannot
    tell (not Linux)."""
    if not os.path.isdir(os.path.join(proc_root, str(pid), "fd")):
        return None
    try:
        peer_port = int(peer.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return False
    inode = _tcp_inode(peer_port, server_port, (f"{proc_root}/net/tcp", f"{proc_root}/net/tcp6"))
    if inode is None:
        return False
    wanted = f"socket:[{inode}]"
    fd_dir = os.path.join(proc_root, str(pid), "fd")
    try:
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(os.path.join(fd_dir, fd)) == wanted:
                    return True
            except OSError:
                continue
    except OSError:
        return None
    return False


def failure_message(progress: list[str], step: str, status: int) -> str:
    """The step's own error lines (its stderr without the progress chatter; stdout may hold secrets)."""
    lines = [line for line in progress if "ERROR" in line or not line.startswith("[kslab] ")]
    return "\n".join(lines) or f"step {step} failed with exit status {status}"


def diff(olds: Mapping[str, Any], news: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(replaces, changed keys). A change of `triggers` replaces the step; of its step, delete step or
    environment re-runs it in place; stdout (an output) and legacy keys never count."""
    replaces = ["triggers"] if (olds.get("triggers") or []) != (news.get("triggers") or []) else []
    changed = [k for k in RERUN_KEYS if olds.get(k) != news.get(k)]
    return replaces, changed


def inputs_of(props: Mapping[str, Any]) -> dict:
    return {k: v for k, v in props.items() if k != "stdout" and k not in LEGACY_KEYS}


# --- running a step ------------------------------------------------------------------------------

class StepRunner:
    """Runs `python -m kslab.steps <step>` with the step's environment; its stderr is progress,
    passed on line by line, its stdout the result."""

    def __init__(self, log: Callable[[str], None], machine: Mapping[str, str] | None = None,
                 python: str = sys.executable):
        self.log = log
        self.machine = os.environ if machine is None else machine
        self.python = python

    def run(self, props: Mapping[str, Any], step_key: str = "step", urn: str = "", in_state: bool = False,
            stored: str | None = None) -> str:
        step = props.get(step_key)
        step_env = props.get("environment") or {}
        fragments = secret_fragments(step_env)
        for name in undeclared(step_env):
            self.log(f"[kslab] step {step}: ignored {name}, which is no kslab step variable")
        env = step_environment(step_env, self.machine, urn, in_state, stored)
        proc = subprocess.Popen([self.python, "-m", "kslab.steps", str(step)], cwd=PROJECT_DIR, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        progress: list[str] = []
        held: list[str] = []  # the error the step ends with: shown once, as the failure, not as progress too

        assert proc.stderr is not None and proc.stdout is not None  # both are pipes

        def relay() -> None:  # progress lines as they come, for long waits
            assert proc.stderr is not None
            for line in proc.stderr:
                line = redact(line.rstrip("\n"), fragments)
                progress.append(line)
                if line.startswith(ERROR_PREFIX) or (held and not line.startswith("[kslab] ")):
                    held.append(line)
                    continue
                while held:  # the step went on after an error line: it was progress
                    self.log(held.pop(0))
                self.log(line)

        reader = threading.Thread(target=relay, daemon=True)
        reader.start()
        stdout = proc.stdout.read()
        proc.wait()
        reader.join(timeout=10)
        gone = proc.returncode == contract.GONE_EXIT and step_key == "read_step"
        if proc.returncode != 0 and not gone:
            raise StepError(redact(failure_message(progress, str(step), proc.returncode), fragments))
        for line in held:  # an error line of a step that did not fail is progress after all
            self.log(line)
        if gone:
            raise Gone()
        return stdout


class Steps:
    """The provider's operations on plain property dicts (the gRPC layer below only converts)."""

    def __init__(self, runner: StepRunner):
        self.runner = runner

    def create(self, props: dict, urn: str = "") -> tuple[str, dict]:
        return uuid.uuid4().hex, {**inputs_of(props), "stdout": self.runner.run(props, urn=urn)}

    def diff(self, olds: dict, news: dict) -> tuple[bool, list[str], bool]:
        replaces, changed = diff(olds, news)
        # A step created by the dynamic provider has its pickled provider in its outputs: an update stores
        # the step without it, and runs nothing (see update).
        legacy = any(k in olds for k in LEGACY_KEYS)
        return bool(replaces or changed or legacy), replaces, bool(news.get("delete_before_replace"))

    def update(self, olds: dict, news: dict, urn: str = "") -> dict:
        _, changed = diff(olds, news)
        if not changed or not news.get("rerun_on_change", True):
            # Only the legacy keys changed, or only its triggers re-run this step (by replacing it): a new
            # kubeconfig or the like is stored.
            return {**inputs_of(news), "stdout": olds.get("stdout")}
        return {**inputs_of(news), "stdout": self.runner.run(news, urn=urn, in_state=True, stored=olds.get("stdout"))}

    def read(self, id_: str, props: dict, urn: str = "") -> tuple[str, dict]:
        """Refresh: a step with a read step reports what is there now, or that it is gone ("" id)."""
        if not props.get("read_step"):
            return id_, props
        try:
            return id_, {**inputs_of(props), "stdout": self.runner.run(props, "read_step", urn,
                                                                        stored=props.get("stdout"))}
        except Gone:
            return "", {}

    def delete(self, props: dict, urn: str = "") -> None:
        if props.get("delete_step"):
            self.runner.run(props, "delete_step", urn, stored=props.get("stdout"))


# --- the gRPC plugin -----------------------------------------------------------------------------

def _engine_log(engine_address: str | None) -> Callable[[str], None]:
    """Where a step's progress goes: the engine's log when the engine gave its address, else (or when the engine
    does not take it) this plugin's stderr."""
    import grpc
    from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

    engine = engine_pb2_grpc.EngineStub(grpc.insecure_channel(engine_address)) if engine_address else None

    def log(line: str) -> None:
        try:
            if engine:
                engine.Log(engine_pb2.LogRequest(severity=engine_pb2.INFO, message=line), timeout=5)
                return
        except grpc.RpcError:
            pass
        sys.stderr.write(line + "\n")
    return log


def _plain(struct) -> dict:
    from google.protobuf import json_format
    return json_format.MessageToDict(struct) if struct is not None else {}


def _struct(props: dict):
    from google.protobuf import struct_pb2
    out = struct_pb2.Struct()
    out.update(props)
    return out


class _Guarded:
    """The decorator of the provider's step operations. Only the engine that started this plugin may run steps: any
    other local process could otherwise call it on 127.0.0.1 and run a step, as the lab's user, with settings of
    its own."""

    def __init__(self, engine_pid: int):
        self.engine_pid = engine_pid
        self.server_port = 0  # the server's port, set once it is bound (before the server takes any call)

    def __call__(self, fn):
        """A failing step shows its own message only; anything else is kslab's bug, said as such."""
        import grpc
        guard = self

        def call(self, request, context):
            if caller_is(guard.engine_pid, context.peer(), guard.server_port) is False:
                context.abort(grpc.StatusCode.PERMISSION_DENIED,
                              "kslab step provider: only the Pulumi engine that started it may run its steps")
            try:
                return fn(self, request, context)
            except StepError as exc:
                context.abort(grpc.StatusCode.UNKNOWN, str(exc))
            except Exception as exc:  # noqa: BLE001 - a bug in kslab: the type and message, no traceback
                if os.environ.get(contract.ENV_DEBUG):
                    sys.stderr.write(traceback.format_exc())
                context.abort(grpc.StatusCode.INTERNAL,
                              f"kslab step provider failed ({exc.__class__.__name__}: {exc}); "
                              "run with KSLAB_DEBUG=1 for details and report it")
        return call


def _answers_without_steps() -> type:
    """The provider's answers that run no step: its version, no schema, no configuration, nothing to cancel."""
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import plugin_pb2, provider_pb2, provider_pb2_grpc

    class WithoutSteps(provider_pb2_grpc.ResourceProviderServicer):
        def GetPluginInfo(self, request, context):
            return plugin_pb2.PluginInfo(version=VERSION)

        def GetSchema(self, request, context):
            return provider_pb2.GetSchemaResponse(schema="{}")

        def CheckConfig(self, request, context):
            return provider_pb2.CheckResponse(inputs=request.news)

        def DiffConfig(self, request, context):
            # The provider has no configuration; a stack moving from the dynamic provider keeps its steps.
            return provider_pb2.DiffResponse(changes=provider_pb2.DiffResponse.DIFF_NONE)

        def Configure(self, request, context):
            return provider_pb2.ConfigureResponse(acceptSecrets=False, supportsPreview=False,
                                                  acceptResources=False)

        def Check(self, request, context):
            return provider_pb2.CheckResponse(inputs=request.news)

        def Cancel(self, request, context):
            return empty_pb2.Empty()
    return WithoutSteps


def _servicer(steps: Steps, guarded: _Guarded):
    """The ResourceProvider service: the step operations (guarded) on `steps`, converting only."""
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import provider_pb2

    without_steps: Any = _answers_without_steps()

    class Servicer(without_steps):
        @guarded
        def Diff(self, request, context):
            changes, replaces, dbr = steps.diff(_plain(request.olds), _plain(request.news))
            return provider_pb2.DiffResponse(
                changes=provider_pb2.DiffResponse.DIFF_SOME if changes else provider_pb2.DiffResponse.DIFF_NONE,
                replaces=replaces, deleteBeforeReplace=dbr)

        @guarded
        def Create(self, request, context):
            id_, outs = steps.create(_plain(request.properties), request.urn)
            return provider_pb2.CreateResponse(id=id_, properties=_struct(outs))

        @guarded
        def Read(self, request, context):
            props = _plain(request.properties) or _plain(request.inputs)
            id_, outs = steps.read(request.id, props, request.urn)
            return provider_pb2.ReadResponse(id=id_, properties=_struct(outs),
                                             inputs=_struct(inputs_of(outs)) if id_ else None)

        @guarded
        def Update(self, request, context):
            return provider_pb2.UpdateResponse(properties=_struct(steps.update(
                _plain(request.olds), _plain(request.news), request.urn)))

        @guarded
        def Delete(self, request, context):
            steps.delete(_plain(request.properties), request.urn)
            return empty_pb2.Empty()
    return Servicer()


def serve(engine_address: str | None) -> None:
    import grpc
    from pulumi.runtime.proto import provider_pb2_grpc

    steps = Steps(StepRunner(_engine_log(engine_address)))
    guarded = _Guarded(engine_pid=os.getppid())
    # Every step of a big lab may be waiting at once (installs, joins); each holds a thread while it runs.
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(_servicer(steps, guarded), server)
    port = guarded.server_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    # The engine reads the port from the first line of stdout.
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    server.wait_for_termination()

if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 and ":" in sys.argv[1] else None)
