"""Cluster backends: a kind cluster kslab creates, or an existing cluster you point it at.

Both give the layers above the same thing: kubeconfigs (secret), a provider, the
address a host uses, and the console URL.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.step_resources import ops_step
from kslab.model import contract as names
from kslab.model import kubeconfig as kc
from kslab.model import requests
from kslab.model.image_sources import LabRegistry
from kslab.model.spec import ClusterSpec
from kslab.render import manifests as render


def node_image_of(spec: ClusterSpec) -> str:
    """A kind cluster's node image: always set once the model validated it (its default is the model's)."""
    if spec.node_image is None:
        raise ValueError(f"internal: kind cluster '{spec.name}' has no node image")
    return spec.node_image


@dataclass
class KindClusterArgs:
    spec: ClusterSpec
    kind_wait: str
    # What must succeed before the cluster is created: the machine preflight, the image check, the lab images.
    wait_for: Sequence[pulumi.Resource]
    # The lab registry the nodes pull every KubeSphere image from (kslab:imageSources), or None.
    lab_registry: LabRegistry | None = None


@dataclass
class ExistingClusterArgs:
    spec: ClusterSpec
    kubeconfig: pulumi.Output[str]  # already a secret


class ClusterBase(pulumi.ComponentResource):
    spec: ClusterSpec
    kubeconfig: pulumi.Output[str]
    internal_kubeconfig: pulumi.Output[str]
    address: pulumi.Output[str]
    console_url: pulumi.Output[str]
    provider: k8s.Provider

    def _finish(self, name: str) -> None:
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self.kubeconfig,
            # Let destroy/refresh forget the objects of a cluster that is already gone. (Objects left
            # by an interrupted run or a hand install are adopted: pulumi-kubernetes 4.25 creates
            # with server-side apply, which upserts.)
            delete_unreachable=True,
            opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({
            "kubeconfig": self.kubeconfig,
            "internalKubeconfig": self.internal_kubeconfig,
            "address": self.address,
            "consoleUrl": self.console_url,
        })


class KindCluster(ClusterBase):
    """`kind create cluster` with our rendered config; `kind delete cluster` on destroy."""

    def __init__(self, name: str, args: KindClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{names.TYPE_PREFIX}:KindCluster", name, None, opts)
        spec = self.spec = args.spec
        pulls_from_lab = args.lab_registry is not None
        config_yaml = render.kind_config_yaml(spec, pulls_from_lab)
        request = requests.KindCluster(cluster=spec.name, node_image=node_image_of(spec), kind_config=config_yaml,
                                       kind_wait=args.kind_wait, lab_registry=args.lab_registry)
        self.create = ops_step(
            f"{name}-kind", "kind-create", request,
            pulumi.ResourceOptions(parent=self, depends_on=list(args.wait_for) or None),
            delete_step="kind-delete", read_step="kind-read", secret_stdout=True, delete_before_replace=True,
            # A kind cluster cannot be changed in place: a new config means a new cluster.
            triggers=[spec.name, render.spec_fingerprint(render.kind_config(spec, pulls_from_lab))],
        )
        result = self.create.stdout.apply(json.loads)
        self.kubeconfig = pulumi.Output.secret(result.apply(lambda r: r["kubeconfig"]))
        self.internal_kubeconfig = pulumi.Output.secret(result.apply(lambda r: r["internalKubeconfig"]))
        self.address = pulumi.Output.unsecret(result.apply(lambda r: r["containerIp"]))
        self.console_url = pulumi.Output.from_input(spec.declared_console_url or "")  # always set for kind
        self._finish(name)


class ExistingCluster(ClusterBase):
    """A cluster the user already has; kslab never creates or deletes it."""

    def __init__(self, name: str, args: ExistingClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{names.TYPE_PREFIX}:ExistingCluster", name, None, opts)
        spec = self.spec = args.spec
        self.kubeconfig = pulumi.Output.secret(args.kubeconfig)
        internal_server = spec.internal_server
        if internal_server:
            internal = args.kubeconfig.apply(lambda text: kc.rewrite_server(text, internal_server))
        else:
            internal = args.kubeconfig
        self.internal_kubeconfig = pulumi.Output.secret(internal)
        server = pulumi.Output.unsecret(internal.apply(kc.server_of))
        self.address = server.apply(kc.server_host)
        self.console_url = (pulumi.Output.from_input(spec.console_url) if spec.console_url
                            else self.address.apply(lambda h: f"http://{h}:{spec.console_port}"))
        self._finish(name)
