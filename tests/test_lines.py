"""The seam for a line of KubeSphere releases (kslab/render/lines.py): every release has one line, and the program
asks the line of each cluster's release for what it applies, so a second line adds a module, not branches."""
from __future__ import annotations

from typing import Any

import pytest

from kslab.model import versions
from kslab.render import lines
from kslab.render.ks_installer import KsInstallerLine
from tests.support.mock_run import run_program, stack_config


def test_every_release_kslab_knows_has_exactly_one_line():
    for version in versions.KUBESPHERE_RELEASES:
        assert [line.name for line in lines.LINES if version in line.releases] != []
        assert sum(version in line.releases for line in lines.LINES) == 1, version


def test_a_release_no_line_serves_is_a_clear_error():
    with pytest.raises(KeyError, match="no KubeSphere line serves v4.1.3"):
        lines.line_for("v4.1.3")


class MarkingLine(KsInstallerLine):
    """The 3.x line with a mark on what it renders, standing in for a second line."""
    name = "marking"

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []

    def install_request(self, cluster, jwt_secret, naming, jwt_source) -> dict[str, Any]:
        self.asked.append(("install_request", cluster.name))
        request = super().install_request(cluster, jwt_secret, naming, jwt_source)
        request["metadata"]["labels"]["line"] = self.name
        return request

    def member_object(self, member, host, join_kubeconfig_b64, provider, **options) -> dict[str, Any]:
        self.asked.append(("member_object", member))
        obj = super().member_object(member, host, join_kubeconfig_b64, provider, **options)
        obj["metadata"]["labels"]["line"] = self.name
        return obj

    def wait_keys(self, cluster) -> list[str]:
        return ["marked"]


def test_the_program_applies_what_the_line_of_each_release_renders(monkeypatch):
    marking = MarkingLine()
    monkeypatch.setattr(lines, "LINES", (marking,))
    run = run_program(stack_config("host-member"))
    ccs = [r for r in run.resources if r.inputs.get("kind") == "ClusterConfiguration"]
    joins = [r for r in run.resources if r.inputs.get("kind") == "Cluster"]
    assert sorted(name for step, name in marking.asked if step == "install_request") == ["host", "member"]
    assert [name for step, name in marking.asked if step == "member_object"] == ["member"]
    assert {r.inputs["metadata"]["labels"]["line"] for r in ccs + joins} == {"marking"} and len(ccs) == 2
    waits = [r for r in run.resources if r.inputs.get("step") == "wait-install"]
    assert {r.inputs["environment"]["KSLAB_WAIT_KEYS"] for r in waits} == {"marked"}
