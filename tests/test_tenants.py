"""Tenants (kslab:users, kslab:workspaces, kslab:projects): the stack file's rules, checked before anything is
created, and the tenant steps' own rules (keep to what is the lab's; send a password only when the cluster does not
hold it), against a stand-in cluster. The live tier runs the demo stack end to end (tests/test_tenants_live.py)."""
from __future__ import annotations

import json

import bcrypt
import pytest

from kslab.model import contract, lab_rules, requests, tenants
from kslab.model.spec import LabConfigError, parse_lab
from kslab.model.stack_config import load_lab_values, read_stack_file
from kslab.render import tenants as render
from kslab.steps import common, tenant_steps
from tests.support.mock_run import ROOT
from tests.support.stack_config import FakeConfig

HOST_MEMBERS = {
    "clusters": [{"name": "host", "role": "host"}, {"name": "m1", "role": "member", "consoleHostPort": 30881},
                 {"name": "m2", "role": "member", "consoleHostPort": 30882}],
    "joins": [{"member": "m1", "host": "host"}, {"member": "m2", "host": "host"}],
}
TWO_HOSTS = {
    "clusters": [{"name": "host", "role": "host"}, {"name": "host2", "role": "host", "consoleHostPort": 30881},
                 {"name": "member", "role": "member", "consoleHostPort": 30882}],
    "joins": [{"member": "member", "host": "host"}, {"member": "member", "host": "host2"}],
    "allowMultipleHosts": True,
}


def _problems(raw: dict) -> list:
    with pytest.raises(LabConfigError) as info:
        parse_lab(raw)
    assert all(p.fix for p in info.value.problems)
    return info.value.problems


def _one(raw: dict, field: str):
    found = [p for p in _problems(raw) if p.field == field]
    assert len(found) == 1, _problems(raw)
    return found[0]


def _with(base: dict, **tenants_raw) -> dict:
    return {**json.loads(json.dumps(base)), **tenants_raw}


# --- the stack file ---------------------------------------------------------------------------------------------

def test_the_demo_stack_declares_three_users_two_workspaces_and_a_project_per_cluster():
    raw, keys = read_stack_file(ROOT, "demo")
    lab = parse_lab(raw, keys)
    assert {u.name: u.global_role for u in lab.users} == {"pat": "platform-admin", "wendy": "platform-regular",
                                                          "dev": "platform-regular"}
    assert {w.name: w.clusters for w in lab.workspaces} == {"shop": ("host", "member1", "member2"),
                                                            "lab-only": ("member2",)}
    assert {p.cluster for p in lab.projects} == {"host", "member1", "member2"}


def test_a_user_defaults_to_every_host_a_regular_role_and_a_lab_email():
    lab = parse_lab(_with(HOST_MEMBERS, users=[{"name": "ann"}]))
    assert lab.users[0].hosts == ("host",) and lab.users[0].global_role == "platform-regular"
    assert lab.users[0].email == "ann@kslab.local" and lab.users[0].password_secret is None


def test_a_global_role_typo_gets_did_you_mean():
    p = _one(_with(HOST_MEMBERS, users=[{"name": "ann", "globalRole": "platfrom-admin"}]), "kslab:users[0].globalRole")
    assert "did you mean 'platform-admin'" in p.fix


def test_a_role_of_another_release_is_refused_with_the_hosts_roles():
    raw = _with(HOST_MEMBERS, kubesphereVersion="v3.2.1", nodeImage="kindest/node:v1.19.16", users=[{"name": "ann",
                                                                 "globalRole": "platform-self-provisioner"}])
    p = _one(raw, "kslab:users[0].globalRole")
    assert "v3.2.1" in p.message and "workspaces-manager" in p.fix


def test_a_workspace_role_typo_gets_did_you_mean():
    raw = _with(HOST_MEMBERS, users=[{"name": "ann"}, {"name": "bob"}],
                workspaces=[{"name": "ws", "manager": "ann", "members": [{"user": "bob", "role": "viewr"}]}])
    assert "did you mean 'viewer'" in _one(raw, "kslab:workspaces[0].members[0].role").fix


def test_a_password_in_the_stack_file_is_refused_and_never_shown():
    p = _one(_with(HOST_MEMBERS, users=[{"name": "ann", "password": "Secret-123"}]), "kslab:users[0].password")
    assert "Secret-123" not in str(p) and "passwordSecret" in p.fix


def test_every_cross_reference_is_checked_at_once():
    raw = _with(HOST_MEMBERS, users=[{"name": "ann", "hosts": ["m1"]}, {"name": "bob"}],
                workspaces=[{"name": "ws", "manager": "carl", "clusters": ["host", "nowhere"]}],
                projects=[{"name": "p", "workspace": "wss"}, {"name": "kube-system", "workspace": "ws"}])
    fields = {p.field for p in _problems(raw)}
    assert {"kslab:users[0].hosts", "kslab:workspaces[0].manager", "kslab:workspaces[0].clusters",
            "kslab:projects[0].workspace", "kslab:projects[1].name"} <= fields


def test_a_workspace_on_a_member_not_joined_to_its_host_is_refused_by_the_placement_rule():
    raw = _with({**HOST_MEMBERS, "joins": HOST_MEMBERS["joins"][:1]}, users=[{"name": "ann"}],
                workspaces=[{"name": "ws", "manager": "ann", "clusters": ["host", "m2"]}])
    p = _one(raw, "kslab:workspaces[0].clusters")
    assert p.value == "m2" and p.policy == contract.PolicyName.WORKSPACE_UNJOINED_CLUSTER


def test_a_project_outside_its_workspaces_placement_is_refused():
    raw = _with(HOST_MEMBERS, users=[{"name": "ann"}], workspaces=[{"name": "ws", "manager": "ann"}],
                projects=[{"name": "p", "workspace": "ws", "cluster": "m1"}])
    p = _one(raw, "kslab:projects[0].cluster")
    assert "host" in p.message and "place the workspace there" in p.fix


def test_a_user_on_both_hosts_of_a_shared_member_is_the_notes_flapping_trap():
    without = {**TWO_HOSTS, "allowMultipleHosts": False, "users": [{"name": "ann"}]}
    found = [p for p in _problems(without) if p.field == "kslab:users[0].hosts"]
    assert len(found) == 1 and "kubesphere#6466" in found[0].message
    assert found[0].policy == contract.PolicyName.USER_ON_SHARED_MEMBER


def test_the_flapping_user_is_a_warning_with_the_opt_in():
    lab = parse_lab({**TWO_HOSTS, "users": [{"name": "ann"}]})
    assert any("user 'ann'" in w and "kubesphere#6466" in w for w in lab.warnings)


def test_a_workspace_needs_its_host_named_when_the_lab_has_two():
    raw = {**TWO_HOSTS, "users": [{"name": "ann", "hosts": ["host"]}],
           "workspaces": [{"name": "ws", "manager": "ann"}]}
    assert "host, host2" in _one(raw, "kslab:workspaces[0].host").fix


def test_two_users_may_not_share_an_email():
    raw = _with(HOST_MEMBERS, users=[{"name": "a", "email": "x@y.io"}, {"name": "b", "email": "x@y.io"}])
    assert "webhook" in _one(raw, "kslab:users[1].email").message


# --- passwords, read from secret config keys ---------------------------------------------------------------------

def _load(settings: dict, secret_keys=("annPassword",)):
    passwords: dict[str, str] = {}
    lab, _, _ = load_lab_values(FakeConfig(settings), ROOT, None, credentials_are_secret=True,
                                is_secret=lambda key: key in secret_keys, passwords=passwords)
    return lab, passwords


def _password_problem(settings: dict, secret_keys=("annPassword",)):
    with pytest.raises(LabConfigError) as info:
        _load(settings, secret_keys)
    assert all("Weak-1" not in str(p) and "short" not in str(p) for p in info.value.problems)
    return info.value.problems


ANN = {**HOST_MEMBERS, "users": [{"name": "ann", "passwordSecret": "annPassword", "globalRole": "platform-admin"}]}


def test_a_password_from_a_secret_key_is_read_in_memory():
    lab, passwords = _load({**ANN, "annPassword": "Strong-Demo-42"})
    assert passwords == {"ann": "Strong-Demo-42"}


def test_a_password_key_that_is_not_set_or_not_secret_is_refused():
    assert "not set" in _password_problem(ANN)[0].message
    assert "plain text" in _password_problem({**ANN, "annPassword": "Strong-Demo-42"}, secret_keys=())[0].message


def test_a_password_the_release_refuses_is_refused_without_showing_it():
    problems = _password_problem({**ANN, "annPassword": "short"})
    assert "8 to 64 characters" in problems[0].message and "an upper-case letter" in problems[0].message


def test_v3_2_1_takes_six_characters_as_its_console_does():
    raw = {**ANN, "kubesphereVersion": "v3.2.1", "nodeImage": "kindest/node:v1.19.16", "annPassword": "Abc123"}
    assert _load(raw)[1] == {"ann": "Abc123"}


def test_a_platform_admin_with_the_default_password_is_refused_by_the_weak_password_rule():
    problems = _password_problem({**ANN, "annPassword": tenants.DEFAULT_ADMIN_PASSWORD})
    assert [p.policy for p in problems] == [contract.PolicyName.WEAK_ADMIN_PASSWORD]


def test_the_weak_password_rule_is_only_for_platform_admins():
    assert lab_rules.weak_admin_password("a", "platform-regular", True) is None
    assert lab_rules.weak_admin_password("a", "platform-admin", False) is None


def test_a_generated_password_passes_every_release_and_is_not_weak():
    for _ in range(50):
        password = tenant_steps.generated_password()
        assert not tenants.password_problems(password, "v3.4.1") and not tenants.is_weak(password)


# --- the tenant steps against a stand-in cluster ----------------------------------------------------------------

class FakeCluster:
    """Objects by (apiVersion, plural, name); apply merges what kslab sends, as server-side apply keeps others'."""

    def __init__(self, objects: list[dict] | None = None):
        self.objects = {(o["apiVersion"], tenant_steps.PLURALS[o["kind"]], o["metadata"]["name"]): o
                        for o in objects or []}
        self.applied: list[dict] = []
        self.deleted: list[str] = []

    def get_object(self, api_version, plural, name):
        return self.objects.get((api_version, plural, name))

    def apply_object(self, body, plural, manager):
        assert manager == contract.FIELD_MANAGER
        self.applied.append(json.loads(json.dumps(body)))
        key = (body["apiVersion"], plural, body["metadata"]["name"])
        live = self.objects.setdefault(key, {"metadata": {}, "status": {"state": "Active"}})
        live.update({k: v for k, v in body.items() if k not in ("metadata", "spec")})
        live["metadata"].update(body["metadata"])
        live.setdefault("spec", {}).update(body.get("spec", {}))
        return live

    def delete_object(self, api_version, plural, name):
        self.deleted.append(name)
        return self.objects.pop((api_version, plural, name), None) is not None


LAB_ID = "demo-0123456789"
USER = render.user_objects(parse_lab(_with(HOST_MEMBERS, users=[{"name": "ann"}])).users[0], LAB_ID)


def _run(monkeypatch, cluster: FakeCluster, step, objects=USER, password: str | None = "Ann-Demo-1234",
         in_state=False):
    request = requests.TenantObjects("host", "v3.4.1", "kubeconfig", objects, 1, LAB_ID, password=password)
    for key, value in request.to_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(contract.ENV_POLL_SECONDS, "0.01")
    if in_state:
        monkeypatch.setenv(contract.ENV_IN_STATE, "1")
    else:
        monkeypatch.delenv(contract.ENV_IN_STATE, raising=False)
    monkeypatch.setattr(common, "kube", lambda var, label: cluster)
    step()


def test_an_object_the_lab_did_not_make_is_refused_before_anything_is_written(monkeypatch, capsys):
    mine = {**USER[0], "metadata": {"name": "ann", "labels": {}}}
    cluster = FakeCluster([mine])
    with pytest.raises(SystemExit):
        _run(monkeypatch, cluster, tenant_steps.step_tenant_apply)
    assert cluster.applied == []
    assert "User 'ann' already exist" in capsys.readouterr().err


def test_a_password_reaches_the_cluster_only_as_its_hash_and_the_same_hash_while_it_holds(monkeypatch):
    cluster = FakeCluster()
    _run(monkeypatch, cluster, tenant_steps.step_tenant_apply)
    sent = cluster.applied[0]["spec"]["password"]
    assert sent.startswith("$2a$10$") and bcrypt.checkpw(b"Ann-Demo-1234", sent.encode())
    assert "Ann-Demo-1234" not in json.dumps(cluster.applied)
    cluster.applied.clear()
    _run(monkeypatch, cluster, tenant_steps.step_tenant_apply, in_state=True)
    assert cluster.applied[0]["spec"]["password"] == sent, "kslab owns the hash: every apply sends it again"
    _run(monkeypatch, cluster, tenant_steps.step_tenant_apply, password="Ann-Changed-99", in_state=True)
    changed = cluster.applied[-2]["spec"]["password"]
    assert changed != sent and bcrypt.checkpw(b"Ann-Changed-99", changed.encode())


def test_an_unlabelled_object_is_refused_even_on_a_rerun(monkeypatch, capsys):
    """A member added to a workspace whose binding someone made in the console, under the very name kslab uses."""
    cluster = FakeCluster([{**USER[1], "metadata": {"name": USER[1]["metadata"]["name"]}}])
    with pytest.raises(SystemExit):
        _run(monkeypatch, cluster, tenant_steps.step_tenant_apply, in_state=True)
    assert cluster.applied == [] and "are not this lab's" in capsys.readouterr().err


def test_a_rerun_deletes_what_the_stack_no_longer_declares(monkeypatch):
    """A user's global role changed from platform-admin: the old binding must not keep it an admin."""
    old = {**USER[1], "metadata": {**USER[1]["metadata"], "name": "ann-platform-admin"}}
    cluster = FakeCluster([{**USER[0], "status": {"state": "Active"}}, old])
    monkeypatch.setenv(contract.ENV_STATE_OBJECTS, json.dumps(["User 'ann'", "GlobalRoleBinding 'ann-platform-admin'"]))
    _run(monkeypatch, cluster, tenant_steps.step_tenant_apply, in_state=True)
    assert cluster.deleted == ["ann-platform-admin"]
    assert cluster.get_object("iam.kubesphere.io/v1alpha2", "globalrolebindings", "ann-platform-regular")


def test_delete_waits_for_kubefed_to_remove_the_members_copies(monkeypatch, capsys):
    federated = {"apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedUser", "metadata": {"name": "ann"}}
    cluster = FakeCluster([USER[0], USER[1]])
    cluster.objects[("types.kubefed.io/v1beta1", "federatedusers", "ann")] = federated
    with pytest.raises(SystemExit):
        _run(monkeypatch, cluster, tenant_steps.step_tenant_delete)
    assert "FederatedUser 'ann' (KubeFed removing its copies" in capsys.readouterr().err


def test_delete_leaves_an_object_of_the_name_that_is_not_the_labs(monkeypatch):
    theirs = {**USER[1], "metadata": {**USER[1]["metadata"], "labels": {"other": "x"}}}
    cluster = FakeCluster([USER[0], theirs])
    _run(monkeypatch, cluster, tenant_steps.step_tenant_delete)
    assert cluster.deleted == ["ann"]
    assert cluster.get_object("iam.kubesphere.io/v1alpha2", "globalrolebindings", "ann-platform-regular")


def test_a_refresh_finds_an_object_gone_or_taken_by_another(monkeypatch):
    cluster = FakeCluster([USER[0]])
    with pytest.raises(SystemExit) as info:
        _run(monkeypatch, cluster, tenant_steps.step_tenant_read)
    assert info.value.code == contract.GONE_EXIT  # its binding is not there


def test_a_refresh_of_what_is_there_prints_what_the_apply_printed(monkeypatch, capsys):
    cluster = FakeCluster()
    _run(monkeypatch, cluster, tenant_steps.step_tenant_apply)
    applied = capsys.readouterr().out
    cluster.objects[("iam.kubesphere.io/v1alpha2", "users", "ann")]["metadata"]["finalizers"] = ["theirs"]
    _run(monkeypatch, cluster, tenant_steps.step_tenant_read)
    assert capsys.readouterr().out == applied


def test_kubesphere_s_own_user_and_workspace_are_refused_by_name():
    raw = _with(HOST_MEMBERS, users=[{"name": "admin"}, {"name": "ann"}],
                workspaces=[{"name": "system-workspace", "manager": "ann"}])
    fields = {p.field for p in _problems(raw)}
    assert {"kslab:users[0].name", "kslab:workspaces[0].name"} <= fields


def test_two_tenants_whose_bindings_would_share_a_name_are_refused():
    raw = _with(HOST_MEMBERS, users=[{"name": "a"}, {"name": "a-b"}, {"name": "m"}],
                workspaces=[{"name": "b-c", "manager": "m", "members": [{"user": "a", "role": "regular"}]},
                            {"name": "c", "manager": "m", "members": [{"user": "a-b", "role": "regular"}]}])
    found = [p for p in _problems(raw) if p.value == "a-b-c-regular"]
    assert len(found) == 1 and "member 'a' of 'b-c'" in found[0].message


def test_a_password_key_that_holds_something_else_is_refused():
    problems = _password_problem({**ANN, "users": [{**ANN["users"][0], "passwordSecret": "jwtSecret"}]},
                                 secret_keys=("jwtSecret",))
    assert "holds something else" in problems[0].message


def test_the_name_of_a_password_key_is_never_shown_it_may_be_a_pasted_password():
    pasted = {**ANN, "users": [{**ANN["users"][0], "passwordSecret": "Hunter2Hunter2"}]}
    problems = _password_problem(pasted)
    assert all("Hunter2Hunter2" not in str(p) for p in problems)


def test_a_password_with_a_newline_is_refused():
    problems = _password_problem({**ANN, "annPassword": "Ab1-xyzQQ\nmore"})
    assert "no spaces or control characters" in problems[0].message
