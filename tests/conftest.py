import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def pytest_report_header(config):
    return ["kslab live tests: clusters are API-server-only (real kube-apiserver + etcd, no kubelet); "
            "KubeSphere's operators are played by tests/harness/ks_operators.py; no kind cluster runs here"]
