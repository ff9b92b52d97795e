"""Reading and writing the few KubeSphere objects the lab steps need (apply-time only)."""
from __future__ import annotations

import base64
import json
import os
import socket

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from kslab.model import contract
from kslab.render import manifests as render
from kslab.steps.errors import ApiFailure, Transient
from kslab.steps.procfs import process_identity

REQUEST_TIMEOUT = 15  # seconds per API call, so an unreachable server fails fast
KUBEFED_NAMESPACE = "kube-federation-system"


class Kube:
    def __init__(self, kubeconfig_text: str, label: str):
        self.label = label
        self.api = config.new_client_from_config_dict(yaml.safe_load(kubeconfig_text))
        self.api.configuration.retries = 0
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.admission = client.AdmissionregistrationV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)

    def _call(self, fn, *args, allow=(404,), **kwargs):
        """Call the API; statuses in `allow` return None, 5xx/429 raise Transient, other errors ApiFailure."""
        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as exc:
            if exc.status in allow:
                return None
            reason = f"{self.label}: API server answered {exc.status} {exc.reason}"
            message = _status_message(exc)
            if message:
                reason += f": {message}"
            if exc.status >= 500 or exc.status == 429:
                raise Transient(reason) from None
            raise ApiFailure(reason) from None
        except Exception as exc:  # urllib3 connection/TLS errors
            raise Transient(f"{self.label}: API server unreachable ({exc.__class__.__name__}: "
                            f"{str(exc).splitlines()[0][:200]})") from None

    # --- ClusterConfiguration and kubesphere-config -------------------------------------------
    def cluster_configuration(self) -> dict | None:
        return self._call(self.custom.get_namespaced_custom_object, "installer.kubesphere.io", "v1alpha1",
                          render.KS_NAMESPACE, "clusterconfigurations", render.CC_NAME)

    def kubesphere_yaml(self) -> str | None:
        """The `kubesphere.yaml` key of kubesphere-config, or None while the installer has not written it."""
        cm = self._call(self.core.read_namespaced_config_map, render.KUBESPHERE_CONFIG_MAP, render.KS_NAMESPACE)
        return None if cm is None else (cm.data or {}).get("kubesphere.yaml")

    def kubesphere_config(self) -> dict:
        """kubesphere.yaml parsed ({} while missing or unparsable)."""
        text = self.kubesphere_yaml()
        try:
            doc = yaml.safe_load(text or "")
        except yaml.YAMLError:
            return {}
        return doc if isinstance(doc, dict) else {}

    def kubesphere_jwt_secret(self) -> str | None:
        text = self.kubesphere_yaml()
        return None if text is None else render.jwt_secret_from_kubesphere_yaml(text)

    # --- a developer workspace's objects (kslab/render/devworkspace.py) --------------------------
    def secret_data(self, name: str, namespace: str) -> dict[str, str] | None:
        secret = self._call(self.core.read_namespaced_secret, name, namespace)
        if secret is None:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def deployment(self, name: str, namespace: str):
        return self._call(self.apps.read_namespaced_deployment, name, namespace)

    def patch_deployment(self, name: str, namespace: str, body: dict) -> None:
        self._call(self.apps.patch_namespaced_deployment, name, namespace, body, allow=())

    def service(self, name: str, namespace: str):
        return self._call(self.core.read_namespaced_service, name, namespace)

    def patch_service(self, name: str, namespace: str, body: dict) -> None:
        self._call(self.core.patch_namespaced_service, name, namespace, body, allow=())

    def json_patch_service(self, name: str, namespace: str, operations: list) -> None:
        self._call(self.core.patch_namespaced_service, name, namespace, operations, allow=())

    def delete_controller_endpoint_slices(self, service: str, namespace: str) -> None:
        discovery = client.DiscoveryV1Api(self.api)
        self._call(discovery.delete_collection_namespaced_endpoint_slice, namespace, allow=(404,),
                   label_selector=f"kubernetes.io/service-name={service},"
                                  "endpointslice.kubernetes.io/managed-by=endpointslice-controller.k8s.io")

    def endpoint_subsets(self, name: str, namespace: str) -> list | None:
        ep = self._call(self.core.read_namespaced_endpoints, name, namespace)
        return None if ep is None else self.api.sanitize_for_serialization(ep.subsets or [])

    def put_endpoints(self, name: str, namespace: str, subsets: list) -> None:
        body = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace},
                "subsets": subsets}
        if self._call(self.core.read_namespaced_endpoints, name, namespace) is None:
            self._call(self.core.create_namespaced_endpoints, namespace, body, allow=())
        else:
            self._call(self.core.replace_namespaced_endpoints, name, namespace, body, allow=())

    def delete_endpoints(self, name: str, namespace: str) -> None:
        self._call(self.core.delete_namespaced_endpoints, name, namespace)

    # --- the cluster's identity, and its ks-apiserver -----------------------------------------
    def kube_system_uid(self) -> str | None:
        ns = self._call(self.core.read_namespace, "kube-system")
        return None if ns is None else ns.metadata.uid

    def ks_apiserver_version(self) -> tuple[bool, str]:
        """GET /kapis/version of ks-apiserver through the API server's service proxy, as the console does
        (`<server>/api/v1/namespaces/kubesphere-system/services/:ks-apiserver:/proxy/kapis/version`).
        (answered, detail)."""
        try:
            raw = self.core.connect_get_namespaced_service_proxy_with_path(
                "ks-apiserver", render.KS_NAMESPACE, "kapis/version", _request_timeout=10, _preload_content=False)
            text = raw.data.decode(errors="replace")  # type: ignore[attr-defined]  # _preload_content=False: a response
        except ApiException as exc:
            return False, f"{exc.status} {exc.reason}"
        except Exception as exc:
            return False, f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160]}"
        try:
            data = json.loads(text)
        except ValueError:
            return False, "not a version document"
        if not isinstance(data, dict):
            return False, "not a version document"
        return True, str(data.get("gitVersion") or "answered")

    # --- Cluster objects (on a host) -----------------------------------------------------------
    def member_cluster(self, name: str) -> dict | None:
        return self._call(self.custom.get_cluster_custom_object, "cluster.kubesphere.io", "v1alpha1",
                          "clusters", name)

    def member_clusters(self) -> list[dict]:
        found = self._call(self.custom.list_cluster_custom_object, "cluster.kubesphere.io", "v1alpha1", "clusters")
        return (found or {}).get("items", [])

    def delete_member_cluster(self, name: str) -> None:
        self._call(self.custom.delete_cluster_custom_object, "cluster.kubesphere.io", "v1alpha1", "clusters", name)

    def strip_member_cluster_finalizers(self, name: str) -> None:
        self._call(self.custom.patch_cluster_custom_object, "cluster.kubesphere.io", "v1alpha1", "clusters", name,
                   {"metadata": {"finalizers": None}})

    def remove_kubefed_cluster(self, name: str) -> list[str]:
        """What ks-controller-manager's unjoin removes on the host: KubeFedCluster
        kube-federation-system/<name> and Secret <name>-secret (kubesphere@<tag>:pkg/controller/cluster/
        unjoin.go, deleteFederatedClusterAndSecret). Returns what was still there."""
        removed = []
        if self._call(self.custom.delete_namespaced_custom_object, "core.kubefed.io", "v1beta1", KUBEFED_NAMESPACE,
                      "kubefedclusters", name) is not None:
            removed.append(f"KubeFedCluster {KUBEFED_NAMESPACE}/{name}")
        if self._call(self.core.delete_namespaced_secret, f"{name}-secret", KUBEFED_NAMESPACE) is not None:
            removed.append(f"Secret {KUBEFED_NAMESPACE}/{name}-secret")
        return removed

    # --- read-only views for `make status` ------------------------------------------------------
    def kubefed_cluster(self, name: str) -> dict | None:
        return self._call(self.custom.get_namespaced_custom_object, "core.kubefed.io", "v1beta1", KUBEFED_NAMESPACE,
                          "kubefedclusters", name)

    def list_objects(self, group: str, version: str, plural: str, label_selector: str | None = None) -> list[dict]:
        """Cluster-scoped custom objects of a kind; [] where the kind is not served (404)."""
        found = self._call(self.custom.list_cluster_custom_object, group, version, plural,
                           **({"label_selector": label_selector} if label_selector else {}))
        return (found or {}).get("items", [])

    # --- any cluster-scoped object (the tenant steps) -----------------------------------------------
    def _path(self, api_version: str, plural: str, name: str | None = None) -> str:
        base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
        return f"{base}/{plural}" + (f"/{name}" if name else "")

    def _object_call(self, method: str, path: str, *, allow=(404,), body=None, query=None,
                     content_type: str = "application/json"):
        def call(_request_timeout):
            _, url, headers, payload, _ = self.api.param_serialize(
                method, path, query_params=query or [], body=body, auth_settings=["BearerToken"],
                header_params={"Accept": "application/json", "Content-Type": content_type})
            response = self.api.call_api(method, url, header_params=headers, body=payload,
                                         _request_timeout=_request_timeout)
            response.read()
            if not 200 <= response.status < 300:
                raise ApiException(http_resp=response)
            return json.loads(response.data or b"null")
        return self._call(call, allow=allow)

    def get_object(self, api_version: str, plural: str, name: str) -> dict | None:
        return self._object_call("GET", self._path(api_version, plural, name))

    def apply_object(self, body: dict, plural: str, field_manager: str) -> dict:
        """Server-side apply of `body` by `field_manager`: the fields it names become that manager's, and every
        other field (a controller's annotations, finalizers, a hashed password) stays whose it is. `force` takes
        a field over from a manager that changed it by hand."""
        return self._object_call("PATCH", self._path(body["apiVersion"], plural, body["metadata"]["name"]),
                                 body=body, query=[("fieldManager", field_manager), ("force", "true")],
                                 content_type="application/apply-patch+yaml", allow=())

    def delete_object(self, api_version: str, plural: str, name: str) -> bool:
        """Delete; False when it was not there."""
        return self._object_call("DELETE", self._path(api_version, plural, name)) is not None

    # --- the v3.4 Cluster webhook ---------------------------------------------------------------
    def cluster_webhook_configurations(self) -> list:
        """ValidatingWebhookConfigurations with a webhook on UPDATE of clusters.cluster.kubesphere.io
        (ks-installer@v3.4.1's ks-core chart names it `cluster.kubesphere.io`)."""
        found = self._call(self.admission.list_validating_webhook_configuration)
        matches = []
        for item in (found.items if found else []):
            for hook in item.webhooks or []:
                if any("cluster.kubesphere.io" in (r.api_groups or []) and "clusters" in (r.resources or [])
                       and ("UPDATE" in (r.operations or []) or "*" in (r.operations or []))
                       for r in hook.rules or []):
                    matches.append(item)
                    break
        return matches

    def delete_webhook_configuration(self, name: str) -> None:
        self._call(self.admission.delete_validating_webhook_configuration, name)

    def _webhook_body(self, saved) -> dict:
        body = self.api.sanitize_for_serialization(saved)
        meta = body.get("metadata", {})
        body["metadata"] = {k: v for k, v in meta.items()
                            if k in ("name", "labels", "annotations", "ownerReferences")}
        return body

    def restore_webhook_configuration(self, saved) -> None:
        self._call(self.admission.create_validating_webhook_configuration, self._webhook_body(saved), allow=(409,))

    def save_webhook_configurations(self, items: list) -> None:
        """Keep the configurations on the host before they are deleted, for a run killed before it restores;
        with who holds them out of the way (this process: machine, pid, start time), so a run of another
        member's unjoin does not put them back while this one still needs them away."""
        me = process_identity(os.getpid()) or (0, 0)
        owner = {"host": socket.gethostname(), "pid": os.getpid(), "start": me[1]}
        body = {"metadata": {"name": contract.SAVED_WEBHOOKS_CONFIG_MAP, "namespace": render.KS_NAMESPACE,
                             "labels": dict(render.MANAGED_BY_LABEL),
                             "annotations": {SAVED_BY_ANNOTATION: json.dumps(owner)}},
                "data": {item.metadata.name: json.dumps(self._webhook_body(item)) for item in items}}
        if self._call(self.core.create_namespaced_config_map, render.KS_NAMESPACE, body, allow=(409,)) is None:
            self._call(self.core.replace_namespaced_config_map, contract.SAVED_WEBHOOKS_CONFIG_MAP,
                       render.KS_NAMESPACE, body, allow=())

    def forget_saved_webhook_configurations(self) -> None:
        self._call(self.core.delete_namespaced_config_map, contract.SAVED_WEBHOOKS_CONFIG_MAP, render.KS_NAMESPACE)

    def restore_saved_webhook_configurations(self) -> list[str]:
        """Put back what an interrupted run saved and did not restore (its owner is gone); the names put back.
        Only configurations of the Cluster webhook are created from it, whatever else the ConfigMap holds."""
        saved = self._call(self.core.read_namespaced_config_map, contract.SAVED_WEBHOOKS_CONFIG_MAP,
                           render.KS_NAMESPACE)
        if saved is None or _owner_runs((saved.metadata.annotations or {}).get(SAVED_BY_ANNOTATION)):
            return []
        restored = []
        for name, text in (saved.data or {}).items():
            try:
                body = json.loads(text)
            except ValueError:
                continue
            if isinstance(body, dict) and _guards_clusters(body) and (body.get("metadata") or {}).get("name") == name:
                self._call(self.admission.create_validating_webhook_configuration, body, allow=(409,))
                restored.append(name)
        self.forget_saved_webhook_configurations()
        return sorted(restored)


SAVED_BY_ANNOTATION = "kslab.io/saved-by"


def _owner_runs(text: str | None) -> bool:
    """Whether the run that saved the webhook configurations still runs on this machine."""
    try:
        owner = json.loads(text or "{}")
        pid, start = int(owner.get("pid") or 0), int(owner.get("start") or 0)
    except (ValueError, TypeError, AttributeError):
        return False
    if owner.get("host") != socket.gethostname() or pid <= 0:
        return False
    identity = process_identity(pid)
    return identity is not None and identity[1] == start


def _guards_clusters(body: dict) -> bool:
    """A ValidatingWebhookConfiguration with a webhook on clusters.cluster.kubesphere.io (what the unjoin moves)."""
    for hook in body.get("webhooks") or []:
        for rule in (hook or {}).get("rules") or []:
            if "cluster.kubesphere.io" in (rule.get("apiGroups") or []) and "clusters" in (rule.get("resources") or []):
                return True
    return False


def _status_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or "")[:300]
    except (ValueError, AttributeError):
        return ""
