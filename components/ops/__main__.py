"""Apply-time steps run by the lab's command resources: `python -m components.ops <step>`.

Inputs come from environment variables (kubeconfigs are Pulumi secrets there, never
arguments, so they stay out of process lists and logs). Progress goes to stderr;
only the step's result goes to stdout, which the resource stores (as a secret
where it holds one). Exit status non-zero = the step failed, with the reason on stderr.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time

from .. import kubeconfig as kc
from .. import preflight_rules, render


def log(message: str) -> None:
    print(f"[kslab] {message}", file=sys.stderr, flush=True)


def fail(message: str) -> None:
    print(f"[kslab] ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        fail(f"internal: {name} not set")
    return value


def _kube(var: str, label: str):
    from .kube import Kube  # the client library loads only for steps that need it
    return Kube(env(var), label)


def _timing() -> tuple[float, float, float]:
    return (float(env("KSLAB_TIMEOUT", "600")), float(env("KSLAB_POLL_SECONDS", "5")),
            float(env("KSLAB_PROGRESS_SECONDS", "30")))


# --- steps ---------------------------------------------------------------------------------

def step_preflight() -> None:
    plan = json.loads(env("KSLAB_PLAN"))
    facts = preflight_rules.probe()
    verdict = preflight_rules.evaluate(facts, preflight_rules.Plan(**plan))
    for warning in verdict.warnings:
        log(f"WARNING: {warning}")
    if verdict.errors:
        fail("preflight failed, no cluster was created:\n  - " + "\n  - ".join(verdict.errors))
    print(json.dumps({"kind": facts.kind_version, "kubectl": facts.kubectl_version,
                      "docker": facts.docker_detail, "warnings": verdict.warnings}))


def _kind(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["kind", *args], capture_output=True, text=True, timeout=timeout)


def _container_ip(name: str) -> str:
    fmt = "{{ .NetworkSettings.Networks.kind.IPAddress }}"
    out = subprocess.run(["docker", "inspect", "--format", fmt, f"{name}-control-plane"],
                         capture_output=True, text=True, timeout=30)
    ip = out.stdout.strip()
    if out.returncode != 0 or not ip:
        fail(f"cluster '{name}': cannot read the control-plane container IP ({out.stderr.strip()[:200]})")
    return ip


def step_kind_create() -> None:
    name, image = env("KSLAB_CLUSTER"), env("KSLAB_NODE_IMAGE")
    existing = _kind("get", "clusters", timeout=60)
    if existing.returncode != 0:
        fail(f"`kind get clusters` failed: {existing.stderr.strip()[:300]}")
    if name in existing.stdout.split():
        running = subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", f"{name}-control-plane"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
        if running and running != image and running.split("@")[0] != image.split("@")[0]:
            fail(f"a kind cluster named '{name}' already exists with image {running}, not {image}. kslab will not "
                 f"adopt it. Fix: `kind delete cluster --name {name}` or rename the cluster in the stack.")
        log(f"cluster '{name}' already exists with image {running or 'unknown'}: adopting it, not creating another")
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
            fh.write(env("KSLAB_KIND_CONFIG"))
            config_path = fh.name
        log(f"creating kind cluster '{name}' ({image})")
        try:
            proc = subprocess.run(["kind", "create", "cluster", "--name", name, "--config", config_path,
                                   "--image", image, "--wait", env("KSLAB_KIND_WAIT", "5m"),
                                   "--kubeconfig", os.devnull], stdout=sys.stderr, timeout=1800)
        finally:
            os.unlink(config_path)
        if proc.returncode != 0:
            fail(f"`kind create cluster --name {name}` failed (exit {proc.returncode}); see the output above")
    raw = _kind("get", "kubeconfig", "--name", name, timeout=60)
    if raw.returncode != 0:
        fail(f"`kind get kubeconfig --name {name}` failed: {raw.stderr.strip()[:300]}")
    ip = _container_ip(name)
    external = kc.rename_context(raw.stdout, f"kind-{name}")
    print(json.dumps({"kubeconfig": external,
                      "internalKubeconfig": kc.rewrite_server(external, f"https://{ip}:6443"),
                      "containerIp": ip}))


def step_kind_delete() -> None:
    name = env("KSLAB_CLUSTER")
    existing = _kind("get", "clusters", timeout=60)
    if existing.returncode == 0 and name not in existing.stdout.split():
        log(f"cluster '{name}' is already gone")
        return
    proc = _kind("delete", "cluster", "--name", name, timeout=600)
    if proc.returncode != 0:
        fail(f"`kind delete cluster --name {name}` failed: {proc.stderr.strip()[:300]}")
    log(f"deleted kind cluster '{name}'")


def step_gen_secret() -> None:
    print(secrets.token_hex(16))  # 32 characters, like the installer's own random secret


def step_role_guard() -> None:
    name, wanted = env("KSLAB_CLUSTER"), env("KSLAB_ROLE")
    cc = _kube("KSLAB_KUBECONFIG", f"cluster '{name}'").cluster_configuration()
    current = ((cc or {}).get("spec", {}).get("multicluster") or {}).get("clusterRole")
    if cc is None or current in (None, "", "none", wanted):
        print(json.dumps({"cluster": name, "role": wanted, "previous": current or "none"}))
        return
    fail(f"cluster '{name}' already has KubeSphere role '{current}'; the stack now asks for '{wanted}'. "
         "ks-installer never undoes a role, so kslab refuses to change it in place. Fix: keep role "
         f"'{current}', or rebuild the cluster deliberately (kind: `pulumi up --replace` on its kind step, "
         "see README 'Changing a role').")


def _wait_for(probe, timeout: float, poll: float, progress: float, label: str):
    """Poll `probe() -> (done, summary, value)` until done; a progress line every `progress` seconds.
    API errors (an API server restarting) count as not done yet. Returns (value, elapsed, summary),
    or (None, elapsed, last summary) on timeout."""
    start = last = time.monotonic()
    summary = "not seen yet"
    while True:
        try:
            done, summary, value = probe()
        except Exception as exc:
            done, summary, value = False, str(exc), None
        now = time.monotonic()
        if done:
            return value, now - start, summary
        if now - start >= timeout:
            return None, now - start, summary
        if now - last >= progress:
            log(f"{label}: still waiting after {now - start:.0f}s ({summary})")
            last = now
        time.sleep(poll)


def step_wait_install() -> None:
    name, role = env("KSLAB_CLUSTER"), env("KSLAB_ROLE")
    components = [c for c in env("KSLAB_COMPONENTS", "").split(",") if c]
    timeout, poll, progress = _timing()
    kube = _kube("KSLAB_KUBECONFIG", f"cluster '{name}'")

    def probe():
        status = (kube.cluster_configuration() or {}).get("status") or {}
        return (*render.install_state(status, role, components), status)

    log(f"waiting up to {timeout:.0f}s for KubeSphere on '{name}' (role {role})")
    status, elapsed, summary = _wait_for(probe, timeout, poll, progress, f"KubeSphere on '{name}'")
    if status is None:
        fail(f"KubeSphere on cluster '{name}' not ready after {timeout:.0f}s ({summary}). Check "
             f"`kubectl -n kubesphere-system logs deploy/ks-installer` on '{name}', or raise "
             "kslab:installTimeoutSeconds.")
    core = status.get("core") or {}
    print(json.dumps({"cluster": name, "role": role, "state": "enabled", "version": core.get("version", ""),
                      "enabledTime": core.get("enabledTime", "")}))
    log(f"KubeSphere on '{name}' is ready ({summary}) after {elapsed:.0f}s")


def step_read_jwt() -> None:
    name = env("KSLAB_CLUSTER")
    secret = _kube("KSLAB_KUBECONFIG", f"host '{name}'").kubesphere_jwt_secret()
    if not secret:
        fail(f"host '{name}' has no authentication.jwtSecret in configmap kubesphere-system/kubesphere-config yet")
    print(secret)


def step_join_check() -> None:
    member, host = env("KSLAB_MEMBER"), env("KSLAB_HOST")
    allow_loopback = env("KSLAB_ALLOW_LOOPBACK", "false") == "true"
    problems = [f"member '{member}': {p}" for p in kc.join_problems(env("KSLAB_JOIN_KUBECONFIG"), allow_loopback)]
    from .kube import Unreachable
    try:
        member_kube = _kube("KSLAB_MEMBER_KUBECONFIG", f"member '{member}'")
        host_kube = _kube("KSLAB_HOST_KUBECONFIG", f"host '{host}'")
        cc = member_kube.cluster_configuration()
        role = ((cc or {}).get("spec", {}).get("multicluster") or {}).get("clusterRole")
        if role != "member":
            problems.append(f"member '{member}' has KubeSphere role {role!r}, not 'member'")
        member_jwt = member_kube.kubesphere_jwt_secret()
        host_jwt = host_kube.kubesphere_jwt_secret()
    except Unreachable as exc:
        fail(f"join {member} -> {host} refused before creating the Cluster object: {exc}")
    if not member_jwt or not host_jwt:
        problems.append(f"jwtSecret missing in kubesphere-config on "
                        f"{'member ' + repr(member) if not member_jwt else 'host ' + repr(host)}")
    elif not secrets.compare_digest(member_jwt, host_jwt):
        problems.append(f"member '{member}' jwtSecret differs from host '{host}' (tokens the host issues would "
                        "fail on the member). Fix: jwtSecretMode shared, or copy the host's secret")
    if problems:
        fail(f"join {member} -> {host} refused before creating the Cluster object:\n  - " + "\n  - ".join(problems))
    print(json.dumps({"member": member, "host": host, "checks": "passed"}))


def step_wait_join() -> None:
    member, host = env("KSLAB_MEMBER"), env("KSLAB_HOST")
    timeout, poll, progress = _timing()
    kube = _kube("KSLAB_HOST_KUBECONFIG", f"host '{host}'")

    def probe():
        obj = kube.member_cluster(member) or {}
        return (*render.condition_state((obj.get("status") or {}).get("conditions")), True)

    log(f"waiting up to {timeout:.0f}s for member '{member}' to be Ready on host '{host}'")
    ready, elapsed, summary = _wait_for(probe, timeout, poll, progress, f"member '{member}' on host '{host}'")
    if ready is None:
        fail(f"member '{member}' did not become Ready on host '{host}' within {timeout:.0f}s ({summary}). "
             f"Check that '{member}' is reachable from '{host}' and raise kslab:joinTimeoutSeconds if needed.")
    print(json.dumps({"member": member, "host": host, "state": "Ready"}))
    log(f"member '{member}' joined host '{host}' after {elapsed:.0f}s")


def step_unjoin() -> None:
    member, host = env("KSLAB_MEMBER"), env("KSLAB_HOST")
    _, poll, progress = _timing()
    timeout = float(env("KSLAB_UNJOIN_TIMEOUT", "300"))
    force = os.environ.get("KSLAB_FORCE_UNJOIN", "") in ("1", "true")
    kube = _kube("KSLAB_HOST_KUBECONFIG", f"host '{host}'")
    if kube.member_cluster(member) is None:
        log(f"member '{member}' is not joined to '{host}' (already gone)")
        return
    log(f"unjoining member '{member}' from host '{host}' (waiting up to {timeout:.0f}s for its finalizer)")
    kube.delete_member_cluster(member)
    gone, _, _ = _wait_for(lambda: (kube.member_cluster(member) is None, "finalizer pending", True),
                           timeout, poll, progress, f"unjoin of '{member}' from '{host}'")
    if gone:
        log(f"member '{member}' unjoined from '{host}'")
    elif force:
        log(f"WARNING: KSLAB_FORCE_UNJOIN set: removing the finalizer of Cluster '{member}' on '{host}'; "
            "kubefed objects may be left on the member")
        kube.strip_member_cluster_finalizers(member)
    else:
        fail(f"Cluster '{member}' on host '{host}' still has its finalizer after {timeout:.0f}s (is the member "
             "reachable?). Fix: bring the member back and retry, or run `KSLAB_FORCE_UNJOIN=1 pulumi destroy` "
             "to drop the finalizer (kubesphere#2306).")


STEPS = {
    "preflight": step_preflight,
    "kind-create": step_kind_create,
    "kind-delete": step_kind_delete,
    "gen-secret": step_gen_secret,
    "role-guard": step_role_guard,
    "wait-install": step_wait_install,
    "read-jwt": step_read_jwt,
    "join-check": step_join_check,
    "wait-join": step_wait_join,
    "unjoin": step_unjoin,
}


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] not in STEPS:
        fail("usage: python -m components.ops {" + ",".join(STEPS) + "}")
    STEPS[argv[0]]()


if __name__ == "__main__":
    main(sys.argv[1:])
