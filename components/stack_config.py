"""Reading the `kslab:*` stack config into the raw mapping `spec.parse_lab` validates."""
from __future__ import annotations

import json
import os

import pulumi

from . import kubeconfig as kc
from .spec import LabConfigError, LabSpec, Problem

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


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def existing_kubeconfigs(config: pulumi.Config, project_dir: str, lab: LabSpec) -> dict[str, pulumi.Output[str]]:
    """Each existing cluster's kubeconfig, self-contained (kubeconfig.flatten), as a secret Output.
    Every problem of every cluster is reported together in one LabConfigError, before anything is registered."""
    members = {j.member for j in lab.joins}
    problems: list[Problem] = []
    found: dict[str, pulumi.Output[str]] = {}
    for cluster in (c for c in lab.clusters if not c.is_kind):
        if cluster.kubeconfig_secret:
            field, value = f"kslab:clusters[{cluster.name}].kubeconfigSecret", cluster.kubeconfig_secret
            text = config.get(cluster.kubeconfig_secret)  # decrypted in memory only; never shown
            base_dir = None
            if text is None:
                problems.append(Problem(field, value, f"names config key kslab:{value}, which is not set",
                                        f"pulumi config set --secret {value} \"$(cat kubeconfig)\""))
                continue
        else:
            field, value = f"kslab:clusters[{cluster.name}].kubeconfigPath", cluster.kubeconfig_path
            path = os.path.join(project_dir, os.path.expanduser(os.path.expandvars(cluster.kubeconfig_path)))
            base_dir = os.path.dirname(path)
            try:
                text = _read_bytes(path).decode()
            except OSError as exc:
                problems.append(Problem(field, value, f"cannot be read ({exc.strerror})",
                                        "point it at the cluster's kubeconfig file"))
                continue
            except UnicodeDecodeError:
                problems.append(Problem(field, value, "is not a text file", "point it at the cluster's kubeconfig"))
                continue
        try:
            kc.server_of(text)
            text = kc.flatten(text, base_dir, _read_bytes, joinable=cluster.name in members)
        except kc.KubeconfigError as exc:
            problems.append(Problem(field, value, str(exc),
                                    "use the kubeconfig `kubectl config view --flatten --raw --minify` prints"))
            continue
        found[cluster.name] = pulumi.Output.secret(text)
    if problems:
        raise LabConfigError(problems)
    return found
