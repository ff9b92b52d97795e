"""Apply-time steps run by the lab's command resources: `python -m kslab.steps <step>`.

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
import traceback
from typing import NoReturn

import yaml

from kslab.model import contract as names
from kslab.model import kubeconfig as kc
from kslab.model import preflight_rules, versions
from kslab.render import devworkspace
from kslab.render import manifests as render
from kslab.steps import workspace_fs
from kslab.steps.errors import ApiFailure, Transient


def log(message: str) -> None:
    print(f"[kslab] {message}", file=sys.stderr, flush=True)


def fail(message: str) -> NoReturn:
    print(f"[kslab] ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        fail(f"internal: {name} not set")
    return value


def _kube(var: str, label: str):
    from kslab.steps.kube import Kube  # the client library loads only for steps that need it
    return Kube(env(var), label)


def _timing() -> tuple[float, float, float]:
    return (float(env(names.ENV_TIMEOUT, "600")), float(env(names.ENV_POLL_SECONDS, "5")),
            float(env(names.ENV_PROGRESS_SECONDS, "30")))


# --- steps ---------------------------------------------------------------------------------

def step_preflight() -> None:
    plan = json.loads(env(names.ENV_PLAN))
    facts = preflight_rules.probe(plan["node_images"])
    verdict = preflight_rules.evaluate(facts, preflight_rules.Plan(**plan))
    for warning in verdict.warnings:
        log(f"WARNING: {warning}")
    if verdict.errors:
        fail("preflight failed, no cluster was created:\n  - " + "\n  - ".join(verdict.errors))
    print(json.dumps({"kind": facts.kind_version, "kubectl": facts.kubectl_version,
                      "docker": facts.docker_detail, "warnings": verdict.warnings}))


def step_image_check() -> None:
    """Every planned image, asked of its registry (a manifest HEAD), before any cluster or object exists."""
    from kslab.steps import registry_check  # the HTTP client loads only for this step
    wanted: dict[str, list[str]] = json.loads(env(names.ENV_IMAGES))
    started = time.monotonic()
    answers = registry_check.check(list(wanted))
    refusal = registry_check.report(answers, wanted)
    if refusal:
        fail("image check failed: " + refusal)
    log(f"image check: all {len(answers)} planned images found in {time.monotonic() - started:.1f}s")
    print(json.dumps({"images": len(answers), "registries": sorted({registry_check.ImageRef.parse(r).registry
                                                                   for r in answers})}))


def _registry_auth() -> dict[str, tuple[str, str]]:
    doc = json.loads(os.environ.get(names.ENV_REGISTRY_AUTH) or "{}")
    return {host: (entry["username"], entry["password"]) for host, entry in doc.items()}


def _fill_lab_registry(lab, wanted: dict[str, dict], archive_files: list[str],
                       credentials: dict[str, tuple[str, str]]) -> tuple[set[str], dict[str, str]]:
    """The lab-images step's work, under the machine's lab registry lock: what was already held, what was copied."""
    from kslab.model.image_sources import DOCKER_PREFIX
    from kslab.steps import archives, lab_registry, registry_check
    state = lab_registry.container_state(lab)
    held: set[str] = set()
    if state is not None:
        log(f"lab registry '{lab.name}' at {lab.local}: {lab_registry.ensure_running(lab)}")
        present = registry_check.check([f"{lab.local}/{path}" for path in wanted])
        held = {path for path in wanted if present[f"{lab.local}/{path}"].state == registry_check.FOUND
                and not wanted[path].get("override")}
    missing = [path for path in wanted if path not in held]
    in_archive: dict[str, tuple[str, str]] = {}
    for archive in archive_files if missing else ():
        index = archives.read_index(archive)
        for path in missing:
            if path in index and path not in in_archive and not wanted[path].get("override"):
                in_archive[path] = (archive, index[path])
    from_docker = {path: wanted[path]["candidates"][0] for path in missing
                   if wanted[path]["candidates"] and wanted[path]["candidates"][0].startswith(DOCKER_PREFIX)}
    for path, ref in from_docker.items():
        if not lab_registry.docker_has(ref.removeprefix(DOCKER_PREFIX)):
            fail(f"image sources: {path} is overridden with {ref}, which this machine's Docker does not have. "
                 f"Fix: build or pull it (docker images), or change kslab:imageOverrides")
    ask = [path for path in missing if path not in in_archive and path not in from_docker]
    checker = registry_check.Checker(credentials=credentials)
    located = registry_check.locate({path: wanted[path]["candidates"] for path in ask}, checker=checker)
    refusal = registry_check.report_sources(located, {path: wanted[path]["clusters"] for path in wanted},
                                            archive_files)
    if refusal:
        fail("image sources: " + refusal)
    if state is None:
        log(f"lab registry '{lab.name}' at {lab.local}: {lab_registry.ensure_running(lab)}")
    copied: dict[str, str] = {}
    for path, (archive, member) in in_archive.items():
        archives.load(archive, member, f"{lab.local}/{path}")
        copied[path] = f"{archive}:{member}"
        log(f"loaded {path} from the archive {archive}")
    for path, ref in from_docker.items():
        lab_registry.push_from_docker(ref.removeprefix(DOCKER_PREFIX), f"{lab.local}/{path}")
        copied[path] = ref
        log(f"pushed {ref} from this machine's Docker into the lab registry as {path}")
    with tempfile.TemporaryDirectory(prefix="kslab-auth-") as auth_dir:
        docker_config = lab_registry.write_docker_config(auth_dir, credentials) if credentials else None
        for path in ask:
            source = registry_check.found_at(located[path])
            if source is None:  # report_sources refused every image no source holds
                fail(f"internal: no source for {path}")
            lab_registry.copy(source, f"{lab.local}/{path}", docker_config)
            copied[path] = source
            log(f"copied {source} into the lab registry as {path}")
    return held, copied


def step_lab_images() -> None:
    """Every image of the lab's kind clusters into the lab registry. What it already holds is asked of nobody (a
    re-up copies nothing, and works offline); an image overridden in the stack is always put in again (it is
    yours, and may have changed); the rest comes from the image archives, else from the first source that has it.
    Every image is found before anything is copied or created: a refusal lists each one nothing has."""
    from kslab.model.image_sources import LabRegistry
    from kslab.steps import lab_registry
    lab = LabRegistry.from_env(env(names.ENV_LAB_REGISTRY))
    wanted: dict[str, dict] = json.loads(env(names.ENV_LAB_IMAGES))
    archive_files: list[str] = json.loads(os.environ.get(names.ENV_LAB_ARCHIVES) or "[]")
    credentials = _registry_auth()
    started = time.monotonic()
    try:
        with lab_registry.machine_lock(lab, log):
            held, copied = _fill_lab_registry(lab, wanted, archive_files, credentials)
    except lab_registry.RegistryError as error:
        fail(f"lab registry: {error}")
    log(f"lab registry: {len(wanted)} images, {len(held)} already there, {len(copied)} copied, in "
        f"{time.monotonic() - started:.1f}s")
    print(json.dumps({"registry": lab.local, "images": len(wanted), "held": len(held), "copied": copied}))


def step_lab_images_read() -> None:
    """Refresh: the lab images step counts as gone (and the next up fills the registry again) when the lab
    registry is not there, lacks an image, or an image of your own is to be pushed again (it may be rebuilt)."""
    from kslab.model.image_sources import LabRegistry
    from kslab.steps import lab_registry, registry_check
    lab = LabRegistry.from_env(env(names.ENV_LAB_REGISTRY))
    wanted: dict[str, dict] = json.loads(env(names.ENV_LAB_IMAGES))
    try:
        state = lab_registry.container_state(lab)
    except lab_registry.RegistryError as error:
        fail(f"lab registry: {error}")
    if state is None or any(entry.get("override") for entry in wanted.values()):
        sys.exit(names.GONE_EXIT)
    if not (state.get("State") or {}).get("Running"):
        sys.exit(names.GONE_EXIT)
    present = registry_check.check([f"{lab.local}/{path}" for path in wanted],
                                   checker=registry_check.Checker(attempts=1))
    if any(answer.state != registry_check.FOUND for answer in present.values()):
        sys.exit(names.GONE_EXIT)
    print(json.dumps({"registry": lab.local, "images": len(wanted), "held": len(wanted), "copied": {}}))


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


def _kind_create_env() -> dict[str, str]:
    """kind hands the proxy variables to every node's containerd (kind: its proxy settings, with NO_PROXY for the
    node network); the lab registry is named by its container name, which that list lacks, so it is added."""
    environment = dict(os.environ)
    if environment.get(names.ENV_LAB_REGISTRY):
        from kslab.model.image_sources import LabRegistry
        name = LabRegistry.from_env(environment[names.ENV_LAB_REGISTRY]).name
        for key in ("NO_PROXY", "no_proxy"):
            if any(environment.get(v) for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")):
                environment[key] = ",".join(filter(None, (environment.get(key), name)))
    return environment


def step_kind_create() -> None:
    name, image = env(names.ENV_CLUSTER), env(names.ENV_NODE_IMAGE)
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
        log(f"creating kind cluster '{name}' ({image})")
        # kind writes (and first locks, with O_CREAT|O_EXCL on "<path>.lock") the kubeconfig it is given
        # (sigs.k8s.io/kind@v0.33.0:pkg/cluster/internal/kubeconfig/internal/kubeconfig/lock.go). A private
        # scratch directory keeps the user's ~/.kube/config untouched and works for any user; /dev/null
        # would need a /dev/null.lock, which only root may create. The lab's kubeconfig comes from
        # `kind get kubeconfig` below.
        with tempfile.TemporaryDirectory(prefix="kslab-kind-") as scratch:
            config_path = os.path.join(scratch, "kind-config.yaml")
            with open(config_path, "w") as fh:
                fh.write(env(names.ENV_KIND_CONFIG))
            proc = subprocess.run(["kind", "create", "cluster", "--name", name, "--config", config_path,
                                   "--image", image, "--wait", env(names.ENV_KIND_WAIT, "5m"),
                                   "--kubeconfig", os.path.join(scratch, "kubeconfig")],
                                  stdout=sys.stderr, timeout=1800, env=_kind_create_env())
        if proc.returncode != 0:
            fail(f"`kind create cluster --name {name}` failed (exit {proc.returncode}); see the output above")
    if os.environ.get(names.ENV_LAB_REGISTRY):
        from kslab.model.image_sources import LabRegistry
        from kslab.steps import lab_registry
        lab = LabRegistry.from_env(os.environ[names.ENV_LAB_REGISTRY])
        try:
            nodes = lab_registry.configure_nodes(lab, name)
        except lab_registry.RegistryError as error:
            fail(f"cluster '{name}': {error}")
        log(f"cluster '{name}': {len(nodes)} node(s) pull from the lab registry {lab.in_network}")
    _print_kind_access(name)


def _print_kind_access(name: str) -> None:
    """The cluster's kubeconfigs (the user's, and the host-facing one on the container IP) as the result."""
    raw = _kind("get", "kubeconfig", "--name", name, timeout=60)
    if raw.returncode != 0:
        fail(f"`kind get kubeconfig --name {name}` failed: {raw.stderr.strip()[:300]}")
    ip = _container_ip(name)
    external = kc.rename_context(raw.stdout, f"kind-{name}")
    print(json.dumps({"kubeconfig": external,
                      "internalKubeconfig": kc.rewrite_server(external, f"https://{ip}:6443"),
                      "containerIp": ip}))


def step_kind_read() -> None:
    """Refresh of a kind cluster: gone (deleted out of band) or what it is now (its IP may have changed
    after a restart, and kind then issues new certificates)."""
    name = env(names.ENV_CLUSTER)
    existing = _kind("get", "clusters", timeout=60)
    if existing.returncode != 0:
        fail(f"`kind get clusters` failed: {existing.stderr.strip()[:300]}")
    if name not in existing.stdout.split():
        log(f"kind cluster '{name}' is gone")
        sys.exit(names.GONE_EXIT)
    _print_kind_access(name)


KIND_DELETE_ATTEMPTS = 3


def step_kind_delete() -> None:
    name = env(names.ENV_CLUSTER)
    existing = _kind("get", "clusters", timeout=60)
    if existing.returncode == 0 and name not in existing.stdout.split():
        log(f"cluster '{name}' is already gone")
        return
    # As for create: kind edits (and locks) the kubeconfig it is given; kslab never added the cluster to
    # the user's kubeconfig, so a scratch one keeps theirs untouched.
    for attempt in range(1, KIND_DELETE_ATTEMPTS + 1):
        with tempfile.TemporaryDirectory(prefix="kslab-kind-") as scratch:
            proc = _kind("delete", "cluster", "--name", name, "--kubeconfig", os.path.join(scratch, "kubeconfig"),
                         timeout=600)
        if proc.returncode == 0:
            log(f"deleted kind cluster '{name}'")
            return
        # Docker sometimes cannot kill a node container at the first try ("Could not kill running
        # container"): that heals, so it is tried again; anything else fails at once.
        if "Could not kill running container" not in proc.stderr or attempt == KIND_DELETE_ATTEMPTS:
            break
        log(f"`kind delete cluster --name {name}`: Docker could not kill the node yet; trying again ({attempt})")
        time.sleep(5)
    fail(f"`kind delete cluster --name {name}` failed: {proc.stderr.strip()[-400:]}")


def step_gen_secret() -> None:
    print(secrets.token_hex(16))  # 32 characters, like the installer's own random secret


def step_role_guard() -> None:
    name, wanted = env(names.ENV_CLUSTER), env(names.ENV_ROLE)
    cc = _kube(names.ENV_KUBECONFIG, f"cluster '{name}'").cluster_configuration()
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
    Only what can heal is waited through: an unreachable API server or a 5xx answer (kube.Transient) counts
    as not done yet; any other error propagates at once. Returns (value, elapsed, summary), or
    (None, elapsed, last summary) on timeout."""
    start = last = time.monotonic()
    summary = "not seen yet"
    while True:
        try:
            done, summary, value = probe()
        except Transient as exc:
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


def _fatal_api_errors(step):
    """Run a step; an API answer that waiting cannot change ends it with that answer, not a traceback.
    Anything else is a kslab bug: said as such, with the traceback only when asked for (KSLAB_DEBUG=1)."""
    def run() -> None:
        try:
            step()
        except (ApiFailure, Transient) as exc:
            fail(str(exc))
        except Exception as exc:  # noqa: BLE001
            if os.environ.get(names.ENV_DEBUG):
                traceback.print_exc()
            fail(f"step {step.__name__} failed unexpectedly ({exc.__class__.__name__}: {exc}). This is a kslab "
                 f"bug: rerun with {names.ENV_DEBUG}=1 for the traceback and report it")
    return run


def step_install_baseline() -> None:
    """Before kslab changes the cc: the status.core.enabledTime of the last run that started, so the wait
    after the change can tell a newer run (every run rewrites it; roles/ks-core/ks-core/tasks/main.yaml)."""
    cc = _kube(names.ENV_KUBECONFIG, f"cluster '{env(names.ENV_CLUSTER)}'").cluster_configuration() or {}
    core = (cc.get("status") or {}).get("core") or {}
    print(json.dumps({"enabledTime": core.get("enabledTime"), "uid": (cc.get("metadata") or {}).get("uid")}))


def step_wait_install() -> None:
    name, role, version = env(names.ENV_CLUSTER), env(names.ENV_ROLE), env(names.ENV_KS_VERSION)
    wait_keys = [k for k in env(names.ENV_WAIT_KEYS, "").split(",") if k]
    baseline = json.loads(env(names.ENV_BASELINE, "{}") or "{}")
    timeout, poll, progress = _timing()
    kube = _kube(names.ENV_KUBECONFIG, f"cluster '{name}'")

    def probe():
        cc = kube.cluster_configuration() or {}
        gaps = render.kubesphere_config_gaps(version, cc.get("spec") or {}, kube.kubesphere_yaml()) if cc else \
            ["no cc"]
        state = render.install_state(cc.get("status"), version=version, wait_keys=wait_keys,
                                     baseline_enabled_time=baseline.get("enabledTime"), config_gaps=gaps)
        if state.failed:
            fail(f"ks-installer on cluster '{name}' marked {', '.join(state.failed)} failed ({state.summary}). "
                 f"Check `kubectl -n kubesphere-system logs deploy/ks-installer` on '{name}'; a re-run needs a cc "
                 "change or an installer restart.")
        return state.done, state.summary, cc.get("status")

    log(f"waiting up to {timeout:.0f}s for ks-installer's run on '{name}' (role {role}, {version})")
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
    """The effective jwtSecret, read only after the install wait; retried (bounded) while the map is not
    there yet or the API server is briefly away, since the installer applies it at the end of a run."""
    name = env(names.ENV_CLUSTER)
    _, poll, progress = _timing()
    kube = _kube(names.ENV_KUBECONFIG, f"cluster '{name}'")
    def probe():
        secret = kube.kubesphere_jwt_secret()
        return bool(secret), "no authentication.jwtSecret in kubesphere-config yet", secret

    secret, _, summary = _wait_for(probe, float(env(names.ENV_JWT_READ_SECONDS, "60")), poll, progress,
                                   f"jwtSecret of '{name}'")
    if not secret:
        fail(f"cluster '{name}': {summary} (configmap kubesphere-system/kubesphere-config)")
    print(secret)


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
    member_jwt = render.jwt_secret_of(member_config)
    host_jwt = host_kube.kubesphere_jwt_secret()
    if not member_jwt or not host_jwt:
        problems.append(f"jwtSecret missing in kubesphere-config on "
                        f"{'member ' + repr(member) if not member_jwt else 'host ' + repr(host)}")
    elif not secrets.compare_digest(member_jwt, host_jwt):
        problems.append(f"member '{member}' jwtSecret differs from host '{host}' (tokens the host issues would "
                        "fail on the member). Fix: jwtSecretMode shared, or copy the host's secret")
    return problems


def step_join_check() -> None:
    member, host = env(names.ENV_MEMBER), env(names.ENV_HOST)
    ks_version = env(names.ENV_KS_VERSION)
    allow_loopback = env(names.ENV_ALLOW_LOOPBACK, "false") == "true"
    join_kubeconfig = env(names.ENV_JOIN_KUBECONFIG)
    problems = [f"member '{member}': {p}" for p in kc.join_problems(join_kubeconfig, allow_loopback)]
    try:
        member_kube = _kube(names.ENV_MEMBER_KUBECONFIG, f"member '{member}'")
        host_kube = _kube(names.ENV_HOST_KUBECONFIG, f"host '{host}'")
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
    _remove_cluster_object(host_kube, member, host, ks_version, wait_seconds=float(env(names.ENV_STALE_WAIT, "10")))


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
    _, poll, progress = _timing()
    _restore_saved_webhooks(kube, host)
    if delete:
        kube.delete_member_cluster(member)
    gone, _, _ = _wait_for(lambda: (kube.member_cluster(member) is None, "finalizer pending", True),
                           wait_seconds, poll, progress, f"Cluster '{member}' on '{host}'")
    if not gone:
        saved = kube.cluster_webhook_configurations() if versions.KUBESPHERE_RELEASES[ks_version].cluster_webhook \
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
        _wait_for(lambda: (kube.member_cluster(member) is None, "being deleted", True), 30, poll, progress,
                  f"Cluster '{member}' on '{host}'")
    left = kube.remove_kubefed_cluster(member)
    if left:
        log(f"removed what the controller's unjoin leaves on host '{host}' when it cannot finish: {', '.join(left)}")


def step_wait_join() -> None:
    member, host = env(names.ENV_MEMBER), env(names.ENV_HOST)
    timeout, poll, progress = _timing()
    kube = _kube(names.ENV_HOST_KUBECONFIG, f"host '{host}'")

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
    """Delete the Cluster and wait (bounded) for the controller's unjoin. Upstream's unjoin runs with no
    member config: it removes only the host's KubeFedCluster and its secret, and the member keeps its
    kube-federation-system objects in every case (kubesphere@<tag>:pkg/controller/cluster/unjoin.go)."""
    member, host = env(names.ENV_MEMBER), env(names.ENV_HOST)
    ks_version = env(names.ENV_KS_VERSION)
    _, poll, progress = _timing()
    timeout = float(env(names.ENV_UNJOIN_TIMEOUT, "300"))
    force = os.environ.get(names.ENV_FORCE_UNJOIN, "") in ("1", "true")
    kube = _kube(names.ENV_HOST_KUBECONFIG, f"host '{host}'")
    _restore_saved_webhooks(kube, host)
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
        log(f"WARNING: KSLAB_FORCE_UNJOIN set: removing Cluster '{member}' on '{host}' without its controller")
        _remove_cluster_object(kube, member, host, ks_version, wait_seconds=0, delete=False)
    else:
        blocked = (" On v3.4 the Cluster webhook also denies removing the finalizer while the member is "
                   "unreachable (kubesphere#6154).") if versions.KUBESPHERE_RELEASES[ks_version].cluster_webhook \
            else ""
        fail(f"Cluster '{member}' on host '{host}' still has its finalizer after {timeout:.0f}s (is the member "
             f"reachable, and is ks-controller-manager running on '{host}'?).{blocked} Fix: bring the member back "
             "and retry, or run `KSLAB_FORCE_UNJOIN=1 pulumi destroy` to remove it without the controller (see "
             "README 'Destroy').")


# --- developer workspaces (kslab/render/devworkspace.py) -------------------------------------------

def _address_for(cluster_host: str) -> str:
    """The address of this machine that the cluster reaches it at: the source address of a route to its API
    server's host (a kind node's container IP: the host's address on that Docker network). Endpoints may not
    hold a loopback address, so an API server on loopback gets the machine's address on its default route."""
    import ipaddress
    import socket

    def source_to(host: str) -> str | None:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect((host, 9))  # no packet is sent: this only picks the route
                return s.getsockname()[0]
        except OSError:
            return None
    for target in (cluster_host, "1.1.1.1"):
        found = source_to(target) if target else None
        if found and not ipaddress.ip_address(found).is_loopback:
            return found
    fail("no address of this machine that the cluster can reach (no non-loopback route). Fix: run the lab on "
         "a machine with a network interface")


def _usual_files(component: str) -> tuple[str, ...]:
    """The files a workspace of this component holds (what a marker written before markers listed files means)."""
    placeholders = {k: "" for k in devworkspace.component(component).cert_keys}
    return tuple(devworkspace.files(component, "", "", "", placeholders))


def _write_files(directory: str, written: dict[str, tuple[str, int]], marker: str, component: str) -> None:
    """Each file written whole at its mode, through no link, with the marker recording them
    (kslab/steps/workspace_fs.py)."""
    try:
        workspace_fs.write(directory, written, marker, _usual_files(component))
    except workspace_fs.WorkspaceError as error:
        fail(str(error))


def _check_workspace_folder(directory: str, marker: str, component: str) -> None:
    """A folder kslab may write into: the user's own, writable by no one else, and absent, empty, or one it made
    for this same workspace."""
    try:
        exists = workspace_fs.check_owner(directory)
        if exists and os.listdir(directory):
            record = workspace_fs.read_record(directory, _usual_files(component))
            if record is None:
                fail(f"workspace folder {directory} already holds files kslab did not write. Fix: choose an empty "
                     "or new dir, so that giving the component back can never remove your files")
            if record.identity != marker:
                fail(f"workspace folder {directory} belongs to another workspace ({record.identity.strip()}). "
                     "Fix: give each workspace its own dir")
    except workspace_fs.WorkspaceError as error:
        fail(str(error))


def _give_back(kube, c, ns: str) -> str | None:
    """Restore what the takeover saved on the objects (replicas, selector, endpoints); returns the replicas given
    back, or None if nothing was taken over. A Service that had a selector gets it back and its controllers
    fill the endpoints again; one without (endpoints kept by hand) gets its saved endpoints back."""
    service = kube.service(c.name, ns)
    saved_service = (service.metadata.annotations or {}).get(devworkspace.SAVED_SERVICE_ANNOTATION) \
        if service is not None else None
    if saved_service is not None:
        saved = json.loads(saved_service)
        if saved["selector"]:
            kube.delete_endpoints(c.name, ns)
            kube.json_patch_service(c.name, ns, [{"op": "add", "path": "/spec/selector", "value": saved["selector"]}])
        elif saved["subsets"]:
            kube.put_endpoints(c.name, ns, saved["subsets"])
        kube.patch_service(c.name, ns, {"metadata": {"annotations": {devworkspace.SAVED_SERVICE_ANNOTATION: None}}})
    deployment = kube.deployment(c.name, ns)
    replicas = (deployment.metadata.annotations or {}).get(devworkspace.SAVED_REPLICAS_ANNOTATION) \
        if deployment is not None else None
    if replicas is not None:
        kube.patch_deployment(c.name, ns, {"metadata": {"annotations": {devworkspace.SAVED_REPLICAS_ANNOTATION: None}},
                                           "spec": {"replicas": int(replicas)}})
    return replicas


def step_dev_up() -> None:
    """Take a component over for local development: write the workspace, scale the Deployment to 0 (its
    replicas saved on it), and point the Service at this machine (its selector and endpoints saved on it).
    Everything is read and checked before the first change; a failure after it gives the component back."""
    name, version = env(names.ENV_CLUSTER), env(names.ENV_KS_VERSION)
    c = devworkspace.component(env(names.ENV_DEV_COMPONENT))
    directory = env(names.ENV_DEV_DIR)
    kubeconfig = env(names.ENV_KUBECONFIG)
    marker = devworkspace.marker(name, c.name)
    kube = _kube(names.ENV_KUBECONFIG, f"cluster '{name}'")
    ns = devworkspace.NAMESPACE
    config_yaml = kube.kubesphere_yaml()
    deployment = kube.deployment(c.name, ns)
    service = kube.service(c.name, ns)
    certs = kube.secret_data(c.cert_secret, ns) if c.cert_secret else {}
    missing = [what for what, found in ((f"ConfigMap {devworkspace.CONFIG_MAP}", config_yaml),
                                        (f"Deployment {c.name}", deployment), (f"Service {c.name}", service),
                                        (f"Secret {c.cert_secret}", certs if c.cert_secret else True)) if not found]
    if missing:
        fail(f"cluster '{name}' has no {', '.join(missing)} in {ns}: KubeSphere {version} is not fully installed "
             "there. Fix: wait for the install (pulumi up), then run up again")
    absent = [k for k in c.cert_keys if k not in certs]
    if absent:
        fail(f"Secret {c.cert_secret} on '{name}' lacks {', '.join(absent)}. Fix: reinstall ks-core")
    _check_workspace_folder(directory, marker, c.name)
    address = _address_for(env(names.ENV_DEV_CLUSTER_ADDRESS))
    subsets_before = kube.endpoint_subsets(c.name, ns)
    _write_files(directory, devworkspace.files(c.name, directory, config_yaml, kubeconfig, certs), marker, c.name)

    annotations = deployment.metadata.annotations or {}
    saved = annotations.get(devworkspace.SAVED_REPLICAS_ANNOTATION)
    try:
        if saved is None:  # the first up: what to give back, recorded before anything changes
            saved = str(deployment.spec.replicas if deployment.spec.replicas is not None else 1)
            kube.patch_deployment(c.name, ns, {"metadata": {"annotations": {
                devworkspace.SAVED_REPLICAS_ANNOTATION: saved}}})
        if devworkspace.SAVED_SERVICE_ANNOTATION not in (service.metadata.annotations or {}):
            kube.patch_service(c.name, ns, {"metadata": {"annotations": {
                devworkspace.SAVED_SERVICE_ANNOTATION: devworkspace.saved_service(service.spec.selector,
                                                                                  subsets_before)}}})
        if deployment.spec.replicas != 0:
            kube.patch_deployment(c.name, ns, {"spec": {"replicas": 0}})
        if service.spec.selector:
            kube.patch_service(c.name, ns, {"spec": {"selector": None}})
            # The EndpointSlice controller leaves its slices behind for a Service without a selector, and
            # kube-proxy reads slices: remove them (the mirroring controller makes ours from the Endpoints).
            kube.delete_controller_endpoint_slices(c.name, ns)
        wanted = [{"addresses": [{"ip": address}], "ports": [{"port": c.target_port, "protocol": "TCP"}]}]
        if kube.endpoint_subsets(c.name, ns) != wanted:
            kube.put_endpoints(c.name, ns, wanted)
    except (ApiFailure, Transient) as exc:
        log(f"taking {c.name} over on '{name}' failed ({exc}); giving it back")
        _give_back(kube, c, ns)
        raise
    log(f"workspace for {c.name} on '{name}' in {directory}: Deployment scaled to 0 (was {saved}), Service "
        f"{c.name} -> {address}:{c.target_port}")
    print(json.dumps({"dir": directory, "savedReplicas": int(saved), "address": f"{address}:{c.target_port}"}))


def step_dev_down() -> None:
    """Give the component back exactly as it was, from what up saved on the objects; then remove the files
    kslab wrote (only those, and only in a folder whose marker names this workspace) unless they are kept.
    Idempotent, and needs neither the folder nor the local process. A cluster that is gone has nothing to
    give back."""
    name = env(names.ENV_CLUSTER)
    c = devworkspace.component(env(names.ENV_DEV_COMPONENT))
    directory = env(names.ENV_DEV_DIR)
    kube = _kube(names.ENV_KUBECONFIG, f"cluster '{name}'")
    try:
        replicas = _give_back(kube, c, devworkspace.NAMESPACE)
    except Transient as exc:
        # Only a cluster that is really gone has nothing to give back; a 503, a 429 or a timeout is not that.
        gone = _cluster_gone(name, env(names.ENV_KUBECONFIG))
        if gone is None:
            fail(f"cannot give {c.name} back on cluster '{name}': {exc}. The workspace is kept, and the next up or "
                 f"destroy tries again. If '{name}' is gone for good, say so: {names.ENV_DEV_GONE}={name} with that "
                 "command (kslab then forgets the workspace, giving nothing back)")
        log(f"cluster '{name}' is gone ({gone}): nothing to give back")
        replicas = None
    if env(names.ENV_DEV_KEEP_FILES, "false") != "true":
        _remove_workspace_files(directory, devworkspace.marker(name, c.name), c.name)
    log(f"{c.name} on '{name}' given back" + (f" ({replicas} replica(s))" if replicas is not None else
                                              " (nothing was taken over)"))


def _cluster_gone(name: str, kubeconfig: str) -> str | None:
    """How we know cluster `name` is gone, or None when it is not known to be. A kind cluster (its kubeconfig's
    context is kind's `kind-<name>`) is gone when kind no longer lists it; any cluster is, when the user says so."""
    if os.environ.get(names.ENV_DEV_GONE) == name:
        return f"{names.ENV_DEV_GONE}={name}"
    try:
        context = (yaml.safe_load(kubeconfig) or {}).get("current-context")
    except yaml.YAMLError:
        return None
    if context != f"kind-{name}":
        return None
    listed = _kind("get", "clusters", timeout=60)
    if listed.returncode == 0 and name not in listed.stdout.split():
        return "kind no longer lists it"
    return None


def _remove_workspace_files(directory: str, marker: str, component: str) -> None:
    """Only what kslab wrote (as its marker records) and what run.sh builds, and the folder only if kslab made
    it; nothing in a folder that is a link, another user's, or another workspace's."""
    try:
        workspace_fs.remove(directory, marker, _usual_files(component), built=(f"bin/{component}",))
    except (workspace_fs.WorkspaceError, OSError) as error:
        # The component is already given back: the folder is the user's to look at, never a reason to fail.
        log(f"WARNING: left the workspace folder {directory} as it is: {error}")


STEPS = {
    "preflight": step_preflight,
    "image-check": step_image_check,
    "lab-images": step_lab_images,
    "lab-images-read": step_lab_images_read,
    "kind-create": step_kind_create,
    "kind-delete": step_kind_delete,
    "kind-read": step_kind_read,
    "gen-secret": step_gen_secret,
    "role-guard": step_role_guard,
    "install-baseline": step_install_baseline,
    "wait-install": step_wait_install,
    "read-jwt": step_read_jwt,
    "join-check": step_join_check,
    "wait-join": step_wait_join,
    "unjoin": step_unjoin,
    "dev-up": step_dev_up,
    "dev-down": step_dev_down,
}


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] not in STEPS:
        fail("usage: python -m kslab.steps {" + ",".join(STEPS) + "}")
    _fatal_api_errors(STEPS[argv[0]])()
