"""The cc kslab renders against what ks-installer reads, for every supported release, every role and every
stack that ships or is tested; and the install wait against upstream's order of status writes.

The facts tables are kslab's own (kslab/model/cc_defaults.py, kslab/model/versions.py). The migration step is
the fixture's independent reading of kubesphere/ks-installer@<tag>:controller/installRunner.py
(tests/harness/ks_operators.migrate), so a mistake in one does not hide in the other. These tests fail on the
cc kslab rendered before it carried the release defaults (no common.es: the v3.4.1 hook raised; no terminal:
the cc was deleted and recreated): keep them.
"""
import glob
import json
import os

import pytest

from kslab.model import cc_defaults, versions
from kslab.model.spec import parse_lab
from kslab.model.stack_config import STRING_KEYS
from kslab.render import manifests as render
from tests.harness.ks_operators import (
    HookError,
    component_status_writes,
    migrate,
    preinstall_status_writes,
    render_kubesphere_yaml,
    required_reads,
)
from tests.support.mock_run import ROOT, stack_config

RELEASES = sorted(versions.KUBESPHERE_RELEASES)
ROLES = ("none", "host", "member")
IMAGES = {"v3.2.1": "kindest/node:v1.19.16", "v3.4.1": "kindest/node:v1.25.16"}


def leaf_paths(tree, prefix=()):
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from leaf_paths(value, prefix + (key,))
    else:
        yield prefix


def get(tree, path):
    for part in path:
        tree = tree[part]
    return tree


def cluster(version, role, **extra):
    raw = {"name": "c1", "role": role, "kubesphereVersion": version, "nodeImage": IMAGES[version], **extra}
    return parse_lab({"clusters": [raw]}).clusters[0]


def every_stack_cluster():
    """(stack, cluster spec) for every shipped and test stack kslab can parse without the harness."""
    files = glob.glob(os.path.join(ROOT, "stacks", "Pulumi.*.yaml")) + \
        glob.glob(os.path.join(ROOT, "tests", "stacks", "Pulumi.*.yaml"))
    for path in sorted(files):
        name = os.path.basename(path)[len("Pulumi."):-len(".yaml")]
        if name == "broken":
            continue  # refused by design (validationMode warn still registers its known releases below)
        config = stack_config(path)
        raw = {k.split(":", 1)[1]: (v if k.split(":", 1)[1] in STRING_KEYS else json.loads(v))
               for k, v in config.items()}
        for c in parse_lab(raw).clusters:
            yield name, c


STACK_CLUSTERS = list(every_stack_cluster())


def test_every_supported_release_has_a_defaults_table():
    assert set(cc_defaults.DEFAULT_SPECS) == set(versions.KUBESPHERE_RELEASES)


@pytest.mark.parametrize("version", RELEASES)
@pytest.mark.parametrize("role", ROLES)
def test_cc_carries_every_default_key(version, role):
    spec = render.cluster_configuration(cluster(version, role), "")["spec"]
    missing = [".".join(p) for p in leaf_paths(cc_defaults.default_spec(version)) if not _has(spec, p)]
    assert missing == []


@pytest.mark.parametrize("name,c", STACK_CLUSTERS, ids=[f"{n}-{c.name}" for n, c in STACK_CLUSTERS])
def test_stack_cc_carries_every_default_key(name, c):
    spec = render.cluster_configuration(c, "s")["spec"]
    assert [".".join(p) for p in leaf_paths(cc_defaults.default_spec(c.kubesphere_version))
            if not _has(spec, p)] == []


@pytest.mark.parametrize("name,c", STACK_CLUSTERS, ids=[f"{n}-{c.name}" for n, c in STACK_CLUSTERS])
def test_stack_cc_passes_the_migration_step_unchanged(name, c):
    spec = render.cluster_configuration(c, "s")["spec"]
    assert migrate(c.kubesphere_version, spec, None) == [], "a first install must need no migration"
    assert required_reads(c.kubesphere_version, spec) == []


@pytest.mark.parametrize("version", RELEASES)
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("components", [{}, {name: True for name in versions.COMPONENT_MEMORY_MIB}],
                         ids=["defaults", "every-component"])
def test_cc_passes_the_migration_step_for_every_role(version, role, components):
    spec = render.cluster_configuration(cluster(version, role, components=components), "")["spec"]
    assert migrate(version, spec, None) == []
    assert required_reads(version, spec) == []
    # and on a re-run, with the status a finished run leaves
    assert migrate(version, spec, {"core": {"status": "enabled", "version": version}}) == []


def test_the_cc_without_release_defaults_breaks_the_v3_4_installer():
    """What kslab rendered before: the v3.4.1 hook raises on it (common.es), and without `terminal` the cc
    would be deleted and recreated."""
    old = {"persistence": {"storageClass": ""}, "authentication": {"jwtSecret": ""}, "local_registry": "",
           "common": {"core": {"console": {"enableMultiLogin": True, "port": 30880, "type": "NodePort"}}},
           "multicluster": {"clusterRole": "host"}, "devops": {"enabled": False}}
    with pytest.raises(HookError, match="common.es"):
        migrate("v3.4.1", old, None)
    old["common"]["es"] = {}
    assert "no terminal" in migrate("v3.4.1", old, None)
    assert "etcd.endpointIps" in required_reads("v3.4.1", old)


@pytest.mark.parametrize("version", RELEASES)
def test_component_switches_use_the_release_keys(version):
    c = cluster(version, "host", components={"edgeruntime": True, "openpitrix": True, "networkPolicy": True,
                                             "metricsServer": True})
    spec = render.cluster_configuration(c, "")["spec"]
    assert spec["openpitrix"]["store"]["enabled"] is True
    assert spec["network"]["networkpolicy"]["enabled"] is True
    assert spec["metrics_server"]["enabled"] is True
    if version == "v3.4.1":
        assert spec["edgeruntime"]["enabled"] and spec["edgeruntime"]["kubeedge"]["enabled"]
        assert "kubeedge" not in spec, "a top-level kubeedge makes v3.4.1 migrate the cc"
    else:
        assert spec["kubeedge"]["enabled"] and "edgeruntime" not in spec


@pytest.mark.parametrize("version", RELEASES)
def test_waits_only_for_statuses_the_release_writes(version):
    everything = {name: True for name in versions.COMPONENT_MEMORY_MIB}
    c = cluster(version, "host", components=everything)
    waited = set(render.status_keys_to_wait(c))
    spec = render.cluster_configuration(c, "")["spec"]
    written = set(component_status_writes(version, spec) + preinstall_status_writes(spec))
    assert waited <= written, f"kslab waits for statuses nobody writes: {waited - written}"
    assert "openpitrix" not in waited
    assert {"multicluster", "metricsServer", "devops"} <= waited


def test_a_kind_v3_2_cluster_collects_logs_from_containerd():
    c = cluster("v3.2.1", "none")
    assert render.cluster_configuration(c, "")["spec"]["logging"]["containerruntime"] == "containerd"


# --- the install wait against upstream's order of writes ----------------------------------------------

def states(version, role="host", wanted_jwt="abc", baseline=None, keys=("multicluster",)):
    """The wait's verdict after each write of one played run, in upstream's order."""
    spec = render.cluster_configuration(cluster(version, role), wanted_jwt)["spec"]
    status, config = dict(baseline or {}), None
    verdicts = []

    def verdict(step):
        gaps = render.kubesphere_config_gaps(version, spec, config)
        state = render.install_state(status, version=version, wait_keys=list(keys),
                                     baseline_enabled_time=((baseline or {}).get("core") or {}).get("enabledTime"),
                                     config_gaps=gaps)
        verdicts.append((step, state.done))

    verdict("before")
    status["core"] = {**status.get("core", {}), "status": "enabled", "enabledTime": "2026-11-27T10:00:01UTC"}
    verdict("ks-core")
    for key in keys:
        status[key] = {"status": "enabled"}
    verdict("components")
    config = render_kubesphere_yaml(version, spec, wanted_jwt or "random32")
    verdict("kubesphere-config")
    status["core"]["version"] = version
    verdict("check-result")
    return verdicts


@pytest.mark.parametrize("version", RELEASES)
def test_first_install_is_done_only_after_the_last_write(version):
    assert states(version) == [("before", False), ("ks-core", False), ("components", False),
                               ("kubesphere-config", False), ("check-result", True)]


@pytest.mark.parametrize("version", RELEASES)
def test_a_rerun_is_waited_for_until_kubesphere_config_reflects_the_change(version):
    """The installer never resets status: after a first run, core is enabled and version is set. A change
    (here a new jwtSecret) must not be declared done on those old values."""
    old = {"core": {"status": "enabled", "enabledTime": "2026-11-27T09:00:00UTC", "version": version},
           "multicluster": {"status": "enabled"}}
    verdicts = dict(states(version, wanted_jwt="new-secret", baseline=old))
    assert verdicts["before"] is False, "old status is no proof of a new run"
    assert verdicts["components"] is False, "kubesphere-config still holds the old jwtSecret"
    assert verdicts["check-result"] is True


def test_config_gaps_never_show_the_secret():
    gaps = render.kubesphere_config_gaps("v3.4.1", {"authentication": {"jwtSecret": "wanted-secret"},
                                                    "multicluster": {"clusterRole": "member"}},
                                         "authentication: {jwtSecret: other-secret}\nmulticluster: "
                                         "{clusterRole: none}\n")
    assert gaps and not any("secret-" in g or "other" in g for g in gaps)
    assert any("clusterRole is 'none', not 'member'" in g for g in gaps)


def test_v3_2_config_has_no_role_for_members():
    gaps = render.kubesphere_config_gaps("v3.2.1", {"authentication": {"jwtSecret": "x"},
                                                    "multicluster": {"clusterRole": "member"}},
                                         "authentication: {jwtSecret: x}\n")
    assert gaps == []


def _has(tree, path):
    try:
        get(tree, path)
        return True
    except (KeyError, TypeError):
        return False
