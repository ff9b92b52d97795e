"""`pulumi up` / `pulumi destroy` end to end on live API servers.

What is real: the Pulumi engine and providers, kube-apiserver + etcd per cluster (CA-verified
kubeconfigs), every object the lab applies, and every check the lab's steps make against them.
What is played (tests/harness/ks_operators.py): ks-installer and ks-controller-manager, i.e. the cc
status, the kubesphere-config map and the Cluster conditions/finalizer; and the namespace controller.
"""
import base64
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time

import pytest
import yaml

from tests.support.engine import copy_items, policy_pack
from tests.support.live import LiveLab
from tests.support.mock_run import ROOT

pytestmark = [pytest.mark.engine, pytest.mark.live]


def _out(proc):
    return proc.stdout + proc.stderr


def _assert_ok(proc, what):
    assert proc.returncode == 0, f"{what} failed:\n{_out(proc)[-6000:]}"


def _jwt(lab, name):
    cm = lab.core(name).read_namespaced_config_map("kubesphere-config", "kubesphere-system")
    return yaml.safe_load(cm.data["kubesphere.yaml"])["authentication"]["jwtSecret"]


def _check_lab(lab):
    """Every object the plan promised, in the right API server, with the right content."""
    cfg = lab.config
    clusters = {c["name"]: c for c in cfg["kslab:clusters"]}
    jwts = set()
    for name, c in clusters.items():
        cc = lab.cc(name)
        assert cc is not None, f"no cc on {name}"
        mc = cc["spec"]["multicluster"]
        assert mc["clusterRole"] == c["role"]
        assert mc.get("hostClusterName") == c.get("hostClusterName")
        assert cc["status"]["core"]["status"] == "enabled"
        deploy = __import__("kubernetes").client.AppsV1Api(lab.api(name)).read_namespaced_deployment(
            "ks-installer", "kubesphere-system")
        assert deploy.spec.template.spec.containers[0].image == "kubesphere/ks-installer:v3.4.1"
        jwts.add(cc["spec"]["authentication"]["jwtSecret"])
        assert _jwt(lab, name) == cc["spec"]["authentication"]["jwtSecret"]
    assert len(jwts) == 1 and len(next(iter(jwts))) == 32, "one shared 32-character jwtSecret"
    for join in cfg.get("kslab:joins") or []:
        objs = {o["metadata"]["name"]: o for o in lab.member_clusters(join["host"])}
        obj = objs[join["member"]]
        assert obj["spec"]["joinFederation"] is True and obj["spec"]["connection"]["type"] == "direct"
        kubeconfig = base64.b64decode(obj["spec"]["connection"]["kubeconfig"]).decode()
        assert kubeconfig == lab.clusters[join["member"]].kubeconfig_path.read_text() or \
            yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]["server"] == lab.clusters[join["member"]].server
        assert "insecure-skip-tls-verify" not in kubeconfig
        assert {c["type"]: c["status"] for c in obj["status"]["conditions"]}["Ready"] == "True"
    # joins live only on hosts
    for name, c in clusters.items():
        if c["role"] != "host":
            assert lab.member_clusters(name) == []
        else:  # the host's own entry, made by its controller once multicluster is on (reconcileHostCluster)
            own = [o for o in lab.member_clusters(name)
                   if "cluster-role.kubesphere.io/host" in (o["metadata"].get("labels") or {})]
            assert [o["metadata"]["name"] for o in own] == [c.get("hostClusterName") or name]


def _secrets_of(lab):
    """Every cluster's client key and certificate, and its jwtSecret: read while the lab is up (destroy
    removes kubesphere-config), and never skipped (a missing one fails here)."""
    values = set()
    for name, cluster in lab.clusters.items():
        text = cluster.kubeconfig_path.read_text()
        doc = yaml.safe_load(text)
        values.add(doc["users"][0]["user"]["client-key-data"])
        values.add(doc["users"][0]["user"]["client-certificate-data"][:60])
        values.add(_jwt(lab, name))
    # Two per cluster, and at least one jwtSecret (shared mode: one for all).
    assert all(values) and len(values) >= 2 * len(lab.clusters) + 1, "a secret to look for is missing"
    return values


def _assert_no_secret_leak(lab, secrets, *texts):
    state = lab.state_text()
    for s in secrets:
        assert s not in state, "a kubeconfig key or jwtSecret is in the state in plaintext"
        for t in texts:
            assert s not in t, "a kubeconfig key or jwtSecret reached the CLI output"


@pytest.fixture
def live(tmp_path, request):
    lab = LiveLab(tmp_path, request.param)
    yield lab
    lab.close()


@pytest.mark.parametrize("live", ["live-standalone", "live-host-member", "live-dual-host"], indirect=True)
def test_lifecycle(live):
    lab = live
    first = lab.up()
    _assert_ok(first, "first up")
    _check_lab(lab)
    secrets = _secrets_of(lab)
    # the steps' progress reaches the user's output
    assert f"[kslab] KubeSphere on '{lab.names[0]}' is ready" in _out(first), _out(first)[-3000:]

    # the outputs are enough to use the lab
    outputs = json.loads(lab.pulumi("stack", "output", "--json", check=True).stdout)
    for name in lab.names:
        assert outputs["clusters"][name]["installState"] == "enabled"
        assert outputs[f"kubeconfig-{name}"] == "[secret]"
    for join in lab.config.get("kslab:joins") or []:
        assert outputs["joins"][f"{join['member']}-to-{join['host']}"]["state"] == "Ready"
    shown = json.loads(lab.pulumi("stack", "output", "--json", "--show-secrets", check=True).stdout)
    assert shown[f"kubeconfig-{lab.names[0]}"] == lab.clusters[lab.names[0]].kubeconfig_path.read_text()

    # a second up changes nothing and runs no step
    installs_before = {n: lab.operator.installs(n) for n in lab.names}
    again = lab.pulumi("up", "--yes", "--expect-no-changes", "--policy-pack", policy_pack(),
                       "--policy-pack-config", "tests/stacks/policy-config.live.json")
    _assert_ok(again, "second up")
    assert "[kslab]" not in _out(again), "no lab step may run on a no-change up"
    assert {n: lab.operator.installs(n) for n in lab.names} == installs_before

    # destroy: joins first, nothing left, empty state
    events = lab.project.dir + "/destroy-events.json"
    gone = lab.destroy("--event-log", events, extra_env={"PULUMI_DEBUG_COMMANDS": "true"})
    _assert_ok(gone, "destroy")
    for name in lab.names:
        assert lab.lab_objects(name) == [], f"left on {name}: {lab.lab_objects(name)}"
    resources = lab.project.export(lab.stack)["deployment"].get("resources") or []
    assert [r["type"] for r in resources if r["type"] != "pulumi:pulumi:Stack"] == []
    order = []
    with open(events) as fh:
        for line in fh:
            ev = json.loads(line)
            out = ev.get("resOutputsEvent") or {}
            meta = out.get("metadata") or {}
            if meta.get("op") == "delete":
                order.append(meta["urn"].split("::")[-1])
    for join in lab.config.get("kslab:joins") or []:
        jname = f"{join['member']}-to-{join['host']}"
        unjoin = order.index(f"{jname}-ready")
        for side in (join["member"], join["host"]):
            assert unjoin < order.index(f"{side}-kubesphere-cc"), order
            assert unjoin < order.index(f"{side}-kubesphere-namespace"), order
    _assert_no_secret_leak(lab, secrets, _out(first), _out(again), _out(gone))


@pytest.mark.parametrize("live", ["live-host-member"], indirect=True)
def test_component_change_updates_only_that_cluster(live):
    lab = live
    _assert_ok(lab.up(), "up")
    host_rv = lab.cc("host")["metadata"]["resourceVersion"]
    clusters = lab.config["kslab:clusters"]
    clusters[1]["components"] = {"devops": True}
    lab.set_config("kslab:clusters", clusters)
    preview = lab.project.preview_json(lab.stack, "--policy-pack-config", "tests/stacks/policy-config.live.json")
    changed = {s["urn"].split("::")[-1] for s in preview[1]["steps"] if s["op"] not in ("same",)}
    assert changed and all(n.startswith("member-") for n in changed), changed
    result = lab.up()
    _assert_ok(result, "up after component change")
    member = lab.cc("member")
    assert member["spec"]["devops"]["enabled"] is True and member["status"]["devops"]["status"] == "enabled"
    assert lab.cc("host")["metadata"]["resourceVersion"] == host_rv
    assert lab.cc("host")["spec"]["devops"]["enabled"] is False
    _assert_ok(lab.destroy(), "destroy")


@pytest.mark.parametrize("live", ["live-host-member"], indirect=True)
def test_faults(live):
    lab = live
    # 1. member API server down before the join: the join fails naming the member, within its bound
    joins = lab.config["kslab:joins"]
    lab.set_config("kslab:joins", [])
    _assert_ok(lab.up(), "up without joins")
    lab.clusters["member"].stop_apiserver()
    lab.set_config("kslab:joins", joins)
    start = time.monotonic()
    failed = lab.up(timeout=300)
    elapsed = time.monotonic() - start
    assert failed.returncode != 0
    assert "member 'member'" in _out(failed) and "unreachable" in _out(failed), _out(failed)[-3000:]
    assert elapsed < 120, f"the failing join took {elapsed:.0f}s"
    assert lab.joined("host") == [], "the Cluster object must not be created before the checks pass"
    lab.clusters["member"].start_apiserver()
    _assert_ok(lab.up(), "up after the member came back")
    _check_lab(lab)

    # 2. jwtSecret mismatch: the join refuses before creating the Cluster object
    lab.set_config("kslab:joins", [])
    _assert_ok(lab.up(), "unjoin")
    assert lab.joined("host") == []
    cm = lab.core("member").read_namespaced_config_map("kubesphere-config", "kubesphere-system")
    doc = yaml.safe_load(cm.data["kubesphere.yaml"])
    doc["authentication"]["jwtSecret"] = "tampered-on-the-member-000000000"
    cm.data["kubesphere.yaml"] = yaml.safe_dump(doc)
    lab.core("member").replace_namespaced_config_map("kubesphere-config", "kubesphere-system", cm)
    lab.set_config("kslab:joins", joins)
    refused = lab.up()
    assert refused.returncode != 0 and "jwtSecret differs" in _out(refused), _out(refused)[-3000:]
    assert lab.joined("host") == []
    assert "tampered-on-the-member" not in _out(refused)
    _assert_ok(lab.destroy(), "destroy")


@pytest.mark.parametrize("live", ["live-standalone"], indirect=True)
def test_cluster_rebuilt_out_of_band(live):
    lab = live
    _assert_ok(lab.up(), "up")
    # The cluster loses everything behind the lab's back (a new, empty cluster at the same address).
    for plural, name in (("clusterconfigurations", "ks-installer"),):
        lab.custom("lab").delete_namespaced_custom_object("installer.kubesphere.io", "v1alpha1",
                                                         "kubesphere-system", plural, name)
    client = __import__("kubernetes").client
    client.AppsV1Api(lab.api("lab")).delete_namespaced_deployment("ks-installer", "kubesphere-system")
    refresh = lab.pulumi("refresh", "--yes", "--skip-preview", timeout=300)
    _assert_ok(refresh, "refresh")
    assert re.search(r"deleted", _out(refresh)), _out(refresh)[-2000:]
    _assert_ok(lab.up(), "up recreates")
    _check_lab(lab)
    _assert_ok(lab.destroy(), "destroy")


def _kubefed_cluster(lab, host, member):
    try:
        return lab.custom(host).get_namespaced_custom_object("core.kubefed.io", "v1beta1", "kube-federation-system",
                                                             "kubefedclusters", member)
    except __import__("kubernetes").client.rest.ApiException as exc:
        if exc.status == 404:
            return None
        raise


@pytest.mark.parametrize("live", ["live-host-member"], indirect=True)
def test_destroy_with_the_member_gone_needs_and_gets_the_forced_unjoin(live):
    """v3.4.1: with the member gone, the Cluster webhook denies the controller's finalizer removal
    (kubesphere#6154), so the plain destroy stops, bounded, with the way out; the forced one succeeds, and
    the webhook configuration is back afterwards."""
    lab = live
    lab.set_config("kslab:unjoinTimeoutSeconds", 5)
    _assert_ok(lab.up(), "up")
    assert _kubefed_cluster(lab, "host", "member") is not None
    admission = __import__("kubernetes").client.AdmissionregistrationV1Api(lab.api("host"))
    assert admission.read_validating_webhook_configuration("cluster.kubesphere.io")
    lab.clusters["member"].stop_apiserver()
    stuck = lab.destroy(timeout=300)
    assert stuck.returncode != 0
    assert "still has its finalizer" in _out(stuck) and "KSLAB_FORCE_UNJOIN=1" in _out(stuck) \
        and "6154" in _out(stuck), _out(stuck)[-3000:]
    assert [c["metadata"]["name"] for c in lab.joined("host")] == ["member"], "nothing removed behind the user's back"
    forced = lab.destroy(extra_env={"KSLAB_FORCE_UNJOIN": "1"}, timeout=300)
    _assert_ok(forced, "forced destroy")
    assert "restored ValidatingWebhookConfiguration cluster.kubesphere.io" in _out(forced)
    assert lab.joined("host") == [] and _kubefed_cluster(lab, "host", "member") is None
    assert admission.read_validating_webhook_configuration("cluster.kubesphere.io").webhooks[0].failure_policy == "Fail"
    assert lab.lab_objects("host") == []


@pytest.mark.parametrize("live", ["live-host-member"], indirect=True)
def test_a_rebuilt_member_is_joined_again(live):
    """The member is rebuilt behind the lab's back (new kube-system UID at v3.4.1): the host's Cluster
    still records the old one and the webhook denies every update of it (kubesphere#6072). refresh + up
    brings the lab back with the member joined anew."""
    lab = live
    _assert_ok(lab.up(), "up")
    old_uid = lab.joined("host")[0]["status"]["uid"]
    member = lab.clusters["member"]
    member.stop()
    member.start()  # fresh etcd and certificates: a new cluster at the same kubeconfig path
    lab.operator.replace_cluster("member", member.kubeconfig_path.read_text())
    new_uid = lab.core("member").read_namespace("kube-system").metadata.uid
    assert new_uid != old_uid
    _assert_ok(lab.pulumi("refresh", "--yes", "--skip-preview", timeout=300), "refresh")
    again = lab.up()
    _assert_ok(again, "up after the rebuild")
    assert "member 'member' was rebuilt" in _out(again)
    joined = lab.joined("host")
    assert [c["metadata"]["name"] for c in joined] == ["member"] and joined[0]["status"]["uid"] == new_uid
    _check_lab(lab)
    _assert_ok(lab.destroy(), "destroy")


# The last commit whose steps were Pulumi dynamic resources (`pulumi-python:dynamic:Resource`).
LEGACY_STEPS_COMMIT = "6471ddc590d17ecbf297467855cf0e8e38726d4f"
# The last commit before the code moved from components/ into the kslab package.
PRE_PACKAGE_COMMIT = "0bab99fea819b47e35484349bf5420c2c95086ca"
# The last commit with the component resources in kslab/program, before they moved to the top-level components/.
PROGRAM_PACKAGE_COMMIT = "9786598ec1a3af7fecc86f15d919d103185def25"
PROGRAM_ITEMS = ("Pulumi.yaml", "__main__.py", "kslab", "components", "provider", "policies")


def _items_at(commit: str) -> list[str]:
    listed = subprocess.run(["git", "-C", ROOT, "ls-tree", "--name-only", commit], capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.fail(f"this test needs the git history of the project (commit {commit[:12]}): "
                    f"{listed.stderr[-300:]}", pytrace=False)
    return [item for item in PROGRAM_ITEMS if item in listed.stdout.split()]


def _use_program(lab, commit: str | None, knows_image_check: bool = False) -> None:
    """Put the program of `commit` (None: this checkout) into the lab's project copy. A program older than the
    image check knows no `imageCheck` (the test stacks turn the image check off): its stack file is the test
    stack without it, as it was then; this checkout's gets it back."""
    clusters = [{k: v for k, v in c.items() if k != "imageCheck"} for c in lab.config["kslab:clusters"]]
    with_check = commit is None or knows_image_check
    lab.set_config("kslab:clusters", [{**c, "imageCheck": False} for c in clusters] if with_check else clusters)
    for item in PROGRAM_ITEMS:
        path = os.path.join(lab.project.dir, item)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
    if commit is None:
        copy_items(lab.project.dir, PROGRAM_ITEMS)
        return
    archive = subprocess.run(["git", "-C", ROOT, "archive", commit, *_items_at(commit)], capture_output=True)
    assert archive.returncode == 0, archive.stderr.decode()[-300:]
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(lab.project.dir)


def _step_ids(resources: list[dict]) -> dict[str, str]:
    return {r["urn"]: r["id"] for r in resources if r["type"].startswith("kslab:steps:")}


@pytest.mark.parametrize("live", ["live-host-member"], indirect=True)
@pytest.mark.parametrize("commit", [PRE_PACKAGE_COMMIT, PROGRAM_PACKAGE_COMMIT],
                         ids=["components-ops", "kslab-program"])
def test_a_stack_made_by_an_earlier_layout_upgrades_in_place(live, commit):
    """A stack made by the program of an earlier layout (components/ before the kslab package; kslab/program before
    the components moved to the top) runs a no-change `up` with today's: every resource keeps its type and name,
    and no step runs again."""
    lab = live
    _use_program(lab, commit, knows_image_check=True)
    _assert_ok(lab.up(), "up with the program before the move")
    before = lab.project.export(lab.stack)["deployment"]["resources"]
    assert _step_ids(before), "the earlier program registers its steps as kslab:steps:* resources"
    installs = {n: lab.operator.installs(n) for n in lab.names}

    _use_program(lab, None)
    assert not os.path.exists(os.path.join(lab.project.dir, "components", "ops")), "the program is today's"
    assert not os.path.exists(os.path.join(lab.project.dir, "kslab", "program")), "the program is today's"
    upgrade = lab.up("--expect-no-changes")
    _assert_ok(upgrade, "a no-change up with the kslab package")
    assert "[kslab]" not in _out(upgrade), "no step may run on the upgrade"
    after = lab.project.export(lab.stack)["deployment"]["resources"]
    assert {r["urn"]: r["type"] for r in after} == {r["urn"]: r["type"] for r in before}
    assert _step_ids(after) == _step_ids(before), "a step was re-created"
    assert {n: lab.operator.installs(n) for n in lab.names} == installs
    _assert_ok(lab.destroy(), "destroy after the upgrade")
    for name in lab.names:
        assert lab.lab_objects(name) == [], f"left on {name}: {lab.lab_objects(name)}"


@pytest.mark.parametrize("live", ["live-host-member"], indirect=True)
def test_a_stack_made_with_dynamic_steps_upgrades_in_place(live):
    """A stack created when every step was a dynamic resource: the next `up` moves each step to its own
    kslab:steps:* type and provider without running, replacing or deleting anything; then it is a normal lab."""
    lab = live
    _use_program(lab, LEGACY_STEPS_COMMIT)
    _assert_ok(lab.up(), "up with the legacy program")
    before = lab.project.export(lab.stack)["deployment"]["resources"]
    legacy = [r for r in before if r["type"] == "pulumi-python:dynamic:Resource"]
    assert legacy, "the legacy program registers its steps as dynamic resources"
    installs = {n: lab.operator.installs(n) for n in lab.names}
    joined = {o["metadata"]["name"]: o["metadata"]["uid"] for o in lab.joined("host")}

    _use_program(lab, None)
    events = lab.project.dir + "/upgrade-events.json"
    upgrade = lab.up("--event-log", events, extra_env={"PULUMI_DEBUG_COMMANDS": "true"})
    _assert_ok(upgrade, "up with typed steps")
    assert "[kslab]" not in _out(upgrade), "no step may run on the upgrade"
    ops = []
    with open(events) as fh:
        for line in fh:
            meta = (json.loads(line).get("resOutputsEvent") or {}).get("metadata") or {}
            if meta.get("op"):
                ops.append((meta["op"], meta["urn"].split("::")[-2], meta["urn"].split("::")[-1]))
    # Only providers come and go (the dynamic one, kslab's); every resource is kept or updated in place.
    assert [o for o in ops if o[0] not in ("same", "update") and not o[1].startswith("pulumi:providers:")] == [], ops
    after = lab.project.export(lab.stack)["deployment"]["resources"]
    types = {r["urn"].split("::")[-1]: r["type"] for r in after}
    assert {n for n, t in types.items() if t.startswith("kslab:steps:")} == {r["urn"].split("::")[-1] for r in legacy}
    assert {r["id"] for r in legacy} <= {a.get("id") for a in after}, "a step was re-created"
    assert not any("__provider" in (r.get("outputs") or {}) for r in after)
    assert {n: lab.operator.installs(n) for n in lab.names} == installs
    assert {o["metadata"]["name"]: o["metadata"]["uid"] for o in lab.joined("host")} == joined

    _assert_ok(lab.up("--expect-no-changes"), "up after the upgrade")
    _assert_ok(lab.destroy(), "destroy after the upgrade")
    for name in lab.names:
        assert lab.lab_objects(name) == [], f"left on {name}: {lab.lab_objects(name)}"


@pytest.mark.parametrize("live", ["live-host-member"], indirect=True)
def test_a_stack_made_with_dynamic_steps_refreshes_and_destroys_before_any_up(live):
    """Until a step has been through an `up` with today's program, the engine gives its refresh and delete to
    the dynamic provider, which unpickles components.steps.StepProvider: that must still work."""
    lab = live
    _use_program(lab, LEGACY_STEPS_COMMIT)
    _assert_ok(lab.up(), "up with the legacy program")
    _use_program(lab, None)
    _assert_ok(lab.pulumi("refresh", "--yes", "--skip-preview"), "refresh with today's program")
    gone = lab.destroy()
    _assert_ok(gone, "destroy with today's program")
    assert "unjoining member 'member' from host 'host'" in _out(gone), _out(gone)[-3000:]  # through StepProvider
    for name in lab.names:
        assert lab.lab_objects(name) == [], f"left on {name}: {lab.lab_objects(name)}"
    assert lab.joined("host") == []
