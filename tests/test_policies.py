"""The policy pack over the resources the lab really registers (mock runs of the program)."""
import base64
import copy
import json

import pytest
import yaml

from tests.support.mock_run import ROOT, run_program, stack_config
from tests.support.policy_run import POLICIES, run_policies

BROKEN = f"{ROOT}/tests/stacks/Pulumi.broken.yaml"
MANDATORY = {p.name for p in POLICIES if p.enforcement_level.value == "mandatory"}


@pytest.fixture(scope="module")
def runs():
    return {name: run_program(stack_config(name)) for name in ("standalone", "host-member", "dual-host")}


def test_every_policy_has_name_description_level():
    assert len({p.name for p in POLICIES}) == len(POLICIES) == 17
    for p in POLICIES:
        assert p.name.startswith("kslab-") and p.description and p.enforcement_level is not None


def test_standalone_and_host_member_are_clean(runs):
    for name in ("standalone", "host-member"):
        v = run_policies(runs[name])
        assert not v.violations, (name, dict(v.violations))
        assert not v.unknown, (name, dict(v.unknown))


def test_dual_host_reports_only_advisories(runs):
    v = run_policies(runs["dual-host"])
    assert v.mandatory == set()
    assert "kslab-dual-host-experiment" in v.advisory
    text = v.messages("kslab-dual-host-experiment")
    assert "flap" in text and "member-kubesphere" in text and "host2" in text
    assert "kslab-inotify-note" in v.advisory  # three kind clusters
    assert "kslab-memory-budget" in v.advisory  # three clusters over the 8 GB laptop


def test_broken_stack_trips_every_mandatory_policy_it_can():
    run = run_program(stack_config(BROKEN))
    v = run_policies(run)
    expected = MANDATORY - {"kslab-plaintext-secret", "kslab-weak-admin-password"}
    assert expected <= v.mandatory, f"missing: {expected - v.mandatory}"
    assert "role 'master'" in v.messages("kslab-invalid-role") or "'master'" in v.messages("kslab-invalid-role")
    assert "member" in v.messages("kslab-jwt-secret-mismatch") and "host2" in v.messages("kslab-jwt-secret-mismatch")
    assert "30880" in v.messages("kslab-duplicate-port-or-name")
    assert "east" in v.messages("kslab-duplicate-host-cluster-name")
    assert "v3.2.1" in v.messages("kslab-unsupported-versions")
    assert "loopback" in v.messages("kslab-join-loopback-server")
    assert "insecure-skip-tls-verify" in v.messages("kslab-join-insecure-tls")
    assert "6466" in v.messages("kslab-member-multiple-hosts")
    assert "user 'ops'" in v.messages("kslab-user-on-shared-member") and "6466" in v.messages(
        "kslab-user-on-shared-member")
    assert "'old'" in v.messages("kslab-workspace-unjoined-cluster")


def test_the_demo_stack_passes_every_policy():
    v = run_policies(run_program(stack_config("demo")))
    assert v.mandatory == set() and not v.unknown, (dict(v.violations), dict(v.unknown))


def _admin(password: str, role: str = "platform-admin"):
    config = {**stack_config("host-member"), "kslab:validationMode": "warn", "kslab:adminPassword": password,
              "kslab:users": json.dumps([{"name": "root", "globalRole": role, "passwordSecret": "adminPassword"}])}
    return run_policies(run_program(config, secret_keys=["kslab:adminPassword"]))


@pytest.mark.parametrize("password", ["P@88w0rd", "Password1", "Kubesphere123"])
def test_a_platform_admin_with_a_weak_password_is_refused(password):
    v = _admin(password)
    assert v.mandatory == {"kslab-weak-admin-password"}
    assert "'root'" in v.messages("kslab-weak-admin-password") and password not in v.messages(
        "kslab-weak-admin-password")


def test_a_strong_admin_password_and_a_weak_regular_one_pass():
    assert _admin("Strong-Lab-Pass-42").mandatory == set()
    assert _admin("P@88w0rd", role="platform-regular").mandatory == set()


def test_the_opted_in_experiment_names_the_flapping_user():
    config = {**stack_config("dual-host"), "kslab:users": json.dumps([{"name": "ops"}])}
    v = run_policies(run_program(config))
    assert "kslab-user-on-shared-member" not in v.mandatory
    assert "user(s) ops" in v.messages("kslab-dual-host-experiment")


def test_stack_policies_use_registered_inputs_when_outputs_are_empty(runs):
    assert not run_policies(runs["host-member"], empty_stack_props=True).violations
    v = run_policies(run_program(stack_config(BROKEN)), empty_stack_props=True)
    assert MANDATORY - {"kslab-plaintext-secret", "kslab-weak-admin-password"} <= v.mandatory


def test_broken_stack_is_refused_by_the_program_in_strict_mode():
    import pulumi
    config = stack_config(BROKEN)
    del config["kslab:validationMode"]
    with pytest.raises(pulumi.RunError) as info:
        run_program(config)
    for fragment in ("clusters[3].role", "consoleHostPort", "hostClusterName",
                     "allowMultipleHosts"):
        assert fragment in str(info.value)


# --- each policy: one input that violates it, one that passes (from real registrations) ---------

def _mutate(run, name, fn):
    """Change one registration's wire properties (a deep copy), as a different program would send them."""
    def mutate(reg):
        raw = copy.deepcopy(reg.raw_props)
        return fn(raw) or raw if reg.name == name else raw
    return mutate


def _unsecret(value):
    if isinstance(value, dict) and value.get("4dabf18193072939515e22adb298388d") == "1b47061264138c4ac30d75fd1eb44270":
        return _unsecret(value["value"])
    if isinstance(value, dict):
        return {k: _unsecret(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsecret(v) for v in value]
    return value


def test_jwt_mismatch(runs):
    run = runs["host-member"]

    def change(raw):
        raw["spec"] = _unsecret(raw["spec"])
        raw["spec"]["authentication"]["jwtSecret"] = "other"
        raw["metadata"]["annotations"]["kslab.io/jwt-secret-source"] = "user"
    v = run_policies(run, mutate=_mutate(run, "member-kubesphere-cc", change))
    assert "kslab-jwt-secret-mismatch" in v.mandatory and "'member'" in v.messages("kslab-jwt-secret-mismatch")


def test_jwt_unknown_and_unproven_is_a_violation():
    config = stack_config("host-member")
    run = run_program(config, preview=True)

    def change(raw):
        raw["metadata"]["annotations"]["kslab.io/jwt-secret-source"] = "installer"
    v = run_policies(run, mutate=_mutate(run, "member-kubesphere-cc", change))
    assert "cannot be shown equal" in v.messages("kslab-jwt-secret-mismatch")


def test_invalid_role(runs):
    run = runs["standalone"]

    def change(raw):
        raw["spec"]["multicluster"]["clusterRole"] = "boss"
    v = run_policies(run, mutate=_mutate(run, "lab-kubesphere-cc", change))
    assert v.mandatory == {"kslab-invalid-role"} and "'boss'" in v.messages("kslab-invalid-role")


def _join_kubeconfig(run, edit):
    def change(raw):
        raw["spec"] = _unsecret(raw["spec"])
        doc = yaml.safe_load(base64.b64decode(raw["spec"]["connection"]["kubeconfig"]))
        edit(doc["clusters"][0]["cluster"])
        secret = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                  "value": base64.b64encode(yaml.safe_dump(doc).encode()).decode()}
        raw["spec"]["connection"]["kubeconfig"] = secret
    return _mutate(run, "member-to-host-cluster", change)


def test_insecure_tls(runs):
    run = runs["host-member"]
    v = run_policies(run, mutate=_join_kubeconfig(run, lambda c: c.update({"insecure-skip-tls-verify": True})))
    assert v.mandatory == {"kslab-join-insecure-tls"}
    assert "member-to-host-cluster" in v.messages("kslab-join-insecure-tls")


def test_loopback_and_its_explicit_opt_out(runs):
    run = runs["host-member"]
    v = run_policies(run, mutate=_join_kubeconfig(run, lambda c: c.update(server="https://127.0.0.1:6443")))
    assert v.mandatory == {"kslab-join-loopback-server"}
    # the opt-out needs both the reason on the object and the policy config
    both = _join_kubeconfig(run, lambda c: c.update(server="https://127.0.0.1:6443"))

    def with_reason(reg):
        raw = both(reg)
        if reg.name == "member-to-host-cluster":
            raw["metadata"]["annotations"]["kslab.io/loopback-join-reason"] = "API servers on one machine"
        return raw
    config = {"kslab-join-loopback-server": {"allowLoopbackWithReason": True}}
    assert "kslab-join-loopback-server" in run_policies(run, mutate=with_reason).mandatory
    assert "kslab-join-loopback-server" not in run_policies(run, config, mutate=with_reason).mandatory


def test_an_unknown_join_kubeconfig_in_preview_makes_no_noise():
    """#20: a kind member's kubeconfig is unknown in every preview; the join policies stay quiet (up checks the
    real value, and so does the join-check step), instead of two advisory lines in every preview."""
    run = run_program(stack_config("host-member"), preview=True)
    v = run_policies(run)
    assert v.mandatory == set()
    for policy in ("kslab-join-insecure-tls", "kslab-join-loopback-server"):
        assert policy not in v.unknown, v.unknown


def test_versions(runs):
    run = runs["standalone"]

    def change(raw):
        raw["environment"]["KSLAB_NODE_IMAGE"] = "kindest/node:v1.27.3"
    v = run_policies(run, mutate=_mutate(run, "lab-kind", change))
    assert "kslab-unsupported-versions" in v.mandatory and "v1.27.3" in v.messages("kslab-unsupported-versions")


def test_v32_join_on_124(runs):
    run = run_program(stack_config("dual-host"))

    def change(raw):
        raw["environment"]["KSLAB_NODE_IMAGE"] = "kindest/node:v1.24.15"
    v = run_policies(run, mutate=_mutate(run, "member-kind", change))
    assert "ServiceAccount token" in v.messages("kslab-unsupported-versions")


def test_duplicate_port(runs):
    run = runs["host-member"]

    def change(raw):
        raw["environment"]["KSLAB_KIND_CONFIG"] = raw["environment"]["KSLAB_KIND_CONFIG"].replace("30881", "30880")
    v = run_policies(run, mutate=_mutate(run, "member-kind", change))
    assert v.mandatory == {"kslab-duplicate-port-or-name"} and "30880" in v.messages("kslab-duplicate-port-or-name")


def test_duplicate_name(runs):
    run = runs["host-member"]

    def change(raw):
        raw["metadata"]["labels"]["kslab.io/cluster"] = "host"
    v = run_policies(run, mutate=_mutate(run, "member-kubesphere-cc", change))
    assert "cluster name 'host' is used 2 times" in v.messages("kslab-duplicate-port-or-name")


@pytest.mark.parametrize("target,field", [
    ("member-to-host-cluster", "spec.connection.kubeconfig"),
    ("host-kubesphere-cc", "spec.authentication.jwtSecret"),
    ("host-k8s", "kubeconfig"),
    ("member-to-host-check", "environment.KSLAB_HOST_KUBECONFIG"),
])
def test_plaintext_secret(runs, target, field):
    run = runs["host-member"]
    v = run_policies(run, mutate=_mutate(run, target, lambda raw: raw.update(_unsecret(raw))))
    assert v.mandatory == {"kslab-plaintext-secret"}
    assert field in v.messages("kslab-plaintext-secret") and target in v.messages("kslab-plaintext-secret")


def test_plaintext_stdout(runs):
    run = runs["host-member"]
    registration = run.named("host-kind")
    saved = list(registration.additional_secret_outputs)
    registration.additional_secret_outputs.clear()
    try:
        v = run_policies(run)
    finally:
        registration.additional_secret_outputs.extend(saved)
    assert "stdout" in v.messages("kslab-plaintext-secret")


def test_member_multiple_hosts_needs_opt_in():
    run = run_program(stack_config("dual-host"))

    def drop(raw):
        raw["metadata"]["annotations"].pop("kslab.io/allow-multiple-hosts")
    mutate = _mutate(run, "member-to-host2-cluster", drop)
    v = run_policies(run, mutate=mutate)
    assert "kslab-member-multiple-hosts" in v.mandatory and "kslab-dual-host-experiment" not in v.advisory


def test_duplicate_host_cluster_name():
    run = run_program(stack_config("dual-host"))

    def change(raw):
        raw["spec"]["multicluster"]["hostClusterName"] = "host"
    v = run_policies(run, mutate=_mutate(run, "host2-kubesphere-cc", change))
    assert v.mandatory == {"kslab-duplicate-host-cluster-name"}


def test_memory_budget_configurable(runs):
    run = runs["host-member"]
    assert "kslab-memory-budget" in run_policies(run, {"kslab-memory-budget": {"budgetMib": 4096}}).advisory
    assert "kslab-memory-budget" not in run_policies(run).advisory

    def devops(raw):
        raw["spec"]["devops"]["enabled"] = True
        raw["spec"]["logging"]["enabled"] = True
    assert "kslab-memory-budget" in run_policies(run, mutate=_mutate(run, "host-kubesphere-cc", devops)).advisory


def test_unpinned(runs):
    run = runs["standalone"]

    def change(raw):
        raw["environment"]["KSLAB_NODE_IMAGE"] = "kindest/node:latest"
    v = run_policies(run, mutate=_mutate(run, "lab-kind", change))
    assert "kslab-unpinned-versions" in v.advisory and "latest" in v.messages("kslab-unpinned-versions")


def test_inotify_note_can_be_switched_off():
    run = run_program(stack_config("dual-host"))
    assert "kslab-inotify-note" in run_policies(run).advisory
    off = run_policies(run, {"kslab-inotify-note": {"enforcementLevel": "disabled"}})
    assert "kslab-inotify-note" not in off.violations


def test_policy_config_example_is_valid_json():
    with open(f"{ROOT}/policies/policy-config.example.json") as fh:
        names = set(json.load(fh))
    assert names <= {p.name for p in POLICIES}


def test_the_one_pulumi_policy_internal_the_pack_replaces_is_still_where_it_was():
    """pulumi-policy drops secretness before validation; policies/__main__.py swaps in
    facts.props_from_rpc for the module-level `deserialize_properties` the analyzer calls. If the SDK
    moves or renames it, the swap would silently do nothing and kslab-plaintext-secret would go blind:
    this test fails instead."""
    import inspect

    import pulumi_policy.policy as sdk

    from policies.kslab_policies.facts import is_secret, props_from_rpc
    assert list(inspect.signature(sdk.deserialize_properties).parameters) == \
        list(inspect.signature(props_from_rpc).parameters) == ["props", "proxy_secrets"]
    source = inspect.getsource(sdk._PolicyAnalyzerServicer)
    # Analyze and AnalyzeStack look the function up by its module-level name at call time.
    assert source.count("deserialize_properties(json_format.MessageToDict(") >= 2
    wire = {"kubeconfig": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                           "value": "apiVersion: v1"}}
    assert is_secret(props_from_rpc(wire)["kubeconfig"])
    assert not is_secret(sdk.deserialize_properties(wire)["kubeconfig"])
