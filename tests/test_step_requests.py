"""Typed step requests (kslab/model/requests.py) and the one table of steps (kslab/model/step_table.py).

- every step of every shipped and test stack (and of labs that reach the lab registry, archives, credentials, dev
  workspaces and copy mode) is registered with exactly the inputs the program gave before requests were typed
  (tests/stacks/step_requests.json, recorded then): an upgraded stack's no-change `up` runs no step;
- every request survives to_env then from_env, and writes back the same text;
- a missing or malformed variable is an error naming the step and the variable (a secret's value never shown).
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import os

import pytest

from kslab.model import contract, requests
from kslab.model.image_sources import LabRegistry
from kslab.model.step_table import KIND_CLUSTER_TYPE, STEP_TYPES, STEPS, step_type
from tests.support import step_requests

with open(step_requests.RECORDING) as _fh:
    RECORDED = json.load(_fh)


@pytest.fixture(scope="module")
def today():
    return step_requests.record()


def test_the_recording_covers_every_stack_file_and_every_step_type():
    assert set(step_requests.stack_files()) <= set(RECORDED)
    seen = {entry["type"] for lab in RECORDED.values() for entry in lab.values()}
    assert seen == set(STEP_TYPES), "every kind of step is in some recorded lab"


@pytest.mark.parametrize("lab", sorted(RECORDED))
def test_every_step_is_registered_exactly_as_before_requests_were_typed(today, lab):
    assert set(today[lab]) == set(RECORDED[lab])
    for name, entry in RECORDED[lab].items():
        assert today[lab][name] == entry, f"{lab}: step {name} changed"


def test_a_kind_wait_stays_as_the_stack_gave_it():
    env = requests.KindCluster("lab", "img", "cfg", "3m").to_env()
    assert env[contract.ENV_KIND_WAIT] == "3m"


# --- round trips ------------------------------------------------------------------------------------------

KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"
SAMPLES: list[requests.StepRequest] = [
    requests.Preflight(requests.PreflightPlan(["kindest/node:v1.26.13"], 12288, ["host", "member"])),
    requests.ImageCheck({"kubesphere/ks-apiserver:v3.4.1": ["host", "member"], "busybox:1.31.1": ["host"]}),
    requests.LabImages(LabRegistry("kslab-registry", 5100),
                       {"kubesphere/ks-installer:v3.4.1": requests.LabImage(["harbor.corp/me/ks-installer:dev"],
                                                                            ["lab"], True),
                        "prom/prometheus:v2.39.1": requests.LabImage(["harbor.corp/prom/prometheus:v2.39.1",
                                                                      "docker.io/prom/prometheus:v2.39.1"],
                                                                     ["lab", "lab2"], False)},
                       lab_id="demo-0123abcd", archives=["/work/a/images.tar"],
                       credentials=json.dumps({"harbor.corp": {"username": "me", "password": "pw"}})),
    requests.LabImages(LabRegistry("r", 5101), {}),
    requests.GeneratedSecret(),
    requests.KindCluster("lab", "kindest/node:v1.26.13", "kind: Cluster\n", "10m", LabRegistry("r", 5102)),
    requests.KindCluster("lab", "kindest/node:v1.26.13", "kind: Cluster\n", "3m"),
    requests.ClusterAccess("host", "host", KUBECONFIG),
    requests.InstallWait("lab", "none", KUBECONFIG, "v3.4.1", 600, ["servicemesh", "devops"],
                         json.dumps({"enabledTime": "t1", "uid": "u"})),
    requests.InstallWait("lab", "none", KUBECONFIG, "v3.2.1", 0.3, [], "{}"),
    requests.JoinCheck("member", "host", KUBECONFIG, KUBECONFIG + "#m", KUBECONFIG + "#j", True, "v3.4.1"),
    requests.JoinReady("member", "host", KUBECONFIG, KUBECONFIG, KUBECONFIG, False, "v3.2.1", 300, 120),
    requests.DevWorkspace("lab", "v3.4.1", "ks-apiserver", "/work/a/dev/api", True, KUBECONFIG, "172.18.0.10"),
    requests.TenantObjects("host", "v3.4.1", KUBECONFIG, [{"apiVersion": "iam.kubesphere.io/v1alpha2", "kind": "User",
                                                           "metadata": {"name": "pat"}, "spec": {"email": "p@x.io"}}],
                           600, "demo-0123abcd", password="Pw0rd-123456", wait_for=None),
    requests.TenantObjects("member", "v3.2.1", KUBECONFIG, [{"apiVersion": "v1", "kind": "Namespace",
                                                             "metadata": {"name": "shop"}}], 30, "demo-0123abcd",
                           wait_for=[["tenant.kubesphere.io", "v1alpha1", "workspaces", "shop"]]),
    requests.UserKnobs(0.05, 0.1, 5, 0, True, "lab"),
    requests.UserKnobs(),
]


def test_every_request_type_of_the_table_has_a_sample():
    assert {s.request for s in STEPS.values()} <= {type(s) for s in SAMPLES}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_to_env_then_from_env_gives_the_same_request_and_the_same_text(sample):
    env = sample.to_env()
    assert all(isinstance(k, str) and k in contract.STEP_ENV for k in env)
    assert all(isinstance(v, str) for v in env.values()), "every value is text"
    back = type(sample).from_env(env, "a-step")
    assert back == sample
    assert back.to_env() == env


def test_values_keep_their_types_across_the_boundary():
    wait = requests.InstallWait.from_env(SAMPLES[8].to_env(), "wait-install")
    assert wait.timeout == 600 and wait.to_env()[contract.ENV_TIMEOUT] == "600"
    assert wait.wait_keys == ["servicemesh", "devops"]
    ready = requests.JoinReady.from_env(SAMPLES[11].to_env(), "unjoin")
    assert ready.allow_loopback is False and ready.unjoin_timeout == 120
    images = requests.LabImages.from_env(SAMPLES[2].to_env(), "lab-images")
    assert images.images["kubesphere/ks-installer:v3.4.1"].override is True
    assert images.registry == LabRegistry("kslab-registry", 5100)
    assert requests.LabImages.credential_pairs(images.credentials) == {"harbor.corp": ("me", "pw")}


def test_lab_images_are_written_as_json_dumps_wrote_them():
    env = SAMPLES[2].to_env()
    assert env[contract.ENV_LAB_IMAGES].startswith(
        '{"kubesphere/ks-installer:v3.4.1": {"candidates": ["harbor.corp/me/ks-installer:dev"], "clusters": ["lab"], '
        '"override": true}, ')


# --- bad variables -------------------------------------------------------------------------------------------

def _required(kind):
    return [f.metadata["env"] for f in dataclasses.fields(kind) if not f.metadata["optional"]]


@pytest.mark.parametrize("sample", [s for s in SAMPLES if _required(type(s))], ids=lambda s: type(s).__name__)
def test_a_missing_variable_names_the_step_and_the_variable(sample):
    for name in _required(type(sample)):
        env = {k: v for k, v in sample.to_env().items() if k != name}
        with pytest.raises(requests.RequestError) as info:
            type(sample).from_env(env, "the-step")
        assert str(info.value) == f"internal: step the-step: {name} is not set"


@pytest.mark.parametrize("kind, name, bad", [
    (requests.InstallWait, contract.ENV_TIMEOUT, "ten minutes"),
    (requests.InstallWait, contract.ENV_TIMEOUT, "-1"),
    (requests.JoinReady, contract.ENV_ALLOW_LOOPBACK, "yes"),
    (requests.JoinReady, contract.ENV_UNJOIN_TIMEOUT, "nan"),
    (requests.Preflight, contract.ENV_PLAN, "{}"),
    (requests.Preflight, contract.ENV_PLAN, '{"node_images": "x", "memory_estimate_mib": 1}'),
    (requests.Preflight, contract.ENV_PLAN, '{"node_images": [], "memory_estimate_mib": "1"}'),
    (requests.ImageCheck, contract.ENV_IMAGES, "[1]"),
    (requests.ImageCheck, contract.ENV_IMAGES, "not json"),
    (requests.LabImages, contract.ENV_LAB_IMAGES, '{"a:1": {"candidates": [], "override": false}}'),
    (requests.LabImages, contract.ENV_LAB_IMAGES, '{"a:1": {"candidates": [], "clusters": [], "more": 1}}'),
    (requests.LabImages, contract.ENV_LAB_IMAGES, '{"a:1": {"candidates": [], "clusters": [], "override": 1}}'),
    (requests.LabImages, contract.ENV_LAB_REGISTRY, '{"name": "r"}'),
    (requests.LabImages, contract.ENV_LAB_ARCHIVES, '"/one/file.tar"'),
    (requests.KindCluster, contract.ENV_LAB_REGISTRY, "kslab-registry"),
    (requests.DevWorkspace, contract.ENV_DEV_KEEP_FILES, "True"),
])
def test_a_malformed_variable_names_the_step_and_the_variable(kind, name, bad):
    sample = next(s for s in SAMPLES if type(s) is kind)
    env = {**sample.to_env(), name: bad}
    with pytest.raises(requests.RequestError) as info:
        kind.from_env(env, "the-step")
    assert str(info.value).startswith(f"internal: step the-step: {name} is not ")
    assert str(info.value).endswith(repr(bad))


def test_a_malformed_secret_variable_is_never_shown():
    assert contract.is_secret_env(contract.ENV_REGISTRY_AUTH)
    kind = type("Secretive", (requests.StepRequest,), {"__annotations__": {"token": "list[str]"},
                                                         "token": requests.var(contract.ENV_REGISTRY_AUTH,
                                                                               requests.STRINGS)})
    kind = dataclasses.dataclass(frozen=True)(kind)
    with pytest.raises(requests.RequestError) as info:
        kind.from_env({contract.ENV_REGISTRY_AUTH: "hunter2-password"}, "lab-images")
    assert "hunter2" not in str(info.value) and str(info.value).endswith("(secret)")


def test_a_bad_knob_is_the_users_and_names_it():
    with pytest.raises(requests.RequestError) as info:
        requests.UserKnobs.from_env({contract.ENV_POLL_SECONDS: "fast"}, "wait-join")
    assert str(info.value) == "step wait-join: KSLAB_POLL_SECONDS is not a number of seconds: 'fast'"
    assert requests.UserKnobs.from_env({}, "x") == requests.UserKnobs()


def test_a_step_with_a_bad_request_ends_with_that_message_not_a_traceback(monkeypatch, capsys):
    from kslab.steps import common, kind_steps
    for name in contract.STEP_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(contract.ENV_CLUSTER, "lab")
    monkeypatch.setattr(common, "STEP", "kind-delete")
    with pytest.raises(SystemExit) as info:
        kind_steps.step_kind_delete()
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert err == f"[kslab] ERROR: internal: step kind-delete: {contract.ENV_NODE_IMAGE} is not set\n"


def test_an_older_lab_images_state_without_a_lab_id_reads_as_none():
    env = {k: v for k, v in SAMPLES[2].to_env().items() if k != contract.ENV_LAB_ID}
    assert requests.LabImages.from_env(env, "lab-images-read").lab_id is None


def test_an_older_lab_images_state_without_overrides_reads_as_none_overridden():
    """What the program wrote before kslab:imageOverrides (9b5f007): its refresh still reads it."""
    env = {contract.ENV_LAB_REGISTRY: '{"name": "kslab-registry", "hostPort": 5100}',
           contract.ENV_LAB_IMAGES: '{"kubesphere/ks-console:v3.4.1": {"candidates": ["harbor.corp/kubesphere/'
                                    'ks-console:v3.4.1"], "clusters": ["lab"]}}'}
    read = requests.LabImages.from_env(env, "lab-images-read")
    assert read.images["kubesphere/ks-console:v3.4.1"].override is False and read.lab_id is None


# --- the table ---------------------------------------------------------------------------------------------

def test_every_step_names_a_function_that_exists():
    for step in STEPS.values():
        module, _, name = step.function.partition(":")
        assert module.startswith("kslab.steps.") and callable(getattr(importlib.import_module(module), name)), step
        assert step.purpose


def test_types_and_requests_of_the_table():
    assert step_type("kind-create") == KIND_CLUSTER_TYPE == "kslab:steps:KindCluster"
    assert len(STEP_TYPES) == len([s for s in STEPS.values() if s.type_name])
    # a delete or read step runs with its create step's request
    assert STEPS["kind-delete"].request is STEPS["kind-read"].request is STEPS["kind-create"].request
    assert STEPS["unjoin"].request is STEPS["wait-join"].request
    assert STEPS["dev-down"].request is STEPS["dev-up"].request
    assert STEPS["lab-images-read"].request is STEPS["lab-images"].request
    with pytest.raises(KeyError):
        step_type("unjoin")


def test_the_program_refuses_a_request_that_is_not_the_steps():
    pulumi = pytest.importorskip("pulumi")
    from components.step_resources import ops_step
    with pytest.raises(TypeError, match="step role-guard reads ClusterAccess, not KindCluster"):
        ops_step("x", "role-guard", SAMPLES[6], pulumi.ResourceOptions())


def test_no_step_module_reads_a_step_variable_by_hand():
    """The steps read their request (common.request) and the user's knobs (common.knobs), never a variable."""
    import glob
    import re
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    found = {}
    for path in glob.glob(os.path.join(root, "kslab", "steps", "*.py")):
        with open(path) as fh:
            text = fh.read()
        # the plugin's own variables (the stack from the URN, whether the resource is in the state, the user's debug
        # switch, the CA of the cluster in the state, a tenant step's objects in the state) are no request's
        PLUGIN_OWN = ("ENV_STACK_NAME", "ENV_IN_STATE", "ENV_STATE_CA", "ENV_STATE_OBJECTS", "ENV_DEBUG")
        hits = [name for name in re.findall(r"(?:environ\.get\(|environ\[|\benv\()(?:names|contract)\.(ENV_[A-Z_]+)",
                                            text) if name not in PLUGIN_OWN]
        if hits:
            found[os.path.relpath(path, root)] = hits
    assert found == {}
