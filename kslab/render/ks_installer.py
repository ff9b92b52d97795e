"""KubeSphere 3.x as kslab installs it: ks-installer's ClusterConfiguration, its status, kubesphere-config's
jwtSecret, and a member joined through KubeFed by a `Cluster` on the host (kslab/render/lines.py, the seam).

The facts are the renderers' (kslab/render/manifests.py, each citing ks-installer and kubesphere at v3.2.1 and
v3.4.1); this class is the one place that says they make up one line.
"""
from __future__ import annotations

from typing import Any

from kslab.model import images, versions
from kslab.model.types import ClusterSpec
from kslab.render import manifests


class KsInstallerLine:
    name = "ks-installer (KubeSphere 3.x, KubeFed)"
    releases = tuple(versions.KUBESPHERE_RELEASES)

    def install_objects(self, cluster: ClusterSpec, naming: images.Naming) -> list[dict[str, Any]]:
        return manifests.installer_objects(cluster.kubesphere_version, naming)

    def role_spec(self, cluster: ClusterSpec) -> dict[str, Any]:
        return manifests.multicluster_spec(cluster)

    def install_request(self, cluster: ClusterSpec, jwt_secret: Any, naming: images.Naming,
                        jwt_source: str) -> dict[str, Any]:
        return manifests.cluster_configuration(cluster, jwt_secret, naming, jwt_source)

    def install_request_spec(self, cluster: ClusterSpec, naming: images.Naming) -> dict[str, Any]:
        """The cc spec without its jwtSecret: what decides, with the secret, when the installer runs again."""
        return manifests.cluster_configuration_spec(cluster, "", naming)

    def wait_keys(self, cluster: ClusterSpec) -> list[str]:
        return manifests.status_keys_to_wait(cluster)

    def install_state(self, status: dict[str, Any] | None, *, version: str, wait_keys: list[str],
                      baseline_enabled_time: str | None, config_gaps: list[str]) -> manifests.InstallState:
        return manifests.install_state(status, version=version, wait_keys=wait_keys,
                                       baseline_enabled_time=baseline_enabled_time, config_gaps=config_gaps)

    def config_gaps(self, version: str, request_spec: dict[str, Any], live_config: str | None) -> list[str]:
        return manifests.kubesphere_config_gaps(version, request_spec, live_config)

    def jwt_secret_of(self, live_config: dict[str, Any]) -> str | None:
        """authentication.jwtSecret of kubesphere-config's `kubesphere.yaml`, parsed."""
        return manifests.jwt_secret_of(live_config)

    def member_object(self, member: str, host: str, join_kubeconfig_b64: Any, provider: str, *,
                      allow_multiple_hosts: bool, loopback_reason: str | None, member_uid: Any) -> dict[str, Any]:
        return manifests.member_cluster_object(member, host, join_kubeconfig_b64, provider,
                                               allow_multiple_hosts=allow_multiple_hosts,
                                               loopback_reason=loopback_reason, member_uid=member_uid)

    def join_state(self, conditions: list[dict[str, Any]] | None) -> tuple[bool, str]:
        return manifests.condition_state(conditions)

    def unjoin_moves_webhook(self, version: str) -> bool:
        """v3.4's Cluster webhook denies removing the finalizer of an unreachable member (kubesphere#6154)."""
        return versions.KUBESPHERE_RELEASES[version].cluster_webhook


KS_INSTALLER = KsInstallerLine()
