

def pytest_report_header(config):
    return ["kslab live tests: clusters are API-server-only (real kube-apiserver + etcd, no kubelet); "
            "KubeSphere's operators are played by tests/harness/ks_operators.py; no kind cluster runs here"]
