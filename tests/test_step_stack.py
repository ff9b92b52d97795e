"""The step plugin names the stack to every step process, from the resource's URN and never from the step's inputs
(an input would change every existing step's environment and so re-run every step on upgrade). (#25 item 1: the
kind steps know which lab they work for.)"""
from __future__ import annotations

from kslab.model import contract
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

    def run(self, props, step_key="step", urn="", in_state=False):
        self.seen.append((props[step_key], urn))
        self.in_state.append(in_state)
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
