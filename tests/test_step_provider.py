"""kslab's step provider (kslab/steps/plugin.py): what replaces or re-runs a step, what a step's process
gets from the machine, and what a failing step shows (its own message, no secret)."""
from __future__ import annotations

import json
import os
import re
import stat
import textwrap

import pytest

from kslab.model import contract
from kslab.model.contract import GONE_EXIT
from kslab.steps.plugin import Gone, StepError, StepRunner, Steps, step_environment
from kslab.steps.redaction import REDACTED, redact, secret_fragments

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

    def run(self, p, step_key="step", urn="", in_state=False, stored=None):
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



def _credentials(**passwords: str) -> dict:
    return {contract.ENV_REGISTRY_AUTH: json.dumps({f"{host}.corp": {"username": "robot", "password": pw}
                                                    for host, pw in passwords.items()})}


@pytest.mark.parametrize("password", ["Tr0ub4dor&3x", "s3cr", "x"])
def test_redaction_removes_every_registry_password_of_any_length(password):
    """Issue #25 item 6: a password is blotted on its own (not only the whole JSON value), in each form a client
    writes it: user:password, its base64 (a Docker config's auth), URL-quoted, JSON-escaped."""
    import base64
    from urllib.parse import quote
    fragments = secret_fragments(_credentials(harbor=password, quay="another-one-entirely"))
    pair = f"robot:{password}"
    forms = (password, quote(password, safe=""), base64.b64encode(pair.encode()).decode(), json.dumps(password)[1:-1])
    for shown in (f"password {password} rejected", f"https://robot:{forms[1]}@harbor.corp/v2/",
                  f'{{"auth": "{forms[2]}"}}', f"login {pair} failed", f'{{"password": {json.dumps(password)}}}'):
        message = redact(shown, fragments)
        assert REDACTED in message and not any(re.search(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])",
                                                          message) for form in forms), (shown, message)
    assert redact("quay: another-one-entirely", fragments) == f"quay: {REDACTED}"
    assert redact("login as robot failed", fragments) == "login as robot failed", "the user name stays readable"


def test_a_short_password_blots_only_where_it_stands_alone():
    fragments = secret_fragments(_credentials(harbor="x"))
    assert redact("pushing nginx:latest to the box (exit 1)", fragments) == "pushing nginx:latest to the box (exit 1)"
    assert redact('{"username": "robot", "password": "x"}', fragments) == \
        f'{{"username": "robot", "password": "{REDACTED}"}}'

FAKE_STEP = textwrap.dedent("""\
    #!{python}
    import json, os, sys
    # what it was given, and its exit status, through TMPDIR (a machine variable steps get)
    with open(os.path.join(os.environ["TMPDIR"], "record.json"), "w") as fh:
        json.dump({{"argv": sys.argv[1:], "env": sorted(os.environ), "PATH": os.environ.get("PATH")}}, fh)
    print("stdout may hold a secret: " + os.environ["KSLAB_KUBECONFIG"])
    sys.stderr.write("[kslab] waiting for member\\n")
    sys.stderr.write("[kslab] ERROR: member refused key " + os.environ["KSLAB_KUBECONFIG"].split()[-1] + "\\n")
    exit_file = os.path.join(os.environ["TMPDIR"], "exit")
    sys.exit(int(open(exit_file).read()) if os.path.exists(exit_file) else 1)
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
    machine = {"PATH": os.environ["PATH"], "PULUMI_CONFIG_PASSPHRASE": "pass", "TMPDIR": str(tmp_path)}
    runner = StepRunner(logged.append, machine=machine, python=str(fake_python))
    with pytest.raises(StepError) as info:
        runner.run(props(environment={"KSLAB_CLUSTER": "member", "KSLAB_KUBECONFIG": KUBECONFIG}))
    message = str(info.value)
    assert message == f"[kslab] ERROR: member refused key {REDACTED}"
    assert logged == ["[kslab] waiting for member"]  # progress reaches the user; the error once, as the failure
    seen = json.loads(record.read_text())
    assert seen["argv"] == ["-m", "kslab.steps", "wait-install"]
    # (Python itself adds LC_CTYPE in a C locale, PEP 538.)
    assert set(seen["env"]) - {"LC_CTYPE"} == {"PATH", "TMPDIR", "KSLAB_CLUSTER", "KSLAB_KUBECONFIG"}


def test_a_read_step_exiting_gone_is_gone(tmp_path, fake_python):
    (tmp_path / "exit").write_text(str(GONE_EXIT))
    runner = StepRunner(lambda line: None, machine={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)},
                        python=str(fake_python))
    with pytest.raises(Gone):
        runner.run(props(read_step="kind-read", environment={"KSLAB_KUBECONFIG": KUBECONFIG}), "read_step")


def test_a_request_cannot_give_a_step_a_variable_that_is_no_step_variable(tmp_path, fake_python):
    """Defect 9 of #20: a caller's LD_PRELOAD or PATH never reaches the step; it is dropped and said so."""
    logged: list[str] = []
    machine = {"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)}
    runner = StepRunner(logged.append, machine=machine, python=str(fake_python))
    with pytest.raises(StepError):
        runner.run(props(environment={"KSLAB_KUBECONFIG": KUBECONFIG, "LD_PRELOAD": str(tmp_path / "evil.so"),
                                      "PATH": "/tmp/evil"}))
    seen = json.loads((tmp_path / "record.json").read_text())
    assert "LD_PRELOAD" not in seen["env"]
    assert seen["PATH"] == os.environ["PATH"], "the machine's PATH, not the caller's"
    assert [line for line in logged if "ignored" in line] == [
        "[kslab] step wait-install: ignored LD_PRELOAD, which is no kslab step variable",
        "[kslab] step wait-install: ignored PATH, which is no kslab step variable"]


def test_every_program_step_variable_is_declared():
    assert {contract.ENV_LAB_IMAGES, contract.ENV_REGISTRY_AUTH, contract.ENV_KUBECONFIG} <= contract.STEP_ENV
    assert not {"PATH", "LD_PRELOAD", "PULUMI_CONFIG_PASSPHRASE"} & contract.STEP_ENV
    assert contract.is_secret_env(contract.ENV_REGISTRY_AUTH), "the sources' credentials are redacted from messages"


def test_a_caller_is_the_engine_only_when_the_engine_holds_its_socket(tmp_path):
    """The plugin's check of who calls it, on a /proc written here: the peer's port maps to a socket inode in
    /proc/net/tcp, which the engine's pid holds or not."""
    (tmp_path / "net").mkdir()
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    # 127.0.0.1:54321 (0xD431) -> 127.0.0.1:40000 (0x9C40), inode 777
    row = "   0: 0100007F:D431 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 777\n"
    (tmp_path / "net" / "tcp").write_text(header + row)
    (tmp_path / "net" / "tcp6").write_text(header)
    for pid, inode in ((10, "777"), (11, "778")):
        fd = tmp_path / str(pid) / "fd"
        fd.mkdir(parents=True)
        os.symlink(f"socket:[{inode}]", fd / "5")
    from kslab.steps.plugin import caller_is
    assert caller_is(10, "ipv4:127.0.0.1:54321", 40000, str(tmp_path)) is True
    assert caller_is(11, "ipv4:127.0.0.1:54321", 40000, str(tmp_path)) is False
    assert caller_is(10, "ipv4:127.0.0.1:54322", 40000, str(tmp_path)) is False, "another connection"
    assert caller_is(12, "ipv4:127.0.0.1:54321", 40000, str(tmp_path)) is None, "no /proc entry: cannot tell"


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


def test_the_plugin_refuses_a_caller_that_is_not_its_engine():
    """Defect 9 of #20, on the real plugin: started by another process (here a shell, standing for the engine),
    it answers this test's Create, a local caller that is not its parent, with PERMISSION_DENIED and runs nothing."""
    import signal
    import subprocess

    import grpc
    from google.protobuf import struct_pb2
    from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

    from tests.support.mock_run import ROOT
    plugin = os.path.join(ROOT, "provider", "pulumi-resource-kslab")
    proc = subprocess.Popen(["sh", "-c", f"'{plugin}'; true"], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        port = int(proc.stdout.readline())
        stub = provider_pb2_grpc.ResourceProviderStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        properties = struct_pb2.Struct()
        properties.update({"step": "gen-secret", "environment": {}})
        with pytest.raises(grpc.RpcError) as info:
            stub.Create(provider_pb2.CreateRequest(urn="urn:pulumi:s::kslab::kslab:steps:GeneratedSecret::x",
                                                   properties=properties), timeout=30)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "only the Pulumi engine that started it" in info.value.details()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
