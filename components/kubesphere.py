"""KubeSphere 3.x on one cluster: the multicluster role, and the ks-installer install."""
from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.step_resources import apply_object, ops_step, secret
from kslab.model import contract as names
from kslab.model import images, requests
from kslab.model.spec import ClusterSpec
from kslab.render import manifests as render
from kslab.render.lines import line_for


@dataclass
class MulticlusterRoleArgs:
    spec: ClusterSpec
    kubeconfig: pulumi.Output[str]
    cluster: pulumi.Resource


class MulticlusterRole(pulumi.ComponentResource):
    """The cc's `spec.multicluster` (role, hostClusterName) and the guard that keeps it honest.

    ks-installer never undoes a role, so a role change on a cluster that already has one is
    refused at apply time, before the cc is touched, with the way to rebuild deliberately.
    """

    def __init__(self, name: str, args: MulticlusterRoleArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{names.TYPE_PREFIX}:MulticlusterRole", name, None, opts)
        spec = args.spec
        self.role = spec.role
        self.host_cluster_name = spec.host_cluster_name
        self.multicluster = line_for(spec.kubesphere_version).role_spec(spec)
        self.guard = ops_step(
            f"{name}-guard", "role-guard",
            requests.ClusterAccess(cluster=spec.name, role=spec.role, kubeconfig=args.kubeconfig),
            pulumi.ResourceOptions(parent=self, depends_on=[args.cluster]),
            triggers=[spec.role],  # a new role re-runs the guard (replacement), so it is checked
        )
        self.register_outputs({"role": spec.role, "hostClusterName": spec.host_cluster_name or ""})


@dataclass
class KubeSphereInstallArgs:
    spec: ClusterSpec
    provider: k8s.Provider
    kubeconfig: pulumi.Output[str]
    cluster: pulumi.Resource
    role: MulticlusterRole
    # "" lets the installer choose a random secret (a host in copy mode).
    jwt_secret: pulumi.Input[str]
    jwt_source: str
    naming: images.Naming  # ks-installer's image naming inputs (local_registry, namespace_override, zone)
    timeout_seconds: int
    # The image check every install waits for (None: no cluster of the lab is checked).
    image_check: pulumi.Resource | None = None


class KubeSphereInstall(pulumi.ComponentResource):
    """ks-installer objects + the `ks-installer` cc, then a wait on the cc's real status."""

    def __init__(self, name: str, args: KubeSphereInstallArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(f"{names.TYPE_PREFIX}:KubeSphereInstall", name, None, opts)
        spec = args.spec
        # Nothing is applied before every planned image was found (an existing cluster has no kind step to wait).
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider,
                                          depends_on=[args.cluster] + ([args.image_check] if args.image_check else []))
        self.objects: dict[str, pulumi.CustomResource] = {}
        line = line_for(spec.kubesphere_version)
        for obj in line.install_objects(spec, args.naming):
            prior = list(self.objects.values())[:2]  # CRD and namespace first
            self.objects[obj["kind"]] = apply_object(
                f"{name}-{obj['kind'].lower()}", obj,
                pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=prior)))

        jwt = pulumi.Output.from_input(args.jwt_secret)
        # ks-installer runs on any change of the cc's spec (its hook watches `.spec`), so the spec and the
        # jwtSecret decide when kslab waits again; metadata changes start no run and must start no wait.
        plain_spec = line.install_request_spec(spec, args.naming)
        spec_change = jwt.apply(lambda secret: render.spec_fingerprint({"spec": plain_spec, "jwt": secret}))
        access = requests.ClusterAccess(cluster=spec.name, role=spec.role, kubeconfig=args.kubeconfig)
        # Read before the cc changes: the last run's start, so the wait knows a newer run from an old one.
        self.baseline = ops_step(f"{name}-baseline", "install-baseline", access,
                                 pulumi.ResourceOptions(parent=self, depends_on=[args.cluster]),
                                 triggers=[spec_change], rerun_on_change=False)
        # Only the jwtSecret leaf is secret (and maybe unknown in preview): role and components stay visible.
        cc = line.install_request(spec, secret(jwt), args.naming, args.jwt_source)
        self.cluster_configuration = k8s.apiextensions.CustomResource(
            f"{name}-cc",
            api_version=cc["apiVersion"], kind=cc["kind"], metadata=cc["metadata"], spec=cc["spec"],
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(
                depends_on=[self.objects["CustomResourceDefinition"], self.objects["Namespace"], args.role.guard,
                            self.baseline])),
        )
        wait = requests.InstallWait(**vars(access), ks_version=spec.kubesphere_version, timeout=args.timeout_seconds,
                                    wait_keys=line.wait_keys(spec), baseline=self.baseline.stdout)
        # A cc recreated out of band (new uid, e.g. a cluster rebuilt behind the lab's back) runs the
        # installer again, so the wait runs again too.
        metadata = self.cluster_configuration.metadata  # type: ignore[attr-defined]  # a CR declares no fields
        cc_uid = metadata.apply(lambda m: (m or {}).get("uid", ""))
        fingerprint = pulumi.Output.all(spec_change, cc_uid).apply(
            lambda v: render.spec_fingerprint({"change": v[0], "uid": v[1]}))
        wait_opts = pulumi.ResourceOptions(parent=self, depends_on=[self.cluster_configuration,
                                                                    self.objects["Deployment"]])
        self.wait = ops_step(f"{name}-wait", "wait-install", wait, wait_opts, triggers=[fingerprint],
                             rerun_on_change=False)
        self.read_jwt = ops_step(f"{name}-jwt", "read-jwt", access,
                                 pulumi.ResourceOptions(parent=self, depends_on=[self.wait]),
                                 secret_stdout=True, triggers=[fingerprint])
        self.version = pulumi.Output.from_input(spec.kubesphere_version)
        self.state = self.wait.stdout.apply(lambda out: json.loads(out)["state"])
        self.jwt_secret = secret(self.read_jwt.stdout.apply(str.strip))
        self.register_outputs({"version": self.version, "state": self.state, "jwtSecret": self.jwt_secret})
