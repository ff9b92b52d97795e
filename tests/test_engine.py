"""The real Pulumi engine: Pulumi.yaml, stack files, the program and the policy pack as the CLI
sees them. Needs the engine `make test` builds; fails (never skips) without it."""
import glob
import os
import shutil

import pytest

from tests.support.engine import make_project, planned_resources, policy_pack
from tests.support.expected import expected_resources
from tests.support.mock_run import ROOT, STACKS_DIR, stack_config
from tests.test_stacks_mock import spec_of

pytestmark = pytest.mark.engine
SHIPPED = sorted(os.path.basename(p)[len("Pulumi."):-len(".yaml")]
                 for p in glob.glob(os.path.join(STACKS_DIR, "Pulumi.*.yaml")))
MANDATORY = ["kslab-jwt-secret-mismatch", "kslab-invalid-role", "kslab-join-insecure-tls",
             "kslab-join-loopback-server", "kslab-unsupported-versions", "kslab-duplicate-port-or-name",
             "kslab-member-multiple-hosts", "kslab-duplicate-host-cluster-name"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("engine"))


@pytest.mark.parametrize("stack", SHIPPED)
def test_preview_shipped_stack_with_policy_pack(project, stack):
    project.init(stack)
    proc, preview = project.preview_json(stack)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert preview is not None
    expected = expected_resources(spec_of(stack_config(stack)))
    assert planned_resources(preview) == expected
    # The policy pack really ran (its report is in the human output): the dual-host experiment is
    # reported, no mandatory policy fires on a shipped stack.
    text = project.pulumi("preview", "--stack", stack, "--policy-pack", policy_pack())
    out = text.stdout + text.stderr
    assert text.returncode == 0 and "kslab@v" in out, out[-3000:]
    assert ("kslab-dual-host-experiment" in out) == (stack == "dual-host")
    assert "[mandatory]" not in out
    assert "can't run policy" not in out  # the join kubeconfig policies stay quiet on an unknown value


def test_the_engine_takes_the_built_plugins_as_installed_ones(project):
    """With kslab's own engine, each run's Pulumi home has the built kubernetes plugin installed, so the engine
    does not warn that it uses it from PATH (once per plugin load, four times a run before)."""
    if not os.environ.get("KSLAB_ENGINE_PLUGIN_HOME"):
        pytest.skip("SKIPPED: only kslab's own engine build (tools/engine/build.sh) comes with installed plugins")
    project.init("standalone")
    text = project.pulumi("preview", "--stack", "standalone", "--policy-pack", policy_pack())
    out = text.stdout + text.stderr
    assert text.returncode == 0, out[-3000:]
    assert "from $PATH" not in out, out[-3000:]


def test_broken_stack_fails_on_mandatory_policies(project):
    project.add_stack_file(os.path.join(ROOT, "tests", "stacks", "Pulumi.broken.yaml"), "broken")
    project.init("broken")
    proc = project.pulumi("preview", "--stack", "broken", "--policy-pack", policy_pack())
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    missing = [name for name in MANDATORY if name not in out]
    assert not missing, f"mandatory policies not reported: {missing}\n{out[-4000:]}"
    assert "mandatory" in out


def test_config_error_is_clear_and_creates_nothing(project, tmp_path):
    bad = tmp_path / "Pulumi.bad.yaml"
    # As the engine hands them over: a version YAML reads as a number, a mapping for a string, a typo'd key.
    bad.write_text("config:\n  kslab:clusters:\n    - name: Host_1\n      role: master\n"
                   "  kslab:kubesphereVersion: 3.40\n  kslab:registry: {host: r.local}\n"
                   "  kslab:installTimeoutSecond: 60\n  kslab:kindWait: 300\n")
    project.add_stack_file(str(bad), "bad")
    project.init("bad")
    proc = project.pulumi("up", "--yes", "--stack", "bad", timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "kslab:clusters[0].name = 'Host_1'" in out and "kslab:clusters[0].role = 'master'" in out
    assert "kslab:kubesphereVersion = '3.4': is not a KubeSphere release kslab knows (YAML reads an unquoted 3.40" \
        in out
    assert "kslab:registry = {'host': 'r.local'}: must be a string, but YAML read a mapping" in out
    assert "did you mean kslab:installTimeoutSeconds?" in out
    assert "kslab:kindWait = '300': must be a duration" in out
    assert "nothing was created" in out and "Traceback" not in out
    resources = project.export("bad").get("deployment", {}).get("resources") or []
    assert [r["type"] for r in resources if r["type"] != "pulumi:pulumi:Stack"] == []


def test_up_of_kind_stack_stops_at_preflight_without_docker(project, tmp_path):
    """`pulumi up` of a kind stack on a machine with no docker, kind or kubectl: a PATH that has only the engine
    and the few shell tools it uses (the same verdict on every machine, Docker or not)."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("sh", "bash", "sed", "head", "dirname", "env", "cat", "uname", "grep", "tr"):
        found = shutil.which(name)
        if found:
            os.symlink(found, tools / name)
    engine = os.path.dirname(shutil.which("pulumi"))
    project.init("standalone")
    proc = project.pulumi("up", "--yes", "--stack", "standalone", "--policy-pack", policy_pack(), timeout=300,
                          extra_env={"PATH": f"{engine}:{tools}"})
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "preflight failed, no cluster was created" in out and "Docker engine not reachable" in out
    assert "`kind` not found" in out
    # Only kslab's own message: no Python traceback from the step machinery (kslab/steps/plugin.py).
    assert "Traceback" not in out and 'File "' not in out, out[-3000:]
    assert "kslab:steps:Preflight" in out
    resources = project.export("standalone")["deployment"].get("resources") or []
    assert not [r for r in resources if r["urn"].endswith("lab-kind")], "no kind cluster step ran"


def test_stack_config_lives_in_stacks_dir(project):
    project.init("host-member")
    get = project.pulumi("config", "get", "kslab:jwtSecretMode", "--stack", "host-member", check=True)
    assert get.stdout.strip() == "shared"
    project.pulumi("config", "set", "kslab:installTimeoutSeconds", "900", "--stack", "host-member", check=True)
    with open(os.path.join(project.dir, "stacks", "Pulumi.host-member.yaml")) as fh:
        assert "kslab:installTimeoutSeconds: \"900\"" in fh.read()
    project.pulumi("config", "set", "--secret", "kslab:jwtSecret", "s3cr3t-value-for-test", "--stack", "host-member",
                   check=True)
    with open(os.path.join(project.dir, "stacks", "Pulumi.host-member.yaml")) as fh:
        text = fh.read()
    assert "s3cr3t-value-for-test" not in text and "secure:" in text
    assert not os.path.exists(os.path.join(project.dir, "Pulumi.host-member.yaml"))
