"""The real-kind tier runs the original notes' own lab: its three-cluster stack is the shipped
stacks/Pulumi.dual-host.yaml but for what a test on a shared machine must change (#27)."""
from __future__ import annotations

import os

import yaml

from tests.support.mock_run import ROOT

TIER_PREFIX = "kt-"
# What the tier may change, and why: its own node image (built here), console host ports, played images, short waits.
TIER_ONLY = {"kslab:nodeImage", "kslab:installTimeoutSeconds", "kslab:joinTimeoutSeconds",
             "kslab:unjoinTimeoutSeconds", "kslab:kindWait"}
CLUSTER_TIER_ONLY = {"consoleHostPort", "imageCheck"}


def _config(path: str) -> dict:
    with open(os.path.join(ROOT, path)) as fh:
        return yaml.safe_load(fh)["config"]


def _unprefixed(name: str) -> str:
    assert name.startswith(TIER_PREFIX), f"{name}: the tier's clusters carry its {TIER_PREFIX} prefix"
    return name[len(TIER_PREFIX):]


def _comparable(config: dict, tier: bool) -> dict:
    out = {k: v for k, v in config.items() if k not in TIER_ONLY and k not in (
        "kslab:clusters", "kslab:joins", "kslab:users", "kslab:workspaces", "kslab:projects")}
    rename = _unprefixed if tier else str
    out["clusters"] = [{**{k: v for k, v in c.items() if k not in CLUSTER_TIER_ONLY}, "name": rename(c["name"]),
                        **({"hostClusterName": rename(c["hostClusterName"])} if "hostClusterName" in c else {})}
                       for c in config["kslab:clusters"]]
    out["joins"] = [{"member": rename(j["member"]), "host": rename(j["host"])} for j in config["kslab:joins"]]
    return out


def test_the_kind_tiers_dual_host_lab_is_the_shipped_one():
    shipped, tier = _config("stacks/Pulumi.dual-host.yaml"), _config("tests/stacks/Pulumi.kind-dual-host.yaml")
    assert _comparable(tier, tier=True) == _comparable(shipped, tier=False)


def test_the_kind_tier_runs_the_notes_versions():
    """KubeSphere v3.2.1 on Kubernetes v1.19.16, as the notes' `kind create cluster --image kindest/node:v1.19.16`."""
    shipped, tier = _config("stacks/Pulumi.dual-host.yaml"), _config("tests/stacks/Pulumi.kind-dual-host.yaml")
    assert tier["kslab:kubesphereVersion"] == shipped["kslab:kubesphereVersion"] == "v3.2.1"
    assert tier["kslab:nodeImage"].rsplit(":", 1)[1] == shipped["kslab:nodeImage"].rsplit(":", 1)[1] == "v1.19.16"


def _renamed_tenants(config: dict, rename) -> dict:
    return {
        "users": config["kslab:users"],
        "workspaces": [{**w, "clusters": [rename(c) for c in w["clusters"]]} for w in config["kslab:workspaces"]],
        "projects": [{**p, "cluster": rename(p["cluster"])} for p in config["kslab:projects"]],
    }


def test_the_kind_tiers_demo_lab_is_the_shipped_demo():
    shipped, tier = _config("stacks/Pulumi.demo.yaml"), _config("tests/stacks/Pulumi.kind-demo.yaml")
    assert _comparable(tier, tier=True) == _comparable(shipped, tier=False)
    assert _renamed_tenants(tier, _unprefixed) == _renamed_tenants(shipped, str)
