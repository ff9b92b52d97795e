import pytest

# `make test` runs the tiers side by side (pytest-xdist, `-n 2 --dist loadgroup`): the real-kind tier on one worker
# and the engine and live tiers on the other, each tier one test after another as before (a tier's tests share the
# machine's ports, its Docker engine and the lab registry's names). Their waits overlap: kind nodes boot while API
# servers answer. The fast tests fill in where a worker is free.
TIER_GROUPS = (("kind", "kind-tier"), ("live", "engine-tier"), ("engine", "engine-tier"))


def pytest_collection_modifyitems(config, items):
    for item in items:
        group = next((g for marker, g in TIER_GROUPS if item.get_closest_marker(marker)), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_report_header(config):
    return ["kslab tiers: live clusters are API-server-only (real kube-apiserver + etcd, no kubelet); kind clusters "
            "are real (kubelets, pod networking); KubeSphere's controllers are played by tests/harness/ks_operators.py"]
