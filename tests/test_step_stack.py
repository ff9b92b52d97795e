"""The step plugin names the stack to every step process, from the resource's URN and never from the step's inputs
(an input would change every existing step's environment and so re-run every step on upgrade). (#25 item 1: the
kind steps know which lab they work for.)"""
from __future__ import annotations

import base64
import json

from kslab.model import contract
from kslab.model import kubeconfig as kc
from kslab.steps.plugin import Steps, step_environment

URN = "urn:pulumi:dev-lab::kslab::kslab:lab:Lab$kslab:lab:KindCluster$kslab:steps:KindCluster::host-kind"


def test_the_stack_comes_from_the_urn():
    env = step_environment({contract.ENV_CLUSTER: "host", contract.ENV_STACK_NAME: "forged"}, {}, URN)
    assert env[contract.ENV_STACK_NAME] == "dev-lab" and env[contract.ENV_CLUSTER] == "host"
    assert contract.ENV_STACK_NAME not in step_environment({contract.ENV_CLUSTER: "host"}, {})
    assert contract.ENV_STACK_NAME not in step_environment({}, {}, "not-a-urn")


class UrnRunner:
    def __init__(self):
        self.seen: list[tuple[str, str]] = []
        self.in_state: list[bool] = []
        self.stored: list[str | None] = []

    def run(self, props, step_key="step", urn="", in_state=False, stored=None):
        self.seen.append((props[step_key], urn))
        self.in_state.append(in_state)
        self.stored.append(stored)
        return "{}"


def test_every_operation_hands_the_urn_to_the_step():
    steps = Steps(UrnRunner())
    props = {"step": "kind-create", "read_step": "kind-read", "delete_step": "kind-delete",
             "environment": {contract.ENV_CLUSTER: "host"}, "triggers": [], "rerun_on_change": True}
    steps.create(props, URN)
    steps.update({**props, "environment": {}}, props, URN)
    steps.read("id", props, URN)
    steps.delete(props, URN)
    assert steps.runner.seen == [("kind-create", URN), ("kind-create", URN), ("kind-read", URN),
                                 ("kind-delete", URN)]


def test_an_update_tells_the_step_its_resource_is_in_the_state_and_a_request_cannot_say_so():
    """kind-create run again (an update) acts on the cluster the state holds; a first create is told nothing, and a
    request naming the variable itself is overruled."""
    steps = Steps(UrnRunner())
    props = {"step": "kind-create", "environment": {contract.ENV_CLUSTER: "host"}, "triggers": [],
             "rerun_on_change": True}
    steps.create(props, URN)
    steps.update({**props, "environment": {}}, props, URN)
    assert steps.runner.in_state == [False, True]
    forged = {contract.ENV_CLUSTER: "host", contract.ENV_IN_STATE: "1"}
    assert contract.ENV_IN_STATE not in step_environment(forged, {}, URN)
    assert step_environment(forged, {}, URN, in_state=True)[contract.ENV_IN_STATE] == "1"


def test_read_delete_and_update_hand_the_step_the_ca_of_the_cluster_in_the_state_and_a_request_cannot_forge_it():
    """(#25 item 1, a cluster made anew under the lab's cluster's name) The kind steps tell the cluster the state holds
    from another of its name by its certificate authority: the plugin names the stored kubeconfig's, never a request."""
    from tests.support.mock_run import fake_kubeconfig
    pem = b"-----BEGIN CERTIFICATE-----\nbGFiLWNh\n-----END CERTIFICATE-----\n"
    kubeconfig = fake_kubeconfig("host", "https://127.0.0.1:1").replace("Q0E=", base64.b64encode(pem).decode())
    stored = json.dumps({"kubeconfig": kubeconfig, "containerIp": "172.18.0.2"})
    steps = Steps(UrnRunner())
    props = {"step": "kind-create", "read_step": "kind-read", "delete_step": "kind-delete",
             "environment": {contract.ENV_CLUSTER: "host"}, "triggers": [], "rerun_on_change": True}
    steps.create(props, URN)
    steps.update({**props, "environment": {}, "stdout": stored}, props, URN)
    steps.read("id", {**props, "stdout": stored}, URN)
    steps.delete({**props, "stdout": stored}, URN)
    assert steps.runner.stored == [None, stored, stored, stored]
    fingerprint = kc.certificate_fingerprint(pem)
    assert fingerprint and step_environment({}, {}, URN, stored=stored)[contract.ENV_STATE_CA] == fingerprint
    forged = {contract.ENV_CLUSTER: "host", contract.ENV_STATE_CA: "forged"}
    assert contract.ENV_STATE_CA not in step_environment(forged, {}, URN)
    assert contract.ENV_STATE_CA not in step_environment({}, {}, URN, stored="not json")


def test_a_tenant_steps_stored_objects_reach_only_its_rerun_and_never_from_a_request():
    stored = json.dumps({"cluster": "host", "objects": ["User 'ann'", "GlobalRoleBinding 'ann-platform-admin'"]})
    rerun = step_environment({}, {}, URN, in_state=True, stored=stored)
    assert json.loads(rerun[contract.ENV_STATE_OBJECTS]) == ["User 'ann'", "GlobalRoleBinding 'ann-platform-admin'"]
    assert contract.ENV_STATE_OBJECTS not in step_environment({}, {}, URN, stored=stored)  # a delete or read
    forged = {contract.ENV_STATE_OBJECTS: json.dumps(["Namespace 'kube-system'"])}
    assert contract.ENV_STATE_OBJECTS not in step_environment(forged, {}, URN, in_state=True)
    assert contract.ENV_STATE_OBJECTS not in step_environment({}, {}, URN, in_state=True, stored='{"kubeconfig": "x"}')
