"""The seam for a line of KubeSphere releases: what kslab needs of one, and which line serves a release.

Today one line serves every release kslab knows: KubeSphere 3.x, installed by ks-installer through its
ClusterConfiguration and joined through KubeFed (kslab/render/ks_installer.py). A second line (the vendor's 4.x,
installed by Helm and joined through ks-core's own cluster controller, or a community fork) would add one module
that implements KubeSphereLine and one entry in LINES; the program, the steps and `make status` ask the line of
each cluster's release and never branch on the line themselves.
"""
from __future__ import annotations

from typing import Any, Protocol

from kslab.model import images
from kslab.model.types import ClusterSpec
from kslab.render.ks_installer import KS_INSTALLER
from kslab.render.manifests import InstallState


class KubeSphereLine(Protocol):
    """What a KubeSphere line gives kslab; every method is pure (the steps make the API calls)."""

    name: str
    releases: tuple[str, ...]

    # What the program applies to a cluster: the installer's objects, the role, and the install request
    # (the jwtSecret is a string or the program's secret Output, placed as it is).
    def install_objects(self, cluster: ClusterSpec, naming: images.Naming) -> list[dict[str, Any]]: ...
    def role_spec(self, cluster: ClusterSpec) -> dict[str, Any]: ...
    def install_request(self, cluster: ClusterSpec, jwt_secret: Any, naming: images.Naming,
                        jwt_source: str) -> dict[str, Any]: ...
    def install_request_spec(self, cluster: ClusterSpec, naming: images.Naming) -> dict[str, Any]: ...

    # What the install wait waits for, and how it judges the install's status.
    def wait_keys(self, cluster: ClusterSpec) -> list[str]: ...
    def install_state(self, status: dict[str, Any] | None, *, version: str, wait_keys: list[str],
                      baseline_enabled_time: str | None, config_gaps: list[str]) -> InstallState: ...
    def config_gaps(self, version: str, request_spec: dict[str, Any], live_config: str | None) -> list[str]: ...

    # The jwtSecret a running cluster signs with, from its parsed live configuration (the join check, `make status`).
    def jwt_secret_of(self, live_config: dict[str, Any]) -> str | None: ...

    # How a member joins a host, when the join is ready, and whether an unjoin must move a webhook aside.
    def member_object(self, member: str, host: str, join_kubeconfig_b64: Any, provider: str, *,
                      allow_multiple_hosts: bool, loopback_reason: str | None, member_uid: Any) -> dict[str, Any]: ...
    def join_state(self, conditions: list[dict[str, Any]] | None) -> tuple[bool, str]: ...
    def unjoin_moves_webhook(self, version: str) -> bool: ...


LINES: tuple[KubeSphereLine, ...] = (KS_INSTALLER,)


def line_for(version: str) -> KubeSphereLine:
    """The line that serves a KubeSphere release; KeyError for a release no line serves (the model refuses those
    before anything runs)."""
    for line in LINES:
        if version in line.releases:
            return line
    raise KeyError(f"no KubeSphere line serves {version}")
