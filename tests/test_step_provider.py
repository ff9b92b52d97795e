"""kslab's step provider (components/provider.py): what replaces or re-runs a step, what a step's process
gets from the machine, and what a failing step shows (its own message, no secret)."""
from __future__ import annotations

import json
import os
import stat
import textwrap

import pytest

from components import contract
from components.contract import GONE_EXIT
from components.provider import REDACTED, Gone, StepError, StepRunner, Steps, redact, secret_fragments, step_environment

KUBECONFIG = textwrap.dedent("""\
    apiVersion: v1
    clusters:
    - cluster:
        certificate-authority-data: Q0FDQUNBQ0FDQUNBQ0FDQUNBQ0E=
        server: https://172.18.0.3:6443
      name: kind-member
    users:
    - name: kind-member
      user:
        client-key-data: S0VZS0VZS0VZS0VZS0VZS0VZS0VZS0VZ
    """)


def props(**changes) -> dict:
    base = {"step": "wait-install", "delete_step": None, "read_step": None,
            "environment": {"KSLAB_CLUSTER": "member", "KSLAB_KUBECONFIG": KUBECONFIG},
            "triggers": ["fingerprint-1"], "delete_before_replace": False, "rerun_on_change": True}
    return {**base, **changes}


class RecordingRunner:
    def __init__(self, gone: bool = False):
        self.runs: list[str] = []
        self.gone = gone

    def run(self, p, step_key="step"):
        self.runs.append(p[step_key])
        if self.gone:
            raise Gone()
        return "out-" + p[step_key]


def test_a_trigger_change_replaces_the_step():
    changes, replaces, _ = Steps(RecordingRunner()).diff({**props(), "stdout": "x"}, props(triggers=["fp-2"]))
    assert changes and replaces == ["triggers"]


def test_an_environment_change_reruns_the_step_in_place():
    steps = Steps(RecordingRunner())
    new = props(environment={"KSLAB_CLUSTER": "member", "KSLAB_KUBECONFIG": KUBECONFIG + "# rotated\n"})
    changes, replaces, _ = steps.diff({**props(), "stdout": "x"}, new)
    assert changes and replaces == []
    assert steps.update({**props(), "stdout": "x"}, new)["stdout"] == "out-wait-install"
    assert steps.runner.runs == ["wait-install"]


def test_stdout_is_an_output_and_never_a_change():
    changes, replaces, _ = Steps(RecordingRunner()).diff({**props(), "stdout": "old result"}, props())
    assert not changes and replaces == []


def test_a_step_rerun_only_by_its_triggers_stores_a_new_environment_without_running():
    steps = Steps(RecordingRunner())
    new = props(rerun_on_change=False, environment={"KSLAB_CLUSTER": "member", "KSLAB_KUBECONFIG": "new"})
    outs = steps.update({**props(rerun_on_change=False), "stdout": "kept"}, new)
    assert steps.runner.runs == [] and outs["stdout"] == "kept" and outs["environment"]["KSLAB_KUBECONFIG"] == "new"


def test_a_step_made_by_the_dynamic_provider_is_updated_without_running():
    steps = Steps(RecordingRunner())
    old = {**props(), "stdout": "result", "__provider": "gASV...pickled"}
    changes, replaces, _ = steps.diff(old, props())
    assert changes and replaces == []
    outs = steps.update(old, props())
    assert steps.runner.runs == [] and outs["stdout"] == "result" and "__provider" not in outs


def test_delete_runs_the_delete_step_and_nothing_without_one():
    steps = Steps(RecordingRunner())
    steps.delete(props())
    steps.delete(props(delete_step="kind-delete"))
    assert steps.runner.runs == ["kind-delete"]


def test_a_read_step_that_finds_its_object_gone_drops_it_from_the_state():
    assert Steps(RecordingRunner(gone=True)).read("id-1", props(read_step="kind-read")) == ("", {})
    assert Steps(RecordingRunner()).read("id-1", props()) == ("id-1", props())


def test_a_step_gets_only_what_it_needs_from_the_machine():
    machine = {"PATH": "/usr/bin", "HOME": "/home/u", "DOCKER_HOST": "unix:///run/d.sock",
               "PULUMI_CONFIG_PASSPHRASE": "pass", "PULUMI_ACCESS_TOKEN": "tok", "KUBECONFIG": "/home/u/.kube/config",
               "AWS_SECRET_ACCESS_KEY": "aws", contract.ENV_FORCE_UNJOIN: "1"}
    env = step_environment({"KSLAB_CLUSTER": "member", "KSLAB_KUBECONFIG": KUBECONFIG}, machine)
    assert env == {"PATH": "/usr/bin", "HOME": "/home/u", "DOCKER_HOST": "unix:///run/d.sock",
                   contract.ENV_FORCE_UNJOIN: "1", "KSLAB_CLUSTER": "member", "KSLAB_KUBECONFIG": KUBECONFIG}


def test_redaction_removes_a_kubeconfig_and_its_key_data_from_a_message():
    fragments = secret_fragments({"KSLAB_CLUSTER": "member", "KSLAB_KUBECONFIG": KUBECONFIG})
    message = redact("bad key S0VZS0VZS0VZS0VZS0VZS0VZS0VZS0VZ in member's kubeconfig", fragments)
    assert "S0VZ" not in message and REDACTED in message and "member" in message


def test_redaction_keeps_plain_settings_readable():
    fragments = secret_fragments({"KSLAB_MEMBER": "member-east", "KSLAB_HOST": "host-west",
                                  "KSLAB_WAIT_KEYS": "ks-core,monitoring", "KSLAB_MEMBER_KUBECONFIG": KUBECONFIG})
    message = "member 'member-east' of host 'host-west' waits for ks-core,monitoring"
    assert redact(message, fragments) == message


FAKE_STEP = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    with open(os.environ["RECORD"], "w") as fh:
        json.dump({{"argv": sys.argv[1:], "env": sorted(os.environ)}}, fh)
    print("stdout may hold a secret: " + os.environ["KSLAB_KUBECONFIG"])
    sys.stderr.write("[kslab] waiting for member\\n")
    sys.stderr.write("[kslab] ERROR: member refused key " + os.environ["KSLAB_KUBECONFIG"].split()[-1] + "\\n")
    sys.exit(int(os.environ.get("EXIT", "1")))
    """)


@pytest.fixture
def fake_python(tmp_path):
    path = tmp_path / "python"
    path.write_text(FAKE_STEP.format(python=os.path.realpath(os.sys.executable)))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_failing_step_shows_its_own_error_line_without_secrets_or_progress(tmp_path, fake_python):
    record = tmp_path / "record.json"
    logged: list[str] = []
    machine = {"PATH": os.environ["PATH"], "PULUMI_CONFIG_PASSPHRASE": "pass"}
    runner = StepRunner(logged.append, machine=machine, python=str(fake_python))
    with pytest.raises(StepError) as info:
        runner.run(props(environment={"KSLAB_CLUSTER": "member", "KSLAB_KUBECONFIG": KUBECONFIG,
                                      "RECORD": str(record)}))
    message = str(info.value)
    assert message == f"[kslab] ERROR: member refused key {REDACTED}"
    assert logged == ["[kslab] waiting for member", message]  # progress reaches the user, redacted too
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["-m", "components.ops", "wait-install"]
    # (Python itself adds LC_CTYPE in a C locale, PEP 538.)
    assert set(seen["env"]) - {"LC_CTYPE"} == {"PATH", "KSLAB_CLUSTER", "KSLAB_KUBECONFIG", "RECORD"}


def test_a_read_step_exiting_gone_is_gone(tmp_path, fake_python):
    runner = StepRunner(lambda line: None, machine={"PATH": os.environ["PATH"]}, python=str(fake_python))
    with pytest.raises(Gone):
        runner.run(props(read_step="kind-read", environment={
            "KSLAB_KUBECONFIG": KUBECONFIG, "RECORD": str(tmp_path / "r.json"), "EXIT": str(GONE_EXIT)}), "read_step")


def test_step_environment_names_are_spelled_only_in_the_contract():
    """One source: the program, the steps and the provider name a step's variables through contract.py."""
    import glob
    import re

    from tests.support.mock_run import ROOT
    spelled = {}
    for path in glob.glob(os.path.join(ROOT, "components", "**", "*.py"), recursive=True):
        if path.endswith("contract.py"):
            continue
        with open(path) as fh:
            found = re.findall(r'"(KSLAB_[A-Z_]+)"', fh.read())
        if found:
            spelled[os.path.relpath(path, ROOT)] = found
    assert spelled == {}
    defined = {v for k, v in vars(contract).items() if k.startswith("ENV_")}
    assert len(defined) == len([k for k in vars(contract) if k.startswith("ENV_")]), "two names, one variable"
