"""Joining a member to a host: checks, the `Cluster` object, Ready, and a bounded unjoin."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.clusters import ClusterBase
from components.kubesphere import KubeSphereInstall
from components.step_resources import ops_step, secret
from kslab.model import contract as names
from kslab.model import requests
from kslab.render import manifests as render
from kslab.render.lines import line_for


@dataclass
class KubeFedJoinArgs:
    host: ClusterBase
    member: ClusterBase
    host_install: KubeSphereInstall
    member_install: KubeSphereInstall
    timeout_seconds: int
    unjoin_timeout_seconds: int
    allow_multiple_hosts: bool = False


class KubeFedJoin(pulumi.ComponentResource):
    """Creating `Cluster` directly skips the console's validation API, so the join runs the
    same checks first (role, jwtSecret, TLS, reachable server). On destroy the `Cluster` is
    deleted and its finalizer awaited, with a bound, before either cluster goes away."""

    def __init__(self, name: str, args: KubeFedJoinArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{names.TYPE_PREFIX}:KubeFedJoin", name, None, opts)
        member, host = args.member.spec, args.host.spec
        check = requests.JoinCheck(
            member=member.name, host=host.name, host_kubeconfig=args.host.kubeconfig,
            member_kubeconfig=args.member.kubeconfig, join_kubeconfig=args.member.internal_kubeconfig,
            allow_loopback=member.allow_loopback_join,
            ks_version=host.kubesphere_version)  # the console and controller that judge the join are the host's
        self.check = ops_step(
            f"{name}-check", "join-check", check,
            pulumi.ResourceOptions(parent=self, depends_on=[args.host_install, args.member_install]))
        # Only the kubeconfig leaf is secret (and unknown in preview); the rest stays inspectable.
        join_kubeconfig = secret(args.member.internal_kubeconfig.apply(render.b64))
        # The member's identity (kube-system UID) as the check saw it: a rebuilt member changes it, so the
        # Cluster object the check removed as stale is applied again.
        member_uid = self.check.stdout.apply(lambda out: json.loads(out).get("memberUid", ""))
        obj = line_for(host.kubesphere_version).member_object(
            member.name, host.name, join_kubeconfig, "kind" if member.is_kind else "existing",
            allow_multiple_hosts=args.allow_multiple_hosts,
            loopback_reason=member.loopback_reason if member.allow_loopback_join else None, member_uid=member_uid)
        self.cluster = k8s.apiextensions.CustomResource(
            f"{name}-cluster",
            api_version=obj["apiVersion"], kind=obj["kind"], metadata=obj["metadata"], spec=obj["spec"],
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.host.provider, depends_on=[self.check],
                # A new member identity means a new Cluster object: the old one cannot be updated (v3.4.1's
                # webhook) and the check has already removed it; same name, so delete first.
                replace_on_changes=[f'metadata.annotations["{names.MEMBER_UID_ANNOTATION}"]'],
                delete_before_replace=True),
        )
        # delete=unjoin runs before the Cluster resource's own delete, so destroy waits here
        # (bounded) for the finalizer while both clusters still exist.
        self.ready = ops_step(
            f"{name}-ready", "wait-join",
            requests.JoinReady(**vars(check), timeout=args.timeout_seconds,
                               unjoin_timeout=args.unjoin_timeout_seconds),
            pulumi.ResourceOptions(parent=self, depends_on=[self.cluster]),
            delete_step="unjoin",
        )
        self.host_name, self.member_name = host.name, member.name
        self.state = self.ready.stdout.apply(lambda out: json.loads(out)["state"])
        self.register_outputs({"host": host.name, "member": member.name, "state": self.state})
