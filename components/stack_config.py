"""Reading the `kslab:*` stack config into the raw mapping `spec.parse_lab` validates."""
from __future__ import annotations

import json
import os

import pulumi

from . import kubeconfig as kc
from .spec import ClusterSpec, LabConfigError, LabSpec, Problem

STRUCTURED_KEYS = ("clusters", "joins", "components", "allowMultipleHosts", "installTimeoutSeconds",
                   "joinTimeoutSeconds", "unjoinTimeoutSeconds")
STRING_KEYS = ("validationMode", "jwtSecretMode", "kubesphereVersion", "nodeImage", "registry", "kindWait")


def read_raw(config: pulumi.Config) -> dict:
    raw: dict = {}
    for key in STRUCTURED_KEYS:
        text = config.get(key)
        if text is None:
            continue
        try:
            raw[key] = json.loads(text)
        except json.JSONDecodeError:
            raw[key] = text  # a bare string; validation names the field
    for key in STRING_KEYS:
        value = config.get(key)
        if value is not None:
            raw[key] = value
    return raw


def existing_kubeconfigs(config: pulumi.Config, project_dir: str, lab: LabSpec) -> dict[str, pulumi.Output[str]]:
    """Each existing cluster's kubeconfig as a secret Output, or LabConfigError naming the field."""
    def source(cluster: ClusterSpec) -> pulumi.Output[str]:
        if cluster.kubeconfig_secret:
            value = config.get_secret(cluster.kubeconfig_secret)
            if value is None:
                raise LabConfigError([Problem(
                    f"kslab:clusters[{cluster.name}].kubeconfigSecret", cluster.kubeconfig_secret,
                    f"names config key kslab:{cluster.kubeconfig_secret}, which is not set",
                    f"pulumi config set --secret {cluster.kubeconfig_secret} \"$(cat kubeconfig)\"")])
            return value
        field = f"kslab:clusters[{cluster.name}].kubeconfigPath"
        path = os.path.join(project_dir, os.path.expanduser(os.path.expandvars(cluster.kubeconfig_path)))
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError as exc:
            raise LabConfigError([Problem(field, cluster.kubeconfig_path, f"cannot be read ({exc.strerror})",
                                          "point it at the cluster's kubeconfig file")]) from None
        try:
            kc.server_of(text)
        except kc.KubeconfigError as exc:
            raise LabConfigError([Problem(field, cluster.kubeconfig_path, str(exc),
                                          "use the kubeconfig `kubectl config view --raw --minify` prints")]) from None
        return pulumi.Output.secret(text)

    return {c.name: source(c) for c in lab.clusters if not c.is_kind}
