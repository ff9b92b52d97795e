"""Kubeconfig rewriting and the checks a host would trip over. Pure functions."""
from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import yaml

from kslab.model.contract import PolicyName


class KubeconfigError(ValueError):
    pass


def load(text: str) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"kubeconfig is not valid YAML: {exc.__class__.__name__}") from None
    if not isinstance(doc, dict) or not doc.get("clusters"):
        raise KubeconfigError("kubeconfig has no clusters")
    # Each section is a list of {name, <entry>: mapping}, as `kubectl config view` writes it.
    for section, entry in (("clusters", "cluster"), ("contexts", "context"), ("users", "user")):
        items = doc.get(section)
        if items is None:
            continue
        if not isinstance(items, list) or not all(
                isinstance(i, dict) and isinstance(i.get("name", ""), str) and isinstance(i.get(entry, {}), dict)
                for i in items):
            raise KubeconfigError(f"kubeconfig '{section}' must be a list of {{name, {entry}: mapping}}")
    if doc.get("current-context") is not None and not isinstance(doc["current-context"], str):
        raise KubeconfigError("kubeconfig 'current-context' must be a string")
    if not all(isinstance((c.get("context") or {}).get("cluster", ""), str) for c in doc.get("contexts") or []):
        raise KubeconfigError("kubeconfig context 'cluster' must be a string")
    return doc


def _current_cluster(doc: dict[str, Any]) -> dict[str, Any]:
    """The cluster entry the current context points at (or the only one)."""
    clusters = {c.get("name"): c.get("cluster") or {} for c in doc.get("clusters") or []}
    contexts = {c.get("name"): c.get("context") or {} for c in doc.get("contexts") or []}
    current = doc.get("current-context")
    if current in contexts and contexts[current].get("cluster") in clusters:
        return clusters[contexts[current]["cluster"]]
    if len(clusters) == 1:
        return next(iter(clusters.values()))
    raise KubeconfigError("kubeconfig has several clusters and no usable current-context")


def server_of(text: str) -> str:
    server = _current_cluster(load(text)).get("server")
    if not server or not isinstance(server, str):
        raise KubeconfigError("kubeconfig cluster has no server URL")
    return server


_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.+?)\s*-----END CERTIFICATE-----", re.S)


def certificate_fingerprint(pem: bytes) -> str | None:
    """A short digest of the first certificate of a PEM file (of its DER bytes, so line breaks do not count), or None
    if it holds none."""
    found = _PEM_CERTIFICATE.search(pem)
    if found is None:
        return None
    try:
        der = base64.b64decode(b"".join(found.group(1).split()), validate=True)
    except ValueError:
        return None
    return hashlib.sha256(der).hexdigest()[:16]


def ca_fingerprint(text: str) -> str | None:
    """certificate_fingerprint of the certificate authority the kubeconfig's current cluster trusts, or None if it
    names none. Every cluster kind makes gets a CA of its own (kubeadm's certs phase, /etc/kubernetes/pki/ca.crt on
    the node), kept for the cluster's life (a restart renews the serving certificate only): two clusters of one name
    have different ones."""
    try:
        ca = _current_cluster(load(text)).get("certificate-authority-data")
        return certificate_fingerprint(base64.b64decode(ca)) if isinstance(ca, str) and ca else None
    except (KubeconfigError, ValueError):
        return None


def server_host(server: str) -> str:
    try:
        return urlsplit(server).hostname or ""
    except ValueError:  # e.g. an unclosed IPv6 literal
        return ""


def rewrite_server(text: str, server: str) -> str:
    """Point the current cluster at `server` (e.g. https://<container IP>:6443)."""
    doc = load(text)
    _current_cluster(doc)["server"] = server
    return str(yaml.safe_dump(doc, sort_keys=False))


def rename_context(text: str, name: str) -> str:
    """Give the single context/cluster/user a stable name (what `pulumi stack output` shows)."""
    doc = load(text)
    if len(doc.get("contexts") or []) == 1:
        doc["contexts"][0]["name"] = name
        doc["current-context"] = name
    return str(yaml.safe_dump(doc, sort_keys=False))


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# The policy-pack policies that guard the same traps (validationMode 'warn' leaves these to them).
INSECURE_POLICY = PolicyName.JOIN_INSECURE_TLS
LOOPBACK_POLICY = PolicyName.JOIN_LOOPBACK_SERVER


def join_findings(text: str, allow_loopback: bool = False) -> list[tuple[str, str | None]]:
    """What makes a member kubeconfig unusable by a host (the console's own checks and known traps),
    each with the policy that also guards it, if one does."""
    try:
        cluster = _current_cluster(load(text))
    except KubeconfigError as exc:
        return [(str(exc), None)]
    problems: list[tuple[str, str | None]] = []
    if cluster.get("insecure-skip-tls-verify"):
        problems.append(("kubeconfig sets insecure-skip-tls-verify: kubefed turns that into "
                         "disabledTLSValidations and panics (kubesphere#4891, kubefed#1504); "
                         "use certificate-authority-data instead", INSECURE_POLICY))
    elif not (cluster.get("certificate-authority-data") or cluster.get("certificate-authority")):
        problems.append(("kubeconfig has no certificate-authority-data: the host cannot verify the member", None))
    server = cluster.get("server") or ""
    if not isinstance(server, str) or not server.startswith("https://"):
        problems.append((f"kubeconfig server {server!r} is not an https:// URL", None))
    elif not server_host(server):
        problems.append((f"kubeconfig server {server!r} has no valid host", None))
    elif is_loopback_host(server_host(server)) and not allow_loopback:
        problems.append((f"kubeconfig server {server} is a loopback address: the host cluster cannot reach it; "
                         "use the member's container IP (https://<ip>:6443)", LOOPBACK_POLICY))
    return problems


def join_problems(text: str, allow_loopback: bool = False) -> list[str]:
    return [message for message, _ in join_findings(text, allow_loopback)]


# Credentials a kubeconfig may give by file path, and the inline key `kubectl config view --flatten`
# puts in their place.
_CLUSTER_FILES = {"certificate-authority": "certificate-authority-data"}
_USER_FILES = {"client-certificate": "client-certificate-data", "client-key": "client-key-data"}


def flatten(text: str, base_dir: str | None, read_bytes: Callable[[str], bytes], *, joinable: bool) -> str:
    """A self-contained kubeconfig, as `kubectl config view --flatten --raw` makes it.

    ks-controller-manager builds a member's connection from the kubeconfig bytes alone
    (clientcmd.RESTConfigFromKubeConfig, kubesphere@<tag>:pkg/controller/cluster/cluster_controller.go):
    files named in it are looked for inside its pod, where they do not exist, and the KubeFedCluster caBundle
    is taken from certificate-authority-data only. So file credentials are inlined (relative paths resolve
    against `base_dir`, the kubeconfig's folder, as kubectl does), and for a cluster that is joined
    (`joinable`) an `exec` or `auth-provider` user is refused: the plugin would have to run inside
    KubeSphere's pods, and no auth-provider is compiled into them. Raises KubeconfigError naming every problem.
    """
    doc = load(text)
    problems: list[str] = []
    changed = False

    def inline(entry: dict[str, Any], files: dict[str, Any], what: str) -> None:
        nonlocal changed
        for path_key, data_key in files.items():
            path = entry.get(path_key)
            if not path:
                continue
            if base_dir is None and not os.path.isabs(str(path)):
                problems.append(f"{what} names {path_key} {path!r}, a relative path with no kubeconfig folder to "
                                "resolve it against; inline it (kubectl config view --flatten --raw)")
                continue
            full = os.path.join(base_dir or "", os.path.expanduser(str(path)))
            try:
                data = read_bytes(full)
            except (OSError, ValueError) as exc:
                problems.append(f"{what} names {path_key} {path!r}, which cannot be read "
                                f"({getattr(exc, 'strerror', None) or exc})")
                continue
            entry[data_key] = base64.b64encode(data).decode()
            del entry[path_key]
            changed = True

    for item in doc.get("clusters") or []:
        if isinstance(item, dict) and isinstance(item.get("cluster"), dict):
            inline(item["cluster"], _CLUSTER_FILES, f"cluster {item.get('name')!r}")
    for item in doc.get("users") or []:
        user = item.get("user") if isinstance(item, dict) else None
        if not isinstance(user, dict):
            continue
        what = f"user {item.get('name')!r}"
        inline(user, _USER_FILES, what)
        if user.get("tokenFile") and _inline_token_file(user, what, base_dir, read_bytes, problems):
            changed = True
        if joinable:
            for plugin in ("exec", "auth-provider"):
                if user.get(plugin):
                    problems.append(f"{what} authenticates with `{plugin}`, which KubeSphere's controller cannot run "
                                    "for a joined member; use a client certificate or a ServiceAccount token")
    if problems:
        raise KubeconfigError("; ".join(problems))
    return yaml.safe_dump(doc, sort_keys=False) if changed else text


def _inline_token_file(user: dict[str, Any], what: str, base_dir: str | None, read_bytes: Callable[[str], bytes],
                       problems: list[str]) -> bool:
    """Put the token a user's `tokenFile` names in place of it; False (and a problem) if it cannot be read."""
    path = os.path.join(base_dir or "", os.path.expanduser(str(user["tokenFile"])))
    try:
        user["token"] = read_bytes(path).decode().strip()
        del user["tokenFile"]
        return True
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        problems.append(f"{what} names tokenFile {user['tokenFile']!r}, which cannot be read "
                        f"({getattr(exc, 'strerror', None) or exc.__class__.__name__})")
        return False
