"""The kind steps (`python -m kslab.steps <step>`, kslab/steps/dispatch.py): the machine's preflight before any
cluster exists, and a kind cluster's create (or adoption), refresh and delete. What create and refresh print is
the cluster's kubeconfigs and control-plane IP, which the resource stores as a secret."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from kslab.model import contract as names
from kslab.model import kubeconfig as kc
from kslab.model import preflight_rules, requests
from kslab.model.image_sources import LabRegistry
from kslab.steps import common, kind_marks
from kslab.steps.common import fail, log
from kslab.steps.scratch import private_dir


def step_preflight() -> None:
    plan = common.request(requests.Preflight).plan
    facts = preflight_rules.probe(plan.node_images)
    verdict = preflight_rules.evaluate(facts, preflight_rules.Plan(plan.node_images, plan.memory_estimate_mib))
    if facts.docker_ok and facts.kind_version:
        verdict.errors.extend(kind_marks.preflight_problems(plan.kind_clusters))
    for warning in verdict.warnings:
        log(f"WARNING: {warning}")
    if verdict.errors:
        fail("preflight failed, no cluster was created:\n  - " + "\n  - ".join(verdict.errors))
    print(json.dumps({"kind": facts.kind_version, "kubectl": facts.kubectl_version,
                      "docker": facts.docker_detail, "warnings": verdict.warnings}))


def _container_ip(name: str) -> str:
    fmt = "{{ .NetworkSettings.Networks.kind.IPAddress }}"
    out = subprocess.run(["docker", "inspect", "--format", fmt, f"{name}-control-plane"],
                         capture_output=True, text=True, timeout=30)
    ip = out.stdout.strip()
    if out.returncode != 0 or not ip:
        fail(f"cluster '{name}': cannot read the control-plane container IP ({out.stderr.strip()[:200]})")
    return ip


def _kind_create_env(lab: LabRegistry | None) -> dict[str, str]:
    """kind hands the proxy variables to every node's containerd (kind: its proxy settings, with NO_PROXY for the
    node network); the lab registry is named by its container name, which that list lacks, so it is added."""
    environment = dict(os.environ)
    if lab is not None:
        name = lab.name
        for key in ("NO_PROXY", "no_proxy"):
            if any(environment.get(v) for v in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")):
                environment[key] = ",".join(filter(None, (environment.get(key), name)))
    return environment


NODE_CA = "/etc/kubernetes/pki/ca.crt"  # kubeadm's cluster CA on a control-plane node


def _state_match(name: str) -> bool | None:
    """Whether the cluster now under this name is the one the stack's state holds, by its certificate authority (read
    from the node container, which works on a stopped one too) against the one the stored kubeconfig trusts; None when
    nothing is stored (a first create, or a step from before the check)."""
    stored = os.environ.get(names.ENV_STATE_CA)
    if not stored:
        return None
    live = kc.certificate_fingerprint(kind_marks.node_file(f"{name}-control-plane", NODE_CA) or b"")
    return live == stored  # a CA that cannot be read proves nothing of the lab's: not the state's cluster


def _not_the_state_cluster(name: str, lab: str | None) -> str | None:
    """Why the cluster of this name is not the lab's cluster the stack's state holds, or None if it is (or may be).

    Its own CA proves it the state's cluster, even under another lab's mark (the checkout moved, which changes the lab
    id). A CA that differs proves it another, unless it carries this lab's mark (kslab made it for this lab). With no
    CA to compare, an unmarked cluster is taken for one an earlier kslab made, and another lab's mark refuses it."""
    match = _state_match(name)
    if match is True:  # its own CA: no need to read the marks of every node
        return None
    found = kind_marks.owner(name)
    if found.is_of(lab):
        return None
    if match is False:
        return (f"the kind cluster '{name}' is not the one this lab made: it carries no {names.LAB_LABEL} mark of this "
                f"lab, and its certificate authority ({NODE_CA} on {name}-control-plane) is not the one in the stack's "
                "state (this lab's cluster was deleted, and another was made under its name)")
    others = found.other_labs(lab)
    if others:
        return (f"the kind cluster '{name}' is another kslab lab's: its nodes carry {names.LAB_LABEL}="
                f"{', '.join(others)} (another stack, or this stack in another checkout)")
    return None


def _adopt(name: str, image: str, lab: str | None) -> None:
    """An existing cluster of this name is taken only if kslab created it for this lab (its nodes carry this lab's
    mark, kslab/steps/kind_marks.py), with the same node image, or, when the step runs again for a cluster in the
    stack's state, if it is that cluster (_not_the_state_cluster: an earlier kslab's, unmarked, keeps working)."""
    in_state = os.environ.get(names.ENV_IN_STATE) == "1"
    # A re-run of the create step (its settings changed) acts on the cluster the stack's state holds: the lab's own,
    # marked or, if an earlier kslab made it, not, or under an old lab id if the checkout moved.
    if in_state:
        why_not = _not_the_state_cluster(name, lab)
        if why_not:
            fail(f"{why_not}. kslab will not take it. Fix: `tools/lab.sh refresh <stack> --yes` makes this lab forget "
                 f"its old cluster; then rename the cluster in the stack file, or save what '{name}' holds and delete "
                 f"it yourself: `kind delete cluster --name {name}`.")
    else:
        found = kind_marks.owner(name)
        if not found.is_of(lab):
            fail(kind_marks.refusal(found, lab))
    running = subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", f"{name}-control-plane"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    if running and running != image and running.split("@")[0] != image.split("@")[0]:
        fail(f"this lab's kind cluster '{name}' already exists with image {running}, not {image}. kslab will not "
             f"adopt it. Fix: `kind delete cluster --name {name}` (after saving what it holds), or rename the "
             "cluster in the stack file.")
    log(f"cluster '{name}' already exists, made by kslab for this lab: adopting it, not creating another")


def step_kind_create() -> None:
    asked = common.request(requests.KindCluster)
    name, image, this_lab = asked.cluster, asked.node_image, kind_marks.this_lab()
    existing = common.kind("get", "clusters", timeout=60)
    if existing.returncode != 0:
        fail(f"`kind get clusters` failed: {existing.stderr.strip()[:300]}")
    if name in existing.stdout.split():
        _adopt(name, image, this_lab)
    else:
        log(f"creating kind cluster '{name}' ({image})")
        # kind writes (and first locks, with O_CREAT|O_EXCL on "<path>.lock") the kubeconfig it is given
        # (sigs.k8s.io/kind@v0.33.0:pkg/cluster/internal/kubeconfig/internal/kubeconfig/lock.go). A private
        # scratch directory keeps the user's ~/.kube/config untouched and works for any user; /dev/null
        # would need a /dev/null.lock, which only root may create. The lab's kubeconfig comes from
        # `kind get kubeconfig` below.
        with private_dir("kind") as scratch:
            config_path = os.path.join(scratch, "kind-config.yaml")
            with open(config_path, "w") as fh:
                # The lab's mark on every node (the program's kind config input stays as it was, so no existing
                # cluster is replaced); without a stack (a step of the dynamic provider) the cluster goes unmarked.
                config = asked.kind_config
                fh.write(kind_marks.labelled_config(config, this_lab) if this_lab else config)
            proc = subprocess.run(["kind", "create", "cluster", "--name", name, "--config", config_path,
                                   "--image", image, "--wait", asked.kind_wait,
                                   "--kubeconfig", os.path.join(scratch, "kubeconfig")],
                                  stdout=sys.stderr, timeout=1800, env=_kind_create_env(asked.lab_registry))
        if proc.returncode != 0:
            fail(f"`kind create cluster --name {name}` failed (exit {proc.returncode}); see the output above")
    lab = asked.lab_registry
    if lab is not None:
        from kslab.steps import lab_registry
        try:
            nodes = lab_registry.configure_nodes(lab, name)
        except lab_registry.RegistryError as error:
            fail(f"cluster '{name}': {error}")
        log(f"cluster '{name}': {len(nodes)} node(s) pull from the lab registry {lab.in_network}")
    _print_kind_access(name)


def _print_kind_access(name: str) -> None:
    """The cluster's kubeconfigs (the user's, and the host-facing one on the container IP) as the result."""
    raw = common.kind("get", "kubeconfig", "--name", name, timeout=60)
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
    name = common.request(requests.KindCluster).cluster
    existing = common.kind("get", "clusters", timeout=60)
    if existing.returncode != 0:
        fail(f"`kind get clusters` failed: {existing.stderr.strip()[:300]}")
    if name not in existing.stdout.split():
        log(f"kind cluster '{name}' is gone")
        sys.exit(names.GONE_EXIT)
    why_not = _not_the_state_cluster(name, kind_marks.this_lab())
    if why_not:  # this lab's cluster was deleted out of band, and the name now belongs to another
        log(f"kind cluster '{name}' is gone: {why_not}. This lab forgets it and leaves the other alone.")
        sys.exit(names.GONE_EXIT)
    _print_kind_access(name)


KIND_DELETE_ATTEMPTS = 3


def step_kind_delete() -> None:
    name = common.request(requests.KindCluster).cluster
    existing = common.kind("get", "clusters", timeout=60)
    if existing.returncode == 0 and name not in existing.stdout.split():
        log(f"cluster '{name}' is already gone")
        return
    # The cluster is in this stack's state. One that is provably not the state's (another lab's, or one made anew
    # under its name) is never deleted; an unmarked one with no CA to compare is one an earlier kslab made.
    why_not = _not_the_state_cluster(name, kind_marks.this_lab())
    if why_not:
        fail(f"kind cluster '{name}' is not deleted: {why_not}. This lab's cluster of that name is gone. Fix: "
             "`tools/lab.sh refresh <stack> --yes` makes this lab forget it, then destroy again; the other cluster "
             "stays as it is.")
    # As for create: kind edits (and locks) the kubeconfig it is given; kslab never added the cluster to
    # the user's kubeconfig, so a scratch one keeps theirs untouched.
    for attempt in range(1, KIND_DELETE_ATTEMPTS + 1):
        with private_dir("kind") as scratch:
            proc = common.kind("delete", "cluster", "--name", name,
                                "--kubeconfig", os.path.join(scratch, "kubeconfig"), timeout=600)
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
