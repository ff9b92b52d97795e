"""Typed step requests: what each apply-time step is asked to do, written by the program and read by the step.

Every request is a frozen dataclass; each field names its environment variable (contract.ENV_*) and how its value
is written there. The program builds a request and registers `request.to_env()` as the step's environment; the step
process reads `Request.from_env(os.environ, step)`. Between the two, nothing but these types: no plain-dict keys, no
defaults on the step side (every setting's default is the model's, applied before the program builds the request).

What a request writes is exactly what the program wrote before requests were typed (a stack made then upgrades with
a no-change `up`: tests/test_step_requests.py compares every step of every stack, byte for byte): seconds as the
integer the program gives ("600"), flags as "true"/"false", lists and mappings as `json.dumps` writes them (its key
order and spacing), kind's wait as the text the stack gave ("3m").

A field whose value the program knows only at apply time (a kubeconfig, a step's result) is typed `L`: `str` in the
step, a `pulumi.Output[str]` in the program, written through unchanged (a secret stays a Pulumi secret; the step
plugin blots it out of messages by its name, contract.is_secret_env).
"""
from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Generic, TypeVar

from kslab.model import contract as names
from kslab.model.image_sources import LabRegistry

L = TypeVar("L")  # known at apply time only: str in the step, pulumi.Output[str] in the program


class RequestError(Exception):
    """A step's environment lacks a variable its request needs, or holds one it cannot read: a kslab bug (the
    program writes every request), said as such and naming the step and the variable."""


# --- how a value is written into one variable ------------------------------------------------------------------

@dataclass(frozen=True)
class Codec:
    write: Callable[[Any], Any]  # the value -> its text (an Output passes through a TEXT field unchanged)
    read: Callable[[str], Any]  # its text -> the value; ValueError (or TypeError, KeyError) when it is not one
    what: str  # what a good value is, for the error


def _seconds_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError(text)
    return value


def _flag(text: str) -> bool:
    if text not in ("true", "false"):
        raise ValueError(text)
    return text == "true"


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(value)
    return value


def _json_of(check: Callable[[Any], Any]) -> Codec:
    return Codec(json.dumps, lambda text: check(json.loads(text)), "JSON of the right shape")


TEXT = Codec(lambda v: v, lambda text: text, "text")
SECONDS = Codec(_seconds_text, _seconds, "a number of seconds")
FLAG = Codec(lambda v: "true" if v else "false", _flag, "'true' or 'false'")
WORDS = Codec(",".join, lambda text: [w for w in text.split(",") if w], "a comma-separated list")
STRINGS = _json_of(_strings)
REGISTRY = Codec(LabRegistry.as_env, LabRegistry.from_env, 'JSON {"name", "hostPort"}')


def var(name: str, codec: Codec = TEXT, *, older_states_lack: bool = False) -> Any:
    """A request field: its variable and codec. `older_states_lack`: a step's state from before the variable existed
    has none (its delete or read step runs with that state); the field then reads as None."""
    metadata = {"env": name, "codec": codec, "optional": older_states_lack}
    return field(default=None, metadata=metadata) if older_states_lack else field(metadata=metadata)


def optional(name: str, codec: Codec = TEXT) -> Any:
    """A field the program leaves out when the lab has none of it (no variable is written for None)."""
    return field(default=None, metadata={"env": name, "codec": codec, "optional": True})


def knob(name: str, default: Any, codec: Codec = SECONDS) -> Any:
    """A user's knob (UserKnobs): unset, it is `default`."""
    return field(default=default, metadata={"env": name, "codec": codec, "optional": True})


class StepRequest:
    """The base of every request: to_env for the program, from_env for the step."""
    WHOSE: ClassVar[str] = "internal: "  # who wrote a bad variable: the program (a kslab bug), or the user

    def to_env(self) -> dict[str, Any]:
        """{variable: text, or the program's Output} for every field that has a value."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]  # every subclass is a dataclass
            value = getattr(self, f.name)
            if value is not None:
                out[f.metadata["env"]] = f.metadata["codec"].write(value)
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str], step: str) -> Any:
        """The request of `step` from its environment; RequestError naming the step and the variable."""
        values: dict[str, Any] = {}
        for f in fields(cls):  # type: ignore[arg-type]
            name, codec = f.metadata["env"], f.metadata["codec"]
            text = environ.get(name)
            if text is None:
                if not f.metadata["optional"]:
                    raise RequestError(f"{cls.WHOSE}step {step}: {name} is not set")
                values[f.name] = None if f.default is MISSING else f.default
                continue
            try:
                values[f.name] = codec.read(text)
            except (ValueError, TypeError, KeyError, AttributeError):
                shown = "(secret)" if names.is_secret_env(name) else repr(text[:80])
                raise RequestError(f"{cls.WHOSE}step {step}: {name} is not {codec.what}: {shown}") from None
        return cls(**values)


# --- the requests ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PreflightPlan:
    """What the machine must hold for the lab's kind clusters (kslab/model/preflight_rules.py)."""
    node_images: list[str]
    memory_estimate_mib: int
    # Checked against the kind clusters that exist: one that is not this lab's own is refused (kslab/steps/kind_marks).
    kind_clusters: list[str]


def _plan(doc: Any) -> PreflightPlan:
    memory = doc["memory_estimate_mib"]
    if not set(doc) <= {"node_images", "memory_estimate_mib", "kind_clusters"} or type(memory) is not int:
        raise ValueError(doc)
    # A plan of a stack from before the lab mark has no kind_clusters: nothing to check against then.
    return PreflightPlan(_strings(doc["node_images"]), memory, _strings(doc.get("kind_clusters", [])))


@dataclass(frozen=True)
class Preflight(StepRequest):
    plan: PreflightPlan = var(names.ENV_PLAN, Codec(lambda p: json.dumps(
        {"node_images": p.node_images, "memory_estimate_mib": p.memory_estimate_mib, "kind_clusters": p.kind_clusters}),
        lambda text: _plan(json.loads(text)), 'JSON {"node_images", "memory_estimate_mib", "kind_clusters"}'))


def _image_plan(doc: Any) -> dict[str, list[str]]:
    if not isinstance(doc, dict):
        raise ValueError(doc)
    return {str(ref): _strings(clusters) for ref, clusters in doc.items()}


@dataclass(frozen=True)
class ImageCheck(StepRequest):
    # every planned image the check asks its registry for, with the clusters that pull it (in the plan's order)
    images: dict[str, list[str]] = var(names.ENV_IMAGES, _json_of(_image_plan))


@dataclass(frozen=True)
class LabImage:
    """One image the lab registry gets: where to look for it, in order, and which clusters pull it."""
    candidates: list[str]
    clusters: list[str]
    override: bool  # kslab:imageOverrides names it: its one candidate, put in again whenever the step runs


def _lab_images(doc: Any) -> dict[str, LabImage]:
    if not isinstance(doc, dict):
        raise ValueError(doc)
    out = {}
    for path, entry in doc.items():
        # a lab-images step of before kslab:imageOverrides (its refresh reads its state) has no "override"
        override = entry.get("override", False) if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not set(entry) <= {"candidates", "clusters", "override"} or \
                not isinstance(override, bool):
            raise ValueError(entry)
        out[str(path)] = LabImage(_strings(entry["candidates"]), _strings(entry["clusters"]), override)
    return out


LAB_IMAGES = Codec(lambda images: json.dumps({path: {"candidates": i.candidates, "clusters": i.clusters,
                                                      "override": i.override} for path, i in images.items()}),
                   lambda text: _lab_images(json.loads(text)),
                   'JSON {"<namespace/name:tag>": {"candidates", "clusters", "override"}}')


@dataclass(frozen=True)
class LabImages(StepRequest, Generic[L]):
    registry: LabRegistry = var(names.ENV_LAB_REGISTRY, REGISTRY)
    images: dict[str, LabImage] = var(names.ENV_LAB_IMAGES, LAB_IMAGES)  # by upstream path, in the plan's order
    # the lab's own repositories: labs/<lab id>/... (contract.lab_id); a lab-images step of before them has none
    lab_id: str | None = var(names.ENV_LAB_ID, older_states_lack=True)
    archives: list[str] | None = optional(names.ENV_LAB_ARCHIVES, STRINGS)  # absolute paths
    credentials: L | None = optional(names.ENV_REGISTRY_AUTH)  # kslab:registryCredentials' JSON (a secret)

    @staticmethod
    def credential_pairs(text: str | None) -> dict[str, tuple[str, str]]:
        """{host: (username, password)} of kslab:registryCredentials (validated by the model before any step)."""
        doc = json.loads(text or "{}")
        return {host: (entry["username"], entry["password"]) for host, entry in doc.items()}


@dataclass(frozen=True)
class GeneratedSecret(StepRequest):
    """The lab's shared jwtSecret, made once: it needs nothing."""


@dataclass(frozen=True)
class KindCluster(StepRequest):
    cluster: str = var(names.ENV_CLUSTER)
    node_image: str = var(names.ENV_NODE_IMAGE)
    kind_config: str = var(names.ENV_KIND_CONFIG)  # the rendered kind config (kslab/render), YAML
    kind_wait: str = var(names.ENV_KIND_WAIT)  # kslab:kindWait as the stack gives it, for `kind create --wait`
    lab_registry: LabRegistry | None = optional(names.ENV_LAB_REGISTRY, REGISTRY)  # the nodes pull from it


@dataclass(frozen=True)
class ClusterAccess(StepRequest, Generic[L]):
    """One cluster, its KubeSphere role and its kubeconfig (secret): the role guard, the install's baseline and
    the jwtSecret read."""
    cluster: str = var(names.ENV_CLUSTER)
    role: str = var(names.ENV_ROLE)
    kubeconfig: L = var(names.ENV_KUBECONFIG)


@dataclass(frozen=True)
class InstallWait(ClusterAccess[L]):
    ks_version: str = var(names.ENV_KS_VERSION)
    timeout: float = var(names.ENV_TIMEOUT, SECONDS)  # kslab:installTimeoutSeconds
    wait_keys: list[str] = var(names.ENV_WAIT_KEYS, WORDS)  # the cc status keys the run must report done
    baseline: L = var(names.ENV_BASELINE)  # the install-baseline step's result (JSON)

    @staticmethod
    def enabled_time(baseline: str) -> str | None:
        """The last run's start the baseline recorded (None: no run had started)."""
        doc = json.loads(baseline or "{}")
        value = doc.get("enabledTime") if isinstance(doc, dict) else None
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class JoinCheck(StepRequest, Generic[L]):
    member: str = var(names.ENV_MEMBER)
    host: str = var(names.ENV_HOST)
    host_kubeconfig: L = var(names.ENV_HOST_KUBECONFIG)
    member_kubeconfig: L = var(names.ENV_MEMBER_KUBECONFIG)
    join_kubeconfig: L = var(names.ENV_JOIN_KUBECONFIG)  # the member's, on the address its host reaches
    allow_loopback: bool = var(names.ENV_ALLOW_LOOPBACK, FLAG)
    ks_version: str = var(names.ENV_KS_VERSION)  # the host's: its console and controller judge the join


@dataclass(frozen=True)
class JoinReady(JoinCheck[L]):
    timeout: float = var(names.ENV_TIMEOUT, SECONDS)  # kslab:joinTimeoutSeconds
    unjoin_timeout: float = var(names.ENV_UNJOIN_TIMEOUT, SECONDS)  # kslab:unjoinTimeoutSeconds


@dataclass(frozen=True)
class DevWorkspace(StepRequest, Generic[L]):
    cluster: str = var(names.ENV_CLUSTER)
    ks_version: str = var(names.ENV_KS_VERSION)
    component: str = var(names.ENV_DEV_COMPONENT)
    directory: str = var(names.ENV_DEV_DIR)  # absolute
    keep_files: bool = var(names.ENV_DEV_KEEP_FILES, FLAG)
    kubeconfig: L = var(names.ENV_KUBECONFIG)
    cluster_address: L = var(names.ENV_DEV_CLUSTER_ADDRESS)  # the API server's host as the lab's hosts reach it


def _objects(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, list) or not all(isinstance(o, dict) and {"apiVersion", "kind", "metadata"} <= set(o)
                                            for o in doc):
        raise ValueError(doc)
    return doc


def _wait_for(doc: Any) -> list[list[str]]:
    if not isinstance(doc, list) or not all(isinstance(w, list) and len(w) == 4 for w in doc):
        raise ValueError(doc)
    return [_strings(w) for w in doc]


@dataclass(frozen=True)
class TenantObjects(StepRequest, Generic[L]):
    """KubeSphere tenant objects (a user and its GlobalRoleBinding, a workspace template and its members' bindings,
    a project's namespace) applied on one cluster by kslab's field manager, in order (kslab/render/tenants.py)."""
    cluster: str = var(names.ENV_CLUSTER)
    ks_version: str = var(names.ENV_KS_VERSION)
    kubeconfig: L = var(names.ENV_KUBECONFIG)
    objects: list[dict[str, Any]] = var(names.ENV_TENANT_OBJECTS, _json_of(_objects))
    timeout: float = var(names.ENV_TIMEOUT, SECONDS)  # how long a delete waits for KubeSphere's finalizers
    lab_id: str = var(names.ENV_LAB_ID)  # the label kslab marks its tenant objects with (contract.lab_id)
    # a user's password (a secret): sent only when the cluster's hash is not of it
    password: L | None = optional(names.ENV_TENANT_PASSWORD)
    # what must exist on the cluster first, [group, version, plural, name] (a project's Workspace, which KubeFed
    # places there; without it KubeSphere's namespace controller takes the project's workspace label off again)
    wait_for: list[list[str]] | None = optional(names.ENV_TENANT_WAIT_FOR, _json_of(_wait_for))


# --- what the user may set around `up` and `destroy` (never the program) --------------------------------------

@dataclass(frozen=True)
class UserKnobs(StepRequest):
    """The knobs a user (or a test) sets in the environment of `up`/`destroy`, passed on to every step
    (contract.USER_STEP_ENV); their defaults are written here only."""
    WHOSE: ClassVar[str] = ""
    poll_seconds: float = knob(names.ENV_POLL_SECONDS, 5.0)  # between two looks of a wait
    progress_seconds: float = knob(names.ENV_PROGRESS_SECONDS, 30.0)  # between two progress lines of a wait
    jwt_read_seconds: float = knob(names.ENV_JWT_READ_SECONDS, 60.0)  # how long read-jwt waits for the secret
    stale_wait_seconds: float = knob(names.ENV_STALE_WAIT, 10.0)  # for a rebuilt member's stale Cluster to go
    force_unjoin: bool = knob(names.ENV_FORCE_UNJOIN, False, Codec(lambda v: "1" if v else "",
                                                                   lambda text: text in ("1", "true"), "'1' or 'true'"))
    dev_gone: str | None = optional(names.ENV_DEV_GONE)  # a cluster the user says is gone for good
