"""The apply-time waits: bounded, with progress lines, only what can heal is retried, and the unjoin's
documented way out (per release: v3.4.1's Cluster webhook must be out of the way to drop the finalizer)."""
import json

import pytest

from kslab.steps import common, install_steps, join_steps
from kslab.steps.errors import ApiFailure, Transient


class FakeWebhook:
    class metadata:  # noqa: N801 - the shape of a V1ValidatingWebhookConfiguration
        name = "cluster.kubesphere.io"


class FakeHost:
    """A host whose controller clears the finalizer (or cannot), and whose v3.4 webhook denies removing it
    by hand while it is installed (kubesphere#6154)."""

    def __init__(self, finalizer_clears=False, webhook=True):
        self.obj = {"metadata": {"name": "member", "finalizers": ["finalizer.cluster.kubesphere.io"]}}
        self.deleted = self.stripped = False
        self.finalizer_clears = finalizer_clears
        self.webhooks = [FakeWebhook()] if webhook else []
        self.events = []
        self.kubefed = ["KubeFedCluster kube-federation-system/member", "Secret kube-federation-system/member-secret"]

    def member_cluster(self, name):
        if self.stripped or (self.deleted and self.finalizer_clears):
            return None
        return self.obj

    def delete_member_cluster(self, name):
        self.deleted = True
        self.events.append("delete")

    def cluster_webhook_configurations(self):
        return list(self.webhooks)

    def delete_webhook_configuration(self, name):
        self.events.append(f"delete-webhook {name}")
        self.webhooks = []

    def restore_webhook_configuration(self, saved):
        self.events.append(f"restore-webhook {saved.metadata.name}")
        self.webhooks = [saved]

    # what the unjoin keeps on the host while the webhook is out of the way (a ConfigMap there)
    saved_on_host: list = []

    def save_webhook_configurations(self, items):
        self.events.append("save-webhooks")
        self.saved_on_host = list(items)

    def forget_saved_webhook_configurations(self):
        self.events.append("forget-saved")
        self.saved_on_host = []

    def restore_saved_webhook_configurations(self):
        restored, self.saved_on_host = self.saved_on_host, []
        for item in restored:
            self.events.append(f"restore-saved {item.metadata.name}")
            self.webhooks = [item]
        return [item.metadata.name for item in restored]

    def strip_member_cluster_finalizers(self, name):
        if self.webhooks:
            raise ApiFailure("admission webhook \"validating-cluster.kubesphere.io\" denied the request")
        self.stripped = True
        self.events.append("strip")

    def remove_kubefed_cluster(self, name):
        left, self.kubefed = self.kubefed, []
        return left


@pytest.fixture
def env(monkeypatch):
    for k, v in {"KSLAB_MEMBER": "member", "KSLAB_HOST": "host", "KSLAB_UNJOIN_TIMEOUT": "0.3",
                 "KSLAB_POLL_SECONDS": "0.05", "KSLAB_PROGRESS_SECONDS": "0.1", "KSLAB_TIMEOUT": "0.3",
                 "KSLAB_KS_VERSION": "v3.4.1",
                 # the rest of each step's request as the program writes it (kslab/model/requests.py)
                 "KSLAB_HOST_KUBECONFIG": "unused", "KSLAB_MEMBER_KUBECONFIG": "unused",
                 "KSLAB_JOIN_KUBECONFIG": "unused", "KSLAB_ALLOW_LOOPBACK": "false", "KSLAB_ROLE": "none",
                 "KSLAB_KUBECONFIG": "unused", "KSLAB_WAIT_KEYS": "", "KSLAB_BASELINE": "{}"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("KSLAB_FORCE_UNJOIN", raising=False)
    return monkeypatch


def test_wait_for_times_out_with_progress(capsys):
    value, elapsed, summary = common.wait_for(lambda: (False, "core=pending", None), 0.3, 0.05, 0.1, "lab")
    assert value is None and 0.3 <= elapsed < 2 and summary == "core=pending"
    assert "lab: still waiting" in capsys.readouterr().err


def test_wait_for_waits_through_what_can_heal():
    calls = iter([Transient("API server unreachable"), (True, "ok", 42)])

    def probe():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item
    assert common.wait_for(probe, 5, 0.01, 10, "x")[0] == 42


def test_wait_for_fails_at_once_on_what_cannot_heal():
    calls = []

    def probe():
        calls.append(1)
        raise ApiFailure("API server answered 403 Forbidden")
    with pytest.raises(ApiFailure):
        common.wait_for(probe, 5, 0.01, 10, "x")
    assert len(calls) == 1


def test_unjoin_waits_for_the_finalizer(env, capsys):
    host = FakeHost(finalizer_clears=True)
    env.setattr(common, "kube", lambda var, label: host)
    join_steps.step_unjoin()
    assert host.deleted and not host.stripped and "unjoined" in capsys.readouterr().err
    assert host.webhooks, "a normal unjoin never touches the webhook"


def test_unjoin_stuck_fails_with_the_way_out(env, capsys):
    host = FakeHost()
    env.setattr(common, "kube", lambda var, label: host)
    with pytest.raises(SystemExit):
        join_steps.step_unjoin()
    err = capsys.readouterr().err
    assert "still has its finalizer after 0s" in err and "KSLAB_FORCE_UNJOIN=1" in err and "6154" in err
    assert not host.stripped and host.webhooks


def test_forced_unjoin_on_v3_4_moves_the_webhook_aside_and_restores_it(env, capsys):
    host = FakeHost()
    env.setattr(common, "kube", lambda var, label: host)
    env.setenv("KSLAB_FORCE_UNJOIN", "1")
    join_steps.step_unjoin()
    assert host.stripped and host.webhooks, "the finalizer is gone and the webhook is back"
    assert host.events == ["delete", "save-webhooks", "delete-webhook cluster.kubesphere.io", "strip",
                           "restore-webhook cluster.kubesphere.io", "forget-saved"]
    err = capsys.readouterr().err
    assert "KSLAB_FORCE_UNJOIN set" in err and "restored ValidatingWebhookConfiguration" in err
    assert "KubeFedCluster kube-federation-system/member" in err and not host.kubefed


def test_forced_unjoin_restores_the_webhook_even_when_the_strip_fails(env):
    host = FakeHost()

    def refuse(name):
        raise ApiFailure("API server answered 422")
    host.strip_member_cluster_finalizers = refuse
    env.setattr(common, "kube", lambda var, label: host)
    env.setenv("KSLAB_FORCE_UNJOIN", "1")
    with pytest.raises(SystemExit):
        common.fatal_api_errors(join_steps.step_unjoin)()
    assert host.webhooks and host.events[-2:] == ["restore-webhook cluster.kubesphere.io", "forget-saved"]


def test_a_run_killed_with_the_webhook_out_of_the_way_is_restored_by_the_next(env, capsys):
    """#20, defect 6: killed between deleting the webhook and restoring it, a run leaves the webhook deleted;
    what it saved on the host first is put back by the next unjoin, before anything else."""
    host = FakeHost()

    class Killed(BaseException):
        pass

    def killed_here(saved):
        raise Killed()  # the process dies here: no finally of ours runs after a SIGKILL
    host.restore_webhook_configuration = killed_here
    env.setattr(common, "kube", lambda var, label: host)
    env.setenv("KSLAB_FORCE_UNJOIN", "1")
    with pytest.raises(Killed):
        join_steps.step_unjoin()
    assert not host.webhooks and host.saved_on_host, "deleted, and kept on the host"
    env.delenv("KSLAB_FORCE_UNJOIN")
    host.events.clear()
    join_steps.step_unjoin()  # the next destroy: the webhook is back first (here the Cluster had already gone)
    assert host.events[0] == "restore-saved cluster.kubesphere.io" and host.webhooks
    assert "which an interrupted run had taken out of the way" in capsys.readouterr().err


def test_forced_unjoin_on_v3_2_has_no_webhook_to_move(env):
    host = FakeHost(webhook=False)
    env.setattr(common, "kube", lambda var, label: host)
    env.setenv("KSLAB_FORCE_UNJOIN", "1")
    env.setenv("KSLAB_KS_VERSION", "v3.2.1")
    join_steps.step_unjoin()
    assert host.events == ["delete", "strip"]


def test_wait_join_timeout_names_the_member(env, capsys):
    host = FakeHost()
    host.obj["status"] = {"conditions": [{"type": "Ready", "status": "False", "message": "member down"}]}
    env.setattr(common, "kube", lambda var, label: host)
    with pytest.raises(SystemExit):
        join_steps.step_wait_join()
    err = capsys.readouterr().err
    assert "member 'member' did not become Ready on host 'host'" in err and "member down" in err


class FakeCluster:
    def __init__(self, answers):
        self.answers = iter(answers)

    def kubesphere_jwt_secret(self):
        item = next(self.answers)
        if isinstance(item, Exception):
            raise item
        return item


def test_read_jwt_retries_until_the_installer_wrote_it(env, capsys):
    env.setenv("KSLAB_CLUSTER", "host")
    env.setenv("KSLAB_JWT_READ_SECONDS", "5")
    cluster = FakeCluster([None, Transient("unreachable"), "s3cr3t-value"])
    env.setattr(common, "kube", lambda var, label: cluster)
    install_steps.step_read_jwt()
    out = capsys.readouterr()
    assert out.out.strip() == "s3cr3t-value" and "s3cr3t" not in out.err


def test_read_jwt_gives_up_within_its_bound(env, capsys):
    env.setenv("KSLAB_CLUSTER", "host")
    env.setenv("KSLAB_JWT_READ_SECONDS", "0.2")
    cluster = FakeCluster([None] * 100)
    env.setattr(common, "kube", lambda var, label: cluster)
    with pytest.raises(SystemExit):
        install_steps.step_read_jwt()
    assert "no authentication.jwtSecret in kubesphere-config yet" in capsys.readouterr().err


class FakeInstalled:
    def __init__(self, status, kubesphere_yaml="authentication: {jwtSecret: abc}\n"):
        self.cc = {"spec": {"authentication": {"jwtSecret": "abc"}, "multicluster": {"clusterRole": "none"}},
                   "status": status}
        self.yaml = kubesphere_yaml

    def cluster_configuration(self):
        return self.cc

    def kubesphere_yaml(self):
        return self.yaml


def test_install_wait_fails_at_once_on_a_failed_component(env, capsys):
    env.setenv("KSLAB_CLUSTER", "lab")
    env.setenv("KSLAB_ROLE", "none")
    env.setenv("KSLAB_KS_VERSION", "v3.2.1")
    env.setenv("KSLAB_WAIT_KEYS", "servicemesh")
    env.setenv("KSLAB_TIMEOUT", "30")
    cluster = FakeInstalled({"core": {"status": "enabled", "enabledTime": "t1"}, "servicemesh": {"status": "failed"}})
    env.setattr(common, "kube", lambda var, label: cluster)
    with pytest.raises(SystemExit):
        install_steps.step_wait_install()
    assert "marked servicemesh failed" in capsys.readouterr().err


def test_install_wait_ignores_a_run_older_than_the_change(env, capsys):
    env.setenv("KSLAB_CLUSTER", "lab")
    env.setenv("KSLAB_ROLE", "none")
    env.setenv("KSLAB_KS_VERSION", "v3.2.1")
    env.setenv("KSLAB_BASELINE", json.dumps({"enabledTime": "t1"}))
    cluster = FakeInstalled({"core": {"status": "enabled", "enabledTime": "t1", "version": "v3.2.1"}})
    env.setattr(common, "kube", lambda var, label: cluster)
    with pytest.raises(SystemExit):
        install_steps.step_wait_install()
    assert "run=not started" in capsys.readouterr().err
    cluster.cc["status"]["core"]["enabledTime"] = "t2"
    install_steps.step_wait_install()
    assert json.loads(capsys.readouterr().out)["state"] == "enabled"


def test_a_bug_in_a_step_is_said_as_such_without_a_traceback(monkeypatch, capsys):

    def broken():
        return {}["missing"]
    monkeypatch.delenv("KSLAB_DEBUG", raising=False)
    with pytest.raises(SystemExit):
        common.fatal_api_errors(broken)()
    err = capsys.readouterr().err
    assert "[kslab] ERROR: step broken failed unexpectedly (KeyError: 'missing')" in err and "kslab bug" in err
    assert "Traceback" not in err


def test_saved_webhooks_are_put_back_only_when_their_run_is_gone_and_only_the_cluster_webhook():
    """#20, defect 6: another member's unjoin never puts the webhook back while a live run keeps it away, and the
    saved ConfigMap cannot make kslab create any other ValidatingWebhookConfiguration."""
    import os
    import socket

    from kslab.steps import kube
    from kslab.steps.procfs import process_identity
    me = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start": process_identity(os.getpid())[1]})
    assert kube._owner_runs(me)
    assert not kube._owner_runs(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "start": 1}))
    assert not kube._owner_runs(json.dumps({"host": "another-machine", "pid": os.getpid()}))
    assert not kube._owner_runs("not json")
    cluster_rule = {"apiGroups": ["cluster.kubesphere.io"], "resources": ["clusters"], "operations": ["UPDATE"]}
    assert kube._guards_clusters({"webhooks": [{"rules": [cluster_rule]}]})
    assert not kube._guards_clusters({"webhooks": [{"rules": [{"apiGroups": [""], "resources": ["pods"]}]}]})
