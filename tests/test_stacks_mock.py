"""Every shipped stack run through the real program under Pulumi mocks."""
import glob
import json
import os

import pulumi
import pytest

from kslab.model.spec import parse_lab
from kslab.model.stack_config import read_raw
from tests.support.expected import expected_resources
from tests.support.mock_run import ROOT, STACKS_DIR, run_program, stack_config
from tests.support.stack_config import FakeConfig

STACKS = sorted(os.path.basename(p)[len("Pulumi."):-len(".yaml")]
                for p in glob.glob(os.path.join(STACKS_DIR, "Pulumi.*.yaml")))


def spec_of(config: dict):
    """The lab the program reads from these settings (text, as Pulumi hands them over), through its own reader."""
    return parse_lab(read_raw(FakeConfig({k.split(":", 1)[1]: v for k, v in config.items()})))


def parent_name(run, reg):
    parent = next((r for r in run.resources if r.urn == reg.parent), None)
    return parent.name if parent else ""


@pytest.fixture(scope="module", params=STACKS)
def stack(request):
    config = stack_config(request.param)
    return request.param, spec_of(config), run_program(config)


def test_shipped_stacks_exist():
    assert {"standalone", "host-member", "dual-host"} <= set(STACKS)


def test_registered_resources_match_expectation(stack):
    _, spec, run = stack
    got = {(r.type, r.name, parent_name(run, r)) for r in run.resources}
    assert got == expected_resources(spec)


def test_kind_cluster_inputs(stack):
    _, spec, run = stack
    for c in spec.clusters:
        cmd = run.named(f"{c.name}-kind")
        env = cmd.inputs["environment"]
        assert env["KSLAB_NODE_IMAGE"] == c.node_image and env["KSLAB_CLUSTER"] == c.name
        assert f"hostPort: {c.console_host_port}" in env["KSLAB_KIND_CONFIG"]
        assert cmd.inputs["step"] == "kind-create" and cmd.inputs["delete_step"] == "kind-delete"
        assert "stdout" in cmd.additional_secret_outputs, "kind's kubeconfig output must be secret"
        assert "environment" in cmd.additional_secret_outputs
        assert cmd.delete_before_replace and cmd.inputs["delete_before_replace"], "a kind name cannot exist twice"
        # Created only after the machine preflight and the image check both passed.
        assert run.all_dependencies(cmd) == {run.named("preflight").urn, run.named("image-check").urn}


def test_cluster_configuration_inputs(stack):
    _, spec, run = stack
    for c in spec.clusters:
        cc = run.named(f"{c.name}-kubesphere-cc")
        assert "spec" in cc.secret_inputs, "the cc spec carries the jwtSecret and must be secret"
        mc = cc.inputs["spec"]["multicluster"]
        assert mc["clusterRole"] == c.role
        assert mc.get("hostClusterName") == (c.host_cluster_name if c.role == "host" else None)
        assert cc.inputs["metadata"]["labels"]["version"] == c.kubesphere_version
        deploy = run.named(f"{c.name}-kubesphere-deployment")
        image = deploy.inputs["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"kubesphere/ks-installer:{c.kubesphere_version}"
        # every k8s object of this cluster goes through this cluster's provider
        provider_urn = run.named(f"{c.name}-k8s").urn
        assert cc.provider.startswith(provider_urn) and deploy.provider.startswith(provider_urn)


def test_shared_jwt_secret_reaches_every_cluster(stack):
    _, spec, run = stack
    assert spec.jwt_secret_mode == "shared"
    gen = run.named("jwt-secret")
    assert "stdout" in gen.additional_secret_outputs
    secrets = {run.named(f"{c.name}-kubesphere-cc").inputs["spec"]["authentication"]["jwtSecret"]
               for c in spec.clusters}
    assert secrets == {"mock-jwt-secret-0123456789abcdef"}
    for c in spec.clusters:
        assert gen.urn in run.all_dependencies(run.named(f"{c.name}-kubesphere-cc"))


def test_joins_target_host_and_depend_on_both_installs(stack):
    _, spec, run = stack
    for j in spec.joins:
        obj = run.named(f"{j.name}-cluster")
        assert obj.provider.startswith(run.named(f"{j.host}-k8s").urn), "the Cluster object lives on the host"
        assert obj.inputs["metadata"]["name"] == j.member and "spec" in obj.secret_inputs
        assert obj.inputs["spec"]["joinFederation"] is True
        assert obj.inputs["spec"]["connection"]["type"] == "direct"
        deps = run.all_dependencies(obj)
        for side in (j.host, j.member):
            assert run.named(f"{side}-kubesphere-wait").urn in deps, f"join must wait for {side}'s install"
        check = run.named(f"{j.name}-check")
        assert check.urn in deps and "environment" in check.secret_inputs
        assert check.inputs["environment"]["KSLAB_MEMBER"] == j.member
        assert check.inputs["environment"]["KSLAB_HOST"] == j.host
        assert "172.18.0.10:6443" in check.inputs["environment"]["KSLAB_JOIN_KUBECONFIG"]
        ready = run.named(f"{j.name}-ready")
        assert ready.inputs["delete_step"] == "unjoin" and obj.urn in run.all_dependencies(ready)


def test_independent_clusters_do_not_depend_on_each_other(stack):
    _, spec, run = stack
    names = [c.name for c in spec.clusters]
    for a in names:
        a_side = {r.urn for r in run.resources if r.name.startswith(f"{a}-") or r.name == a}
        for b in names:
            if a == b:
                continue
            for r in run.resources:
                if r.name.startswith(f"{b}-kubesphere") or r.name in (f"{b}-kind", f"{b}-role-guard"):
                    assert not (run.all_dependencies(r) & a_side), f"{r.name} must not wait for cluster {a}"


def test_secret_outputs(stack):
    _, spec, run = stack
    for key in ("kubeconfigs", "internalKubeconfigs", "jwtSecrets"):
        assert key in run.secret_outputs
    for c in spec.clusters:
        assert f"kubeconfig-{c.name}" in run.secret_outputs
    assert "clusters" not in run.secret_outputs, "the plain facts must stay readable"
    clusters = run.outputs["clusters"]
    for c in spec.clusters:
        assert clusters[c.name]["role"] == c.role
        assert clusters[c.name]["consoleUrl"] == f"http://127.0.0.1:{c.console_host_port}"
        assert clusters[c.name]["context"] == f"kind-{c.name}"
    assert "mock-jwt" not in json.dumps(run.outputs["clusters"]) + json.dumps(run.outputs["joins"])
    assert set(run.outputs["joins"]) == {j.name for j in spec.joins}


def test_dual_host_warns_loudly():
    run = run_program(stack_config("dual-host"))
    warnings = [m for level, m in run.logs if level == "WARNING"]
    assert any("EXPERIMENT" in m and "6466" in m and "host2" in m for m in warnings), run.logs


def test_copy_mode_member_waits_for_host_secret():
    config = stack_config("host-member")
    config["kslab:jwtSecretMode"] = "copy"
    run = run_program(config)
    host_jwt = run.named("host-kubesphere-jwt")
    member_cc = run.named("member-kubesphere-cc")
    assert host_jwt.urn in run.all_dependencies(member_cc)
    assert member_cc.inputs["spec"]["authentication"]["jwtSecret"] == "mock-jwt-secret-0123456789abcdef"
    host_cc = run.named("host-kubesphere-cc")
    assert host_cc.inputs["spec"]["authentication"]["jwtSecret"] == ""  # the installer picks one
    assert not [r for r in run.resources if r.name == "jwt-secret"]


def test_user_jwt_secret_config_is_used_and_secret():
    config = stack_config("standalone")
    config["kslab:jwtSecret"] = "from-config-0123456789abcdef0123"
    run = run_program(config, secret_keys=["kslab:jwtSecret"])
    cc = run.named("lab-kubesphere-cc")
    assert cc.inputs["spec"]["authentication"]["jwtSecret"] == "from-config-0123456789abcdef0123"
    assert "spec" in cc.secret_inputs and not [r for r in run.resources if r.name == "jwt-secret"]


def test_invalid_config_registers_nothing():
    config = stack_config("host-member")
    config["kslab:joins"] = json.dumps([{"member": "member", "host": "nowhere"}])
    with pytest.raises(pulumi.RunError) as info:
        run_program(config)
    assert "kslab:joins[0].host" in str(info.value) and "nothing was created" in str(info.value)


def test_existing_backend_from_file(tmp_path):
    from tests.support.mock_run import fake_kubeconfig
    path = tmp_path / "member.kubeconfig"
    path.write_text(fake_kubeconfig("member", "https://10.1.2.3:6443"))
    config = stack_config("host-member")
    clusters = json.loads(config["kslab:clusters"])
    clusters[1] = {"name": "member", "role": "member", "backend": "existing", "kubernetesVersion": "v1.25.3",
                   "kubeconfigPath": str(path)}
    config["kslab:clusters"] = json.dumps(clusters)
    run = run_program(config)
    assert not [r for r in run.resources if r.name == "member-kind"]
    assert run.outputs["clusters"]["member"]["address"] == "10.1.2.3"
    assert run.outputs["clusters"]["member"]["context"] == "kslab-member"
    check = run.named("member-to-host-check")
    assert "10.1.2.3:6443" in check.inputs["environment"]["KSLAB_JOIN_KUBECONFIG"]
    assert "kubeconfig-member" in run.secret_outputs


def test_the_program_ends_quietly_when_the_language_host_interrupts_it():
    """A run stopped early (a step failed) interrupts the program while it may still be registering: it exits
    at once with 130, printing nothing (never Python's traceback of the interrupted registration). The probe runs
    the program's opening (up to reading the config) in a process of its own, then is interrupted."""
    import subprocess
    import sys
    probe = ("import os, signal, time\n"
             f"opening = open({os.path.join(ROOT, '__main__.py')!r}).read().split('config = pulumi.Config')[0]\n"
             "exec(compile(opening, '__main__.py', 'exec'), {'__name__': '__main__'})\n"
             "os.kill(os.getpid(), signal.SIGINT)\n"
             "time.sleep(5)\n"
             "print('not interrupted')\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout, proc.stderr) == (130, "", "")
