"""Which kind clusters are this lab's own: the mark kslab leaves on the nodes of every kind cluster it creates, and
the checks that keep it from adopting or deleting a cluster someone else made.

The mark is the node label contract.LAB_LABEL=<lab id> (contract.lab_id: the stack and the checkout) that
kind-create adds to every node of the kind config it writes. kind renders a node's `labels`
(sigs.k8s.io/kind@v0.33.0: pkg/apis/config/v1alpha4/types.go, Node.Labels) into the kubelet's `node-labels` of
the kubeadm config (pkg/cluster/internal/kubeadm/config.go) and writes that config into every node as
/kind/kubeadm.conf (pkg/cluster/internal/create/actions/config/config.go, writeKubeadmConfig). kslab reads it from
the node container with `docker cp`: no API server is needed, and a stopped node can be read too.

Clusters made by kslab before the mark existed carry none. They keep working because a cluster already in the
stack's state never runs kind-create again (no adoption is involved); refresh reads it and destroy deletes it as
before. For a cluster in the state, the kind steps also compare its certificate authority with the one the stored
kubeconfig trusts (kind_steps._not_the_state_cluster): that tells the lab's cluster from another made under its
name, marked or not, running or stopped.
"""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass, field

import yaml

from kslab.model import contract as names
from kslab.steps import common

KUBEADM_CONFIG = "/kind/kubeadm.conf"
ROLE_LABEL = "io.x-k8s.kind.role"  # kind's label of a node container's role (pkg/cluster/internal/providers/docker)
LOAD_BALANCER_ROLE = "external-load-balancer"  # holds no kubeadm config
_MARK = re.compile(re.escape(names.LAB_LABEL) + r"=([a-z0-9-]+)")


def this_lab() -> str | None:
    """This step's lab id (the step plugin sets the stack from the resource's URN), or None when no stack was given
    (a step run by the dynamic provider of a stack from before the step plugin)."""
    stack = os.environ.get(names.ENV_STACK_NAME)
    return names.lab_id(stack) if stack else None


def labelled_config(config_yaml: str, lab: str) -> str:
    """The kind config with the lab's mark on every node (kind's default, one control-plane, when it names none)."""
    doc = yaml.safe_load(config_yaml) or {}
    nodes = doc.get("nodes") or [{"role": "control-plane"}]
    for node in nodes:
        node["labels"] = {**(node.get("labels") or {}), names.LAB_LABEL: lab}
    doc["nodes"] = nodes
    return str(yaml.safe_dump(doc, sort_keys=False))


@dataclass
class Owner:
    """What the nodes of an existing kind cluster say about who made it."""
    name: str
    labs: list[set[str]] = field(default_factory=list)  # per node: the lab ids its kubeadm config names

    def is_of(self, lab: str | None) -> bool:
        return lab is not None and bool(self.labs) and all(marks == {lab} for marks in self.labs)

    def other_labs(self, lab: str | None) -> list[str]:
        return sorted(set().union(*self.labs) - {lab}) if self.labs else []


def _docker(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, timeout=60)


def node_file(node: str, path: str) -> bytes | None:
    """A file of a node container, running or stopped, or None when it cannot be read (`docker cp` of one file writes a
    tar stream)."""
    proc = _docker("cp", f"{node}:{path}", "-")
    if proc.returncode != 0:
        return None
    try:
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as archive:
            member = archive.next()
            fh = archive.extractfile(member) if member is not None and member.isfile() else None
            return fh.read(1 << 20) if fh is not None else None
    except tarfile.TarError:
        return None


def _kubeadm_config(node: str) -> str:
    """The node's kubeadm config, or "" when it cannot be read."""
    return (node_file(node, KUBEADM_CONFIG) or b"").decode("utf-8", "replace")


def _nodes(name: str) -> list[tuple[str, str]]:
    """The cluster's node containers, running or not: (container, kind role)."""
    proc = _docker("ps", "-a", "--filter", f"label=io.x-k8s.kind.cluster={name}",
                   "--format", f'{{{{.Names}}}} {{{{.Label "{ROLE_LABEL}"}}}}')
    rows = [line.split() for line in proc.stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    return [(row[0], row[1] if len(row) > 1 else "") for row in rows]


def owner(name: str) -> Owner:
    return Owner(name, [set(_MARK.findall(_kubeadm_config(node))) for node, role in _nodes(name)
                        if role != LOAD_BALANCER_ROLE])


def maps_more_than_api_server(name: str) -> bool:
    """Whether the control-plane publishes a port besides the API server's. kslab has mapped the console's NodePort
    on every kind cluster it created, since its first version (kslab/render/manifests.py kind_config); a plain
    `kind create cluster` publishes the API server's port only (6443, kind@v0.33.0:
    pkg/cluster/internal/providers/common/constants.go, APIServerInternalPort)."""
    proc = _docker("inspect", "--format", "{{json .HostConfig.PortBindings}}", f"{name}-control-plane")
    try:
        bindings = json.loads(proc.stdout or b"null") if proc.returncode == 0 else None
    except ValueError:
        return False
    return isinstance(bindings, dict) and any(port != "6443/tcp" for port in bindings)


def refusal(found: Owner, lab: str | None) -> str:
    """Why kslab will not take the cluster `found.name`, and what the user can do."""
    others = found.other_labs(lab)
    if others:
        whose = (f"belongs to another kslab lab ({names.LAB_LABEL}={', '.join(others)} on its nodes: another stack, "
                 "or the same stack in another checkout)")
        own_fix = "destroy that lab, or save what the cluster holds and delete it yourself"
    else:
        whose = (f"was not created by kslab for this lab (its nodes carry no {names.LAB_LABEL} label of this lab: "
                 "it was made by hand, by another tool, or by kslab for a stack of another name)")
        own_fix = "if you no longer need it, save what it holds and delete it yourself"
    return (f"a kind cluster named '{found.name}' already exists and {whose}. kslab adopts only a kind cluster it "
            f"created itself, because destroy deletes the clusters of a lab. Fix: rename the cluster in the stack "
            f"file (its `name` under kslab:clusters), or {own_fix}: `kind delete cluster --name {found.name}`.")


def preflight_problems(planned: list[str]) -> list[str]:
    """Before anything of the lab exists: every planned kind cluster that exists and is not this lab's own. An
    unmarked cluster that publishes more than its API server may be one an earlier kslab made for this stack
    (still in the stack's state, so never adopted): it passes here, and kind-create refuses it if it is not."""
    existing = common.kind("get", "clusters", timeout=60)
    if existing.returncode != 0:
        return []  # kind's own trouble is the preflight's other rules' to report
    lab, problems = this_lab(), []
    for name in [n for n in planned if n in existing.stdout.split()]:
        found = owner(name)
        if found.is_of(lab):
            continue
        if not found.other_labs(lab) and maps_more_than_api_server(name):
            common.log(f"kind cluster '{name}' exists without kslab's mark: kept as one an earlier kslab made "
                       "(kind-create refuses it if it is not in this stack)")
            continue
        problems.append(refusal(found, lab))
    return problems
