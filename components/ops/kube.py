"""Reading and writing the few KubeSphere objects the lab steps need (apply-time only)."""
from __future__ import annotations

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from .. import render

REQUEST_TIMEOUT = 15  # seconds per API call, so an unreachable server fails fast


class Unreachable(RuntimeError):
    pass


class Kube:
    def __init__(self, kubeconfig_text: str, label: str):
        self.label = label
        api = config.new_client_from_config_dict(yaml.safe_load(kubeconfig_text))
        api.configuration.retries = 0
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise RuntimeError(f"{self.label}: API server answered {exc.status} {exc.reason}") from None
        except Exception as exc:  # urllib3 connection/TLS errors
            raise Unreachable(f"{self.label}: API server unreachable ({exc.__class__.__name__}: "
                              f"{str(exc).splitlines()[0][:200]})") from None

    def cluster_configuration(self) -> dict | None:
        return self._call(self.custom.get_namespaced_custom_object, "installer.kubesphere.io", "v1alpha1",
                          render.KS_NAMESPACE, "clusterconfigurations", render.CC_NAME)

    def kubesphere_jwt_secret(self) -> str | None:
        cm = self._call(self.core.read_namespaced_config_map, render.KUBESPHERE_CONFIG_MAP, render.KS_NAMESPACE)
        if cm is None:
            return None
        return render.jwt_secret_from_kubesphere_yaml((cm.data or {}).get("kubesphere.yaml", ""))

    def member_cluster(self, name: str) -> dict | None:
        return self._call(self.custom.get_cluster_custom_object, "cluster.kubesphere.io", "v1alpha1",
                          "clusters", name)

    def delete_member_cluster(self, name: str) -> None:
        self._call(self.custom.delete_cluster_custom_object, "cluster.kubesphere.io", "v1alpha1", "clusters", name)

    def strip_member_cluster_finalizers(self, name: str) -> None:
        self._call(self.custom.patch_cluster_custom_object, "cluster.kubesphere.io", "v1alpha1", "clusters", name,
                   {"metadata": {"finalizers": None}})

    def ping(self) -> None:
        self._call(self.core.list_namespace, limit=1)
