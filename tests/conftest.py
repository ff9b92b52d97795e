def pytest_report_header(config):
    return ["kslab tiers: live clusters are API-server-only (real kube-apiserver + etcd, no kubelet); kind clusters "
            "are real (kubelets, pod networking); KubeSphere's controllers are played by tests/harness/ks_operators.py"]
