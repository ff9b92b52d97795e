"""The multicluster steps (`python -m kslab.steps <step>`, kslab/steps/dispatch.py): the host console's import
checks before a member's Cluster object is created, the bounded wait for it to be Ready, and the unjoin, with
the v3.4 Cluster webhook moved out of the way (and saved on the host) when the finalizer must go by hand."""
from __future__ import annotations

import json
import secrets

from kslab.model import contract as names
from kslab.model import kubeconfig as kc
from kslab.model import requests, versions
from kslab.render.lines import line_for
from kslab.steps import common
from kslab.steps.common import fail, log, wait_for
from kslab.steps.errors import Transient


def _console_checks(host_kube, member_kube, member: str, host: str, join_server: str, ks_version: str) -> list[str]:
    """What the host's console validation API checks before it imports a member, per release
    (kubesphere@<tag>:pkg/kapis/cluster/v1alpha1/handler.go, validateCluster), in its order. Problems found
    are returned; the checks kslab adds are labelled as kslab's."""
    release = versions.KUBESPHERE_RELEASES[ks_version]
    problems = []
    member_uid = member_kube.kube_system_uid()
    others = [c for c in host_kube.member_clusters() if c["metadata"]["name"] != member]
    if release.duplicate_check == "uid":  # v3.4.1: same kube-system UID
        twin = next((c["metadata"]["name"] for c in others if member_uid and
                     (c.get("status") or {}).get("uid") == member_uid), None)
        if twin:
            problems.append(f"cluster '{member}' is already imported on host '{host}' as '{twin}' (same kube-system "
                            "UID); the console refuses to import the same cluster twice")
    else:  # v3.2.1: same API server address
        twin = next((c["metadata"]["name"] for c in others
                     if ((c.get("spec") or {}).get("connection") or {}).get("kubernetesAPIEndpoint") == join_server),
                    None)
        if twin:
            problems.append(f"cluster '{member}' has the same server address ({join_server}) as '{twin}' on host "
                            f"'{host}'; the console refuses to import the same cluster twice")
    answered, detail = member_kube.ks_apiserver_version()
    if not answered:
        problems.append(f"member '{member}': ks-apiserver does not answer /kapis/version through its API server's "
                        f"service proxy ({detail}); the console refuses a member whose KubeSphere is not up")
    member_config = member_kube.kubesphere_config()
    if release.console_role_check:
        role = (member_config.get("multicluster") or {}).get("clusterRole")
        if role != "member":
            problems.append(f"member '{member}' has multicluster.clusterRole {role!r} in its kubesphere-config, not "
                            "'member' (the console reads the role there)")
    else:  # v3.2.1's console has no role check; kslab checks the cc it set
        cc = member_kube.cluster_configuration()
        role = ((cc or {}).get("spec", {}).get("multicluster") or {}).get("clusterRole")
        if role != "member":
            problems.append(f"member '{member}' has KubeSphere role {role!r} in its cc, not 'member' (kslab's check)")
    member_jwt = line_for(ks_version).jwt_secret_of(member_config)
    host_jwt = host_kube.kubesphere_jwt_secret()
    if not member_jwt or not host_jwt:
        problems.append(f"jwtSecret missing in kubesphere-config on "
                        f"{'member ' + repr(member) if not member_jwt else 'host ' + repr(host)}")
    elif not secrets.compare_digest(member_jwt, host_jwt):
        problems.append(f"member '{member}' jwtSecret differs from host '{host}' (tokens the host issues would "
                        "fail on the member). Fix: jwtSecretMode shared, or copy the host's secret")
    return problems


def step_join_check() -> None:
    asked = common.request(requests.JoinCheck)
    member, host, ks_version = asked.member, asked.host, asked.ks_version
    allow_loopback, join_kubeconfig = asked.allow_loopback, asked.join_kubeconfig
    problems = [f"member '{member}': {p}" for p in kc.join_problems(join_kubeconfig, allow_loopback)]
    try:
        member_kube = common.kube(names.ENV_MEMBER_KUBECONFIG, f"member '{member}'")
        host_kube = common.kube(names.ENV_HOST_KUBECONFIG, f"host '{host}'")
        member_uid = member_kube.kube_system_uid()
        try:
            server = kc.server_of(join_kubeconfig)
        except kc.KubeconfigError:
            server = ""  # already among the problems (join_problems)
        problems += _console_checks(host_kube, member_kube, member, host, server, ks_version)
        if not problems:
            _replace_stale_cluster(host_kube, member, host, member_uid, ks_version)
    except Transient as exc:
        fail(f"join {member} -> {host} refused before creating the Cluster object: {exc}")
    if problems:
        fail(f"join {member} -> {host} refused before creating the Cluster object:\n  - " + "\n  - ".join(problems))
    print(json.dumps({"member": member, "host": host, "checks": "passed", "memberUid": member_uid or ""}))


def _replace_stale_cluster(host_kube, member: str, host: str, member_uid: str | None, ks_version: str) -> None:
    """A rebuilt member (same name, new kube-system UID): the host's Cluster still records the old UID, and
    on v3.4.1 the webhook denies every update of it (kubesphere#6072). Remove it so it is created anew."""
    existing = host_kube.member_cluster(member)
    recorded = ((existing or {}).get("status") or {}).get("uid")
    if not existing or not recorded or not member_uid or recorded == member_uid:
        return
    log(f"member '{member}' was rebuilt (kube-system UID {member_uid}; host '{host}' recorded {recorded}): "
        "removing the stale Cluster object so the member is joined anew")
    _remove_cluster_object(host_kube, member, host, ks_version, wait_seconds=common.knobs().stale_wait_seconds)


def _restore_saved_webhooks(kube, host: str) -> None:
    restored = kube.restore_saved_webhook_configurations()
    if restored:
        log(f"restored ValidatingWebhookConfiguration {', '.join(restored)} on '{host}', which an interrupted run "
            "had taken out of the way")


def _remove_cluster_object(kube, member: str, host: str, ks_version: str, wait_seconds: float,
                           delete: bool = True) -> None:
    """Delete a Cluster whose finalizer the controller cannot remove (member gone or rebuilt), and finish
    what the controller's unjoin would have done on the host. On v3.4.1 the finalizer can only go with the
    webhook out of the way: the maintainers' workaround (kubesphere#2306) is to save the
    ValidatingWebhookConfiguration, delete it, drop the finalizer, and apply it again."""
    knobs = common.knobs()
    poll, progress = knobs.poll_seconds, knobs.progress_seconds
    _restore_saved_webhooks(kube, host)
    if delete:
        kube.delete_member_cluster(member)
    gone, _, _ = wait_for(lambda: (kube.member_cluster(member) is None, "finalizer pending", True),
                           wait_seconds, poll, progress, f"Cluster '{member}' on '{host}'")
    if not gone:
        saved = kube.cluster_webhook_configurations() if line_for(ks_version).unjoin_moves_webhook(ks_version) \
            else []
        if saved:
            # kept on the host first: a run killed before it restores them is restored by the next one
            kube.save_webhook_configurations(saved)
        for item in saved:
            log(f"removing ValidatingWebhookConfiguration {item.metadata.name} on '{host}' for a moment "
                "(it denies any change to a Cluster whose member is gone or rebuilt)")
            kube.delete_webhook_configuration(item.metadata.name)
        try:
            kube.strip_member_cluster_finalizers(member)
        finally:
            for item in saved:
                kube.restore_webhook_configuration(item)
                log(f"restored ValidatingWebhookConfiguration {item.metadata.name} on '{host}'")
            if saved:
                kube.forget_saved_webhook_configurations()
        wait_for(lambda: (kube.member_cluster(member) is None, "being deleted", True), 30, poll, progress,
                  f"Cluster '{member}' on '{host}'")
    left = kube.remove_kubefed_cluster(member)
    if left:
        log(f"removed what the controller's unjoin leaves on host '{host}' when it cannot finish: {', '.join(left)}")


def step_wait_join() -> None:
    asked, knobs = common.request(requests.JoinReady), common.knobs()
    member, host, ks_version = asked.member, asked.host, asked.ks_version
    timeout, poll, progress = asked.timeout, knobs.poll_seconds, knobs.progress_seconds
    kube = common.kube(names.ENV_HOST_KUBECONFIG, f"host '{host}'")

    def probe():
        obj = kube.member_cluster(member) or {}
        return (*line_for(ks_version).join_state((obj.get("status") or {}).get("conditions")), True)

    log(f"waiting up to {timeout:.0f}s for member '{member}' to be Ready on host '{host}'")
    ready, elapsed, summary = wait_for(probe, timeout, poll, progress, f"member '{member}' on host '{host}'")
    if ready is None:
        fail(f"member '{member}' did not become Ready on host '{host}' within {timeout:.0f}s ({summary}). "
             f"Check that '{member}' is reachable from '{host}' and raise kslab:joinTimeoutSeconds if needed.")
    print(json.dumps({"member": member, "host": host, "state": "Ready"}))
    log(f"member '{member}' joined host '{host}' after {elapsed:.0f}s")


def step_unjoin() -> None:
    """Delete the Cluster and wait (bounded) for the controller's unjoin. Upstream's unjoin runs with no
    member config: it removes only the host's KubeFedCluster and its secret, and the member keeps its
    kube-federation-system objects in every case (kubesphere@<tag>:pkg/controller/cluster/unjoin.go)."""
    asked, knobs = common.request(requests.JoinReady), common.knobs()
    member, host, ks_version = asked.member, asked.host, asked.ks_version
    poll, progress, timeout = knobs.poll_seconds, knobs.progress_seconds, asked.unjoin_timeout
    force = knobs.force_unjoin
    kube = common.kube(names.ENV_HOST_KUBECONFIG, f"host '{host}'")
    _restore_saved_webhooks(kube, host)
    if kube.member_cluster(member) is None:
        log(f"member '{member}' is not joined to '{host}' (already gone)")
        return
    log(f"unjoining member '{member}' from host '{host}' (waiting up to {timeout:.0f}s for its finalizer)")
    kube.delete_member_cluster(member)
    gone, _, _ = wait_for(lambda: (kube.member_cluster(member) is None, "finalizer pending", True),
                           timeout, poll, progress, f"unjoin of '{member}' from '{host}'")
    if gone:
        log(f"member '{member}' unjoined from '{host}'")
    elif force:
        log(f"WARNING: KSLAB_FORCE_UNJOIN set: removing Cluster '{member}' on '{host}' without its controller")
        _remove_cluster_object(kube, member, host, ks_version, wait_seconds=0, delete=False)
    else:
        blocked = (" On v3.4 the Cluster webhook also denies removing the finalizer while the member is "
                   "unreachable (kubesphere#6154).") if line_for(ks_version).unjoin_moves_webhook(ks_version) \
            else ""
        fail(f"Cluster '{member}' on host '{host}' still has its finalizer after {timeout:.0f}s (is the member "
             f"reachable, and is ks-controller-manager running on '{host}'?).{blocked} Fix: bring the member back "
             "and retry, or run `KSLAB_FORCE_UNJOIN=1 pulumi destroy` to remove it without the controller (see "
             "README 'Destroy').")
