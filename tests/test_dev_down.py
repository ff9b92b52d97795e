"""dev-down gives a component back, and counts a cluster as having nothing to give back only when it is really
gone (issue #20, defect 1): a transient error (503, 429, a timeout, TLS) fails the step, so the workspace is kept
and the next up or destroy tries again."""
import subprocess

import pytest

from kslab.steps import common, dev_steps
from kslab.steps.errors import Transient

KIND_KUBECONFIG = "apiVersion: v1\nkind: Config\ncurrent-context: kind-lab\n"
EXISTING_KUBECONFIG = "apiVersion: v1\nkind: Config\ncurrent-context: prod\n"


@pytest.fixture
def step(monkeypatch, tmp_path):
    """dev-down of ks-controller-manager on cluster 'lab', whose API answers 503 whatever is asked."""
    def unavailable(kube, c, ns):
        raise Transient("cluster 'lab': API server answered 503 Service Unavailable")
    monkeypatch.setattr(common, "kube", lambda var, label: object())
    monkeypatch.setattr(dev_steps, "_give_back", unavailable)
    monkeypatch.setenv("KSLAB_CLUSTER", "lab")
    monkeypatch.setenv("KSLAB_DEV_COMPONENT", "ks-controller-manager")
    monkeypatch.setenv("KSLAB_DEV_DIR", str(tmp_path / "ws"))
    # the rest of the request as the program writes it (kslab/model/requests.py)
    for name, value in (("KSLAB_KS_VERSION", "v3.4.1"), ("KSLAB_DEV_KEEP_FILES", "false"),
                        ("KSLAB_DEV_CLUSTER_ADDRESS", "172.18.0.10")):
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("KSLAB_DEV_GONE", raising=False)

    def run(kubeconfig, kind_lists=("lab",)):
        monkeypatch.setenv("KSLAB_KUBECONFIG", kubeconfig)
        listed = "\n".join(kind_lists)
        monkeypatch.setattr(common, "kind", lambda *a, **k: subprocess.CompletedProcess(a, 0, listed, ""))
        dev_steps.step_dev_down()
    return run


def test_a_transient_error_on_a_cluster_that_exists_fails(step, capsys):
    with pytest.raises(SystemExit) as exit_:
        step(KIND_KUBECONFIG, kind_lists=("lab",))
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "cannot give ks-controller-manager back" in err and "given back" not in err


def test_an_existing_cluster_is_never_assumed_gone(step, capsys):
    with pytest.raises(SystemExit):
        step(EXISTING_KUBECONFIG, kind_lists=())
    assert "KSLAB_DEV_GONE=lab" in capsys.readouterr().err


def test_a_kind_cluster_kind_no_longer_lists_has_nothing_to_give_back(step, capsys):
    step(KIND_KUBECONFIG, kind_lists=("other",))
    assert "is gone (kind no longer lists it): nothing to give back" in capsys.readouterr().err


def test_the_user_can_say_a_cluster_is_gone(step, monkeypatch, capsys):
    monkeypatch.setenv("KSLAB_DEV_GONE", "lab")
    step(EXISTING_KUBECONFIG)
    assert "is gone (KSLAB_DEV_GONE=lab)" in capsys.readouterr().err
