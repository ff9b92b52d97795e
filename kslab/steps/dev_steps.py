"""The developer workspace steps (`python -m kslab.steps <step>`, kslab/steps/dispatch.py; what a workspace
holds: kslab/render/devworkspace.py): take a component over for local development, and give it back."""
from __future__ import annotations

import json
import os

import yaml

from kslab.model import contract as names
from kslab.model import requests
from kslab.render import devworkspace
from kslab.steps import common, workspace_fs
from kslab.steps.common import fail, log
from kslab.steps.errors import ApiFailure, Transient


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
    asked = common.request(requests.DevWorkspace)
    name, version, directory, kubeconfig = asked.cluster, asked.ks_version, asked.directory, asked.kubeconfig
    c = devworkspace.component(asked.component)
    marker = devworkspace.marker(name, c.name)
    kube = common.kube(names.ENV_KUBECONFIG, f"cluster '{name}'")
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
    address = _address_for(asked.cluster_address)
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
    asked = common.request(requests.DevWorkspace)
    name, directory = asked.cluster, asked.directory
    c = devworkspace.component(asked.component)
    kube = common.kube(names.ENV_KUBECONFIG, f"cluster '{name}'")
    try:
        replicas = _give_back(kube, c, devworkspace.NAMESPACE)
    except Transient as exc:
        # Only a cluster that is really gone has nothing to give back; a 503, a 429 or a timeout is not that.
        gone = _cluster_gone(name, asked.kubeconfig)
        if gone is None:
            fail(f"cannot give {c.name} back on cluster '{name}': {exc}. The workspace is kept, and the next up or "
                 f"destroy tries again. If '{name}' is gone for good, say so: {names.ENV_DEV_GONE}={name} with that "
                 "command (kslab then forgets the workspace, giving nothing back)")
        log(f"cluster '{name}' is gone ({gone}): nothing to give back")
        replicas = None
    if not asked.keep_files:
        _remove_workspace_files(directory, devworkspace.marker(name, c.name), c.name)
    log(f"{c.name} on '{name}' given back" + (f" ({replicas} replica(s))" if replicas is not None else
                                              " (nothing was taken over)"))


def _cluster_gone(name: str, kubeconfig: str) -> str | None:
    """How we know cluster `name` is gone, or None when it is not known to be. A kind cluster (its kubeconfig's
    context is kind's `kind-<name>`) is gone when kind no longer lists it; any cluster is, when the user says so."""
    if common.knobs().dev_gone == name:
        return f"{names.ENV_DEV_GONE}={name}"
    try:
        context = (yaml.safe_load(kubeconfig) or {}).get("current-context")
    except yaml.YAMLError:
        return None
    if context != f"kind-{name}":
        return None
    listed = common.kind("get", "clusters", timeout=60)
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
