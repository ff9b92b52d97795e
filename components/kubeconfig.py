"""Kubeconfig rewriting and the checks a host would trip over. Pure functions."""
from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import yaml


class KubeconfigError(ValueError):
    pass


def load(text: str) -> dict:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise KubeconfigError(f"kubeconfig is not valid YAML: {exc.__class__.__name__}") from None
    if not isinstance(doc, dict) or not doc.get("clusters"):
        raise KubeconfigError("kubeconfig has no clusters")
    return doc


def _current_cluster(doc: dict) -> dict:
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
    if not server:
        raise KubeconfigError("kubeconfig cluster has no server")
    return server


def server_host(server: str) -> str:
    return urlsplit(server).hostname or ""


def rewrite_server(text: str, server: str) -> str:
    """Point the current cluster at `server` (e.g. https://<container IP>:6443)."""
    doc = load(text)
    _current_cluster(doc)["server"] = server
    return yaml.safe_dump(doc, sort_keys=False)


def rename_context(text: str, name: str) -> str:
    """Give the single context/cluster/user a stable name (what `pulumi stack output` shows)."""
    doc = load(text)
    if len(doc.get("contexts") or []) == 1:
        doc["contexts"][0]["name"] = name
        doc["current-context"] = name
    return yaml.safe_dump(doc, sort_keys=False)


def is_loopback_host(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def join_problems(text: str, allow_loopback: bool = False) -> list[str]:
    """What makes a member kubeconfig unusable by a host (the console's own checks and known traps)."""
    try:
        cluster = _current_cluster(load(text))
    except KubeconfigError as exc:
        return [str(exc)]
    problems = []
    if cluster.get("insecure-skip-tls-verify"):
        problems.append("kubeconfig sets insecure-skip-tls-verify: kubefed turns that into "
                        "disabledTLSValidations and panics (kubesphere#4891, kubefed#1504); "
                        "use certificate-authority-data instead")
    elif not (cluster.get("certificate-authority-data") or cluster.get("certificate-authority")):
        problems.append("kubeconfig has no certificate-authority-data: the host cannot verify the member")
    server = cluster.get("server") or ""
    if not server.startswith("https://"):
        problems.append(f"kubeconfig server {server!r} is not an https:// URL")
    elif is_loopback_host(server_host(server)) and not allow_loopback:
        problems.append(f"kubeconfig server {server} is a loopback address: the host cluster cannot reach it; "
                        "use the member's container IP (https://<ip>:6443)")
    return problems
