"""The apply-time waits: bounded, with progress lines, and the unjoin's documented way out."""
import importlib

import pytest

ops = importlib.import_module("components.ops.__main__")


class FakeHost:
    def __init__(self, finalizer_clears=False):
        self.obj = {"metadata": {"name": "member", "finalizers": ["finalizer.cluster.kubesphere.io"]}}
        self.deleted = self.stripped = False
        self.finalizer_clears = finalizer_clears

    def member_cluster(self, name):
        if self.stripped or (self.deleted and self.finalizer_clears):
            return None
        return self.obj

    def delete_member_cluster(self, name):
        self.deleted = True

    def strip_member_cluster_finalizers(self, name):
        self.stripped = True


@pytest.fixture
def env(monkeypatch):
    for k, v in {"KSLAB_MEMBER": "member", "KSLAB_HOST": "host", "KSLAB_UNJOIN_TIMEOUT": "0.3",
                 "KSLAB_POLL_SECONDS": "0.05", "KSLAB_PROGRESS_SECONDS": "0.1", "KSLAB_TIMEOUT": "0.3"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("KSLAB_FORCE_UNJOIN", raising=False)
    return monkeypatch


def test_wait_for_times_out_with_progress(capsys):
    value, elapsed, summary = ops._wait_for(lambda: (False, "core=pending", None), 0.3, 0.05, 0.1, "lab")
    assert value is None and 0.3 <= elapsed < 2 and summary == "core=pending"
    assert "lab: still waiting" in capsys.readouterr().err


def test_wait_for_survives_api_errors():
    calls = iter([RuntimeError("connection refused"), (True, "ok", 42)])

    def probe():
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item
    assert ops._wait_for(probe, 5, 0.01, 10, "x")[0] == 42


def test_unjoin_waits_for_the_finalizer(env, capsys):
    host = FakeHost(finalizer_clears=True)
    env.setattr(ops, "_kube", lambda var, label: host)
    ops.step_unjoin()
    assert host.deleted and not host.stripped and "unjoined" in capsys.readouterr().err


def test_unjoin_stuck_fails_with_the_way_out(env, capsys):
    host = FakeHost()
    env.setattr(ops, "_kube", lambda var, label: host)
    with pytest.raises(SystemExit):
        ops.step_unjoin()
    err = capsys.readouterr().err
    assert "still has its finalizer after 0s" in err and "KSLAB_FORCE_UNJOIN=1" in err and not host.stripped


def test_unjoin_forced_strips_the_finalizer(env, capsys):
    host = FakeHost()
    env.setattr(ops, "_kube", lambda var, label: host)
    env.setenv("KSLAB_FORCE_UNJOIN", "1")
    ops.step_unjoin()
    assert host.stripped and "KSLAB_FORCE_UNJOIN set" in capsys.readouterr().err


def test_wait_join_timeout_names_the_member(env, capsys):
    host = FakeHost()
    host.obj["status"] = {"conditions": [{"type": "Ready", "status": "False", "message": "member down"}]}
    env.setattr(ops, "_kube", lambda var, label: host)
    with pytest.raises(SystemExit):
        ops.step_wait_join()
    err = capsys.readouterr().err
    assert "member 'member' did not become Ready on host 'host'" in err and "member down" in err
