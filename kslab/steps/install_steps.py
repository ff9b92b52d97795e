"""The KubeSphere install steps (`python -m kslab.steps <step>`, kslab/steps/dispatch.py): the shared
jwtSecret's generation, the guard against changing a cluster's role, the installer's last run before kslab
changes the cc, the bounded wait for ks-installer's run, and the effective jwtSecret read after it."""
from __future__ import annotations

import json
import secrets

from kslab.model import contract as names
from kslab.model import requests
from kslab.render.lines import line_for
from kslab.steps import common
from kslab.steps.common import fail, log, wait_for


def step_gen_secret() -> None:
    print(secrets.token_hex(16))  # 32 characters, like the installer's own random secret


def step_role_guard() -> None:
    asked = common.request(requests.ClusterAccess)
    name, wanted = asked.cluster, asked.role
    cc = common.kube(names.ENV_KUBECONFIG, f"cluster '{name}'").cluster_configuration()
    current = ((cc or {}).get("spec", {}).get("multicluster") or {}).get("clusterRole")
    if cc is None or current in (None, "", "none", wanted):
        print(json.dumps({"cluster": name, "role": wanted, "previous": current or "none"}))
        return
    fail(f"cluster '{name}' already has KubeSphere role '{current}'; the stack now asks for '{wanted}'. "
         "ks-installer never undoes a role, so kslab refuses to change it in place. Fix: keep role "
         f"'{current}', or rebuild the cluster deliberately (kind: `pulumi up --replace` on its kind step, "
         "see README 'Changing a role').")


def step_install_baseline() -> None:
    """Before kslab changes the cc: the status.core.enabledTime of the last run that started, so the wait
    after the change can tell a newer run (every run rewrites it; roles/ks-core/ks-core/tasks/main.yaml)."""
    name = common.request(requests.ClusterAccess).cluster
    cc = common.kube(names.ENV_KUBECONFIG, f"cluster '{name}'").cluster_configuration() or {}
    core = (cc.get("status") or {}).get("core") or {}
    print(json.dumps({"enabledTime": core.get("enabledTime"), "uid": (cc.get("metadata") or {}).get("uid")}))


def step_wait_install() -> None:
    asked = common.request(requests.InstallWait)
    name, role, version, wait_keys = asked.cluster, asked.role, asked.ks_version, asked.wait_keys
    baseline_enabled_time = requests.InstallWait.enabled_time(asked.baseline)
    timeout, knobs = asked.timeout, common.knobs()
    kube = common.kube(names.ENV_KUBECONFIG, f"cluster '{name}'")

    def probe():
        cc = kube.cluster_configuration() or {}
        line = line_for(version)
        gaps = line.config_gaps(version, cc.get("spec") or {}, kube.kubesphere_yaml()) if cc else ["no cc"]
        state = line.install_state(cc.get("status"), version=version, wait_keys=wait_keys,
                                   baseline_enabled_time=baseline_enabled_time, config_gaps=gaps)
        if state.failed:
            fail(f"ks-installer on cluster '{name}' marked {', '.join(state.failed)} failed ({state.summary}). "
                 f"Check `kubectl -n kubesphere-system logs deploy/ks-installer` on '{name}'; a re-run needs a cc "
                 "change or an installer restart.")
        return state.done, state.summary, cc.get("status")

    log(f"waiting up to {timeout:.0f}s for ks-installer's run on '{name}' (role {role}, {version})")
    status, elapsed, summary = wait_for(probe, timeout, knobs.poll_seconds, knobs.progress_seconds,
                                         f"KubeSphere on '{name}'")
    if status is None:
        fail(f"KubeSphere on cluster '{name}' not ready after {timeout:.0f}s ({summary}). Check "
             f"`kubectl -n kubesphere-system logs deploy/ks-installer` on '{name}', or raise "
             "kslab:installTimeoutSeconds.")
    core = status.get("core") or {}
    print(json.dumps({"cluster": name, "role": role, "state": "enabled", "version": core.get("version", ""),
                      "enabledTime": core.get("enabledTime", "")}))
    log(f"KubeSphere on '{name}' is ready ({summary}) after {elapsed:.0f}s")


def step_read_jwt() -> None:
    """The effective jwtSecret, read only after the install wait; retried (bounded) while the map is not
    there yet or the API server is briefly away, since the installer applies it at the end of a run."""
    name, knobs = common.request(requests.ClusterAccess).cluster, common.knobs()
    kube = common.kube(names.ENV_KUBECONFIG, f"cluster '{name}'")
    def probe():
        secret = kube.kubesphere_jwt_secret()
        return bool(secret), "no authentication.jwtSecret in kubesphere-config yet", secret

    secret, _, summary = wait_for(probe, knobs.jwt_read_seconds, knobs.poll_seconds, knobs.progress_seconds,
                                   f"jwtSecret of '{name}'")
    if not secret:
        fail(f"cluster '{name}': {summary} (configmap kubesphere-system/kubesphere-config)")
    print(secret)
