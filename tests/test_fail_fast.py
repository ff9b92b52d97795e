"""Fail fast on a real API server: an answer that waiting cannot change (here 403 Forbidden) ends a step in
seconds with its cause, instead of waiting out installTimeoutSeconds."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml
from kubernetes import client, config

from kslab.model import requests
from tests.harness.live_cluster import LiveCluster, find_bin_dir
from tests.support.mock_run import ROOT

pytestmark = [pytest.mark.live]


@pytest.fixture
def cluster(tmp_path):
    c = LiveCluster("forbidden", tmp_path / "forbidden", find_bin_dir()).start()
    yield c
    c.stop()


def _token_kubeconfig(cluster: LiveCluster) -> str:
    """The cluster's kubeconfig, but as a ServiceAccount that no role grants anything: every read is 403."""
    admin_text = cluster.kubeconfig_path.read_text()
    core = client.CoreV1Api(config.new_client_from_config_dict(yaml.safe_load(admin_text)))
    core.create_namespaced_service_account("default", client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name="nobody")))
    token = core.create_namespaced_service_account_token("nobody", "default", client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=600))).status.token
    doc = yaml.safe_load(admin_text)
    doc["users"][0]["user"] = {"token": token}
    return yaml.safe_dump(doc)


def test_a_403_fails_the_install_wait_in_seconds_with_its_cause(cluster):
    request = requests.InstallWait("forbidden", "none", _token_kubeconfig(cluster), "v3.4.1", 600, [], "{}")
    env = {"PATH": os.environ["PATH"], **request.to_env(), "KSLAB_POLL_SECONDS": "0.5"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "kslab.steps", "wait-install"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode != 0
    assert "403" in proc.stderr and "Forbidden" in proc.stderr, proc.stderr[-2000:]
    assert elapsed < 30, f"a 403 took {elapsed:.0f} s to fail (the timeout is 600 s)"
    assert "Traceback" not in proc.stderr
