"""Developing KubeSphere against the lab: what a workspace takes over and what it writes. Pure functions.

A workspace runs ks-controller-manager or ks-apiserver from source on the developer's machine in place of
the in-cluster Deployment. The facts are the ks-core chart's and the components' own, identical at
ks-installer v3.2.1 and v3.4.1 where not noted
(ks-installer@<tag>:roles/ks-core/ks-core/files/ks-core/templates/ks-controller-manager.yaml, ks-apiserver.yml,
webhook.yaml; kubesphere@<tag>:pkg/apiserver/config/config.go, cmd/controller-manager/app/options/options.go).
"""
from __future__ import annotations

import json
import os
import shlex
from dataclasses import dataclass
from typing import Any

from kslab.model import contract

NAMESPACE = "kubesphere-system"
# kubesphere-config, key kubesphere.yaml: the components look for "kubesphere" in /etc/kubesphere, then in
# the working directory ("only used for debugging"), so the workspace folder is the process's cwd.
CONFIG_MAP, CONFIG_KEY = "kubesphere-config", "kubesphere.yaml"
# Annotations on the taken-over objects: what to give back, kept on the cluster itself so that destroy
# restores it even when the workspace folder (or the state) is gone.
SAVED_REPLICAS_ANNOTATION = "kslab.io/dev-workspace-saved-replicas"
SAVED_SERVICE_ANNOTATION = "kslab.io/dev-workspace-saved-service"
SECRET_FILE_MODE, FILE_MODE, DIR_MODE = 0o600, 0o644, 0o700
# Names the workspace a folder belongs to and records what kslab wrote there (kslab/steps/workspace_fs.py).
MARKER = contract.WORKSPACE_MARKER


def marker(cluster: str, component: str) -> str:
    return f"cluster={cluster} component={component}\n"


@dataclass(frozen=True)
class Component:
    name: str  # Deployment and Service name
    service_port: int
    target_port: int  # the port the local process listens on
    main_package: str  # in a kubesphere checkout
    # Secret with the webhook's serving certificate, its keys, and the folder the flag names.
    cert_secret: str | None
    cert_keys: tuple[str, ...]
    args: tuple[str, ...]


COMPONENTS = {
    # Service 443 -> 8443 (the admission webhooks' port); Secret ks-controller-manager-webhook-cert
    # (genCA/genSignedCert in webhook.yaml). --webhook-cert-dir is a flag at both tags; leader election is
    # switched off so the local process never waits for the in-cluster lease.
    "ks-controller-manager": Component(
        "ks-controller-manager", 443, 8443, "./cmd/controller-manager",
        "ks-controller-manager-webhook-cert", ("ca.crt", "tls.crt", "tls.key"),
        ("--logtostderr=true", "--leader-elect=false", "--webhook-cert-dir=serving-certs")),
    # Service 80 -> 9090 (--insecure-port, default 9090).
    "ks-apiserver": Component(
        "ks-apiserver", 80, 9090, "./cmd/ks-apiserver", None, (), ("--logtostderr=true",)),
}


def component(name: str) -> Component:
    return COMPONENTS[name]


def files(name: str, directory: str, kubesphere_yaml: str, kubeconfig: str,
          certs: dict[str, str]) -> dict[str, tuple[str, int]]:
    """Every file of a workspace in `directory` (absolute): relative path -> (content, mode). Files with keys are
    0600. The process runs in the folder, so the flags' relative paths and kubesphere.yaml resolve there."""
    c = component(name)
    args = list(c.args) + ["--kubeconfig=kubeconfig"]
    out = {
        CONFIG_KEY: (kubesphere_yaml, SECRET_FILE_MODE),  # holds the jwtSecret
        "kubeconfig": (kubeconfig, SECRET_FILE_MODE),
    }
    for key in c.cert_keys:
        out[f"serving-certs/{key}"] = (certs[key], SECRET_FILE_MODE)
    out["launch.json"] = (launch_json(name, directory, args), FILE_MODE)
    out["run.sh"] = (run_script(name, args), 0o755)
    return out


def launch_json(name: str, directory: str, args: list[str]) -> str:
    """A VS Code launch configuration for the kubesphere checkout (copy it into its .vscode/): `program` in
    the checkout, `cwd` the workspace folder."""
    c = component(name)
    config = {"version": "0.2.0", "configurations": [{
        "name": f"{name} (kslab workspace)", "type": "go", "request": "launch", "mode": "auto",
        "program": "${workspaceFolder}/" + c.main_package.removeprefix("./"),
        "cwd": directory, "args": args,
    }]}
    return json.dumps(config, indent=2) + "\n"


def run_script(name: str, args: list[str]) -> str:
    """The same without VS Code: `./run.sh <kubesphere checkout>` builds the component there and runs it here."""
    c = component(name)
    return ("#!/bin/sh\n"
            f"# Builds {name} from a kubesphere checkout and runs it against the lab in this folder "
            "(written by kslab).\n"
            "set -e\n"
            'src=${1:?usage: ./run.sh <kubesphere checkout>}\n'
            'here=$(cd "$(dirname "$0")" && pwd)\n'
            f'go build -C "$src" -o "$here/bin/{c.name}" {shlex.quote(c.main_package)}\n'
            f'cd "$here" && exec "$here/bin/{c.name}" ' + " ".join(shlex.quote(a) for a in args) + "\n")


def saved_service(selector: dict[str, Any] | None, subsets: list[Any] | None) -> str:
    return json.dumps({"selector": selector, "subsets": subsets or []}, sort_keys=True)


def workspace_dir(project_dir: str, directory: str) -> str:
    return os.path.normpath(os.path.join(project_dir, os.path.expanduser(directory)))
