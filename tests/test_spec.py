"""Every validation rule: the field, the bad value and the fix are named."""
import copy

import pytest

from kslab.model.spec import LabConfigError, parse_lab


def base() -> dict:
    return {
        "clusters": [
            {"name": "host", "role": "host", "nodeImage": "kindest/node:v1.25.16", "consoleHostPort": 30880},
            {"name": "member", "role": "member", "nodeImage": "kindest/node:v1.25.16", "consoleHostPort": 30881},
        ],
        "joins": [{"member": "member", "host": "host"}],
    }


def problems(raw: dict) -> list:
    with pytest.raises(LabConfigError) as info:
        parse_lab(raw)
    return info.value.problems


def only(raw: dict, field_part: str, message_part: str):
    found = problems(raw)
    match = [p for p in found if field_part in p.field and message_part in p.message]
    assert match, f"no problem with field~{field_part!r} message~{message_part!r} in {[str(p) for p in found]}"
    assert all(p.fix for p in found), "every problem must say how to fix it"
    return match[0]


def test_base_is_valid():
    lab = parse_lab(base())
    assert [c.name for c in lab.clusters] == ["host", "member"]
    assert lab.cluster("host").host_cluster_name == "host"
    assert lab.cluster("member").kubernetes_version == "v1.25.16"
    assert lab.joins[0].name == "member-to-host"


def test_empty_cluster_list():
    p = only({"clusters": []}, "kslab:clusters", "at least one cluster")
    assert p.value == []


def test_missing_clusters_key():
    only({}, "kslab:clusters", "at least one cluster")


def test_unknown_role():
    raw = base()
    raw["clusters"][0]["role"] = "master"
    p = only(raw, "clusters[0].role", "not a KubeSphere cluster role")
    assert p.value == "master" and "none, host, member" in p.fix


@pytest.mark.parametrize("bad", ["Host", "host_1", "-host", "a" * 41, "host;rm -rf /", "$(id)", ""])
def test_non_dns1123_names(bad):
    raw = base()
    raw["clusters"][0]["name"] = bad
    only(raw, "clusters[0].name", "")


def test_duplicate_names():
    raw = base()
    raw["clusters"][1]["name"] = "host"
    raw["clusters"][1]["role"] = "host"
    raw["joins"] = []
    p = only(raw, "clusters[1].name", "duplicates kslab:clusters[0].name")
    assert p.value == "host"


def test_join_unknown_cluster():
    raw = base()
    raw["joins"] = [{"member": "ghost", "host": "host"}]
    p = only(raw, "joins[0].member", "names no cluster")
    assert "host, member" in p.fix


def test_join_to_non_host():
    raw = base()
    raw["clusters"][0]["role"] = "none"
    p = only(raw, "joins[0].host", "has role 'none'")
    assert "role: host" in p.fix


def test_join_member_not_member():
    raw = base()
    raw["clusters"][1]["role"] = "none"
    only(raw, "joins[0].member", "must have role 'member'")


def test_member_joined_twice_to_same_host():
    raw = base()
    raw["joins"].append({"member": "member", "host": "host"})
    only(raw, "joins[1]", "twice")


def test_two_hosts_on_one_member_need_opt_in():
    raw = base()
    raw["clusters"].append({"name": "host2", "role": "host", "nodeImage": "kindest/node:v1.25.16"})
    raw["joins"].append({"member": "member", "host": "host2"})
    p = only(raw, "kslab:joins", "joined to 2 hosts")
    assert "allowMultipleHosts" in p.fix and "6466" in p.message
    raw["allowMultipleHosts"] = True
    lab = parse_lab(raw)
    assert lab.multi_host_members == ["member"]
    assert any("EXPERIMENT" in w and "host2" in w for w in lab.warnings)


def test_two_hosts_with_same_host_cluster_name():
    raw = base()
    raw["clusters"].append({"name": "host2", "role": "host", "hostClusterName": "host",
                            "nodeImage": "kindest/node:v1.25.16"})
    only(raw, "hostClusterName", "two hosts would both call themselves")


def test_host_port_collision():
    raw = base()
    raw["clusters"][1]["consoleHostPort"] = 30880
    p = only(raw, "consoleHostPort", "also the console host port of cluster 'host'")
    assert p.value == 30880


def test_default_host_ports_are_distinct():
    raw = base()
    for c in raw["clusters"]:
        del c["consoleHostPort"]
    lab = parse_lab(raw)
    assert {c.console_host_port for c in lab.clusters} == {30880, 30881}


def test_unknown_kubesphere_version():
    raw = base()
    raw["clusters"][0]["kubesphereVersion"] = "v3.9.9"
    only(raw, "kubesphereVersion", "not a KubeSphere release")


@pytest.mark.parametrize("ks,image", [
    ("v3.2.1", "kindest/node:v1.24.15"),
    ("v3.4.1", "kindest/node:v1.19.16"),
    ("v3.4.1", "kindest/node:v1.27.3"),
])
def test_unsupported_version_pairs(ks, image):
    raw = base()
    raw["clusters"][0].update(kubesphereVersion=ks, nodeImage=image)
    p = only(raw, "clusters[0].nodeImage", "is not supported by KubeSphere")
    assert ks in p.message


def test_experimental_pair_is_a_warning():
    raw = base()
    for c in raw["clusters"]:
        c.update(kubesphereVersion="v3.2.1", nodeImage="kindest/node:v1.22.17")
    lab = parse_lab(raw)
    assert any("experimental" in w for w in lab.warnings)


def test_unpinned_node_image():
    raw = base()
    raw["clusters"][0]["nodeImage"] = "kindest/node:latest"
    only(raw, "nodeImage", "no exact vX.Y.Z tag")


def test_image_injection_refused():
    raw = base()
    raw["clusters"][0]["nodeImage"] = "kindest/node:v1.25.16; curl evil"
    only(raw, "nodeImage", "not an image reference")


def test_unknown_cluster_field():
    raw = base()
    raw["clusters"][0]["rol"] = "host"
    only(raw, "clusters[0].rol", "not a known cluster field")


def test_unknown_component():
    raw = base()
    raw["clusters"][0]["components"] = {"devopz": True}
    only(raw, "components.devopz", "not a KubeSphere 3.x optional component")


def test_overlapping_subnets():
    raw = base()
    raw["clusters"][0]["podSubnet"] = "10.244.0.0/16"
    raw["clusters"][1]["podSubnet"] = "10.244.128.0/17"
    only(raw, "podSubnet", "overlaps podSubnet of cluster 'host'")


def test_existing_needs_kubernetes_version_and_one_kubeconfig():
    raw = base()
    raw["clusters"][1] = {"name": "member", "role": "member", "backend": "existing"}
    found = problems(raw)
    fields = " ".join(p.field for p in found)
    assert "kubernetesVersion" in fields and "kubeconfigPath" in fields


def test_loopback_opt_out_refused_for_kind():
    raw = base()
    raw["clusters"][1]["allowLoopbackJoin"] = True
    only(raw, "allowLoopbackJoin", "cannot be used with the kind backend")


def test_loopback_opt_out_needs_reason():
    raw = base()
    raw["clusters"][1] = {"name": "member", "role": "member", "backend": "existing", "kubernetesVersion": "v1.26.15",
                          "kubeconfigPath": "/x", "allowLoopbackJoin": True}
    only(raw, "loopbackReason", "required")
    raw["clusters"][1]["loopbackReason"] = "all API servers run on this machine"
    lab = parse_lab(raw)
    assert lab.cluster("member").allow_loopback_join
    assert any("loopback join rule switched off" in w for w in lab.warnings)


def test_copy_mode_with_two_hosts_refused():
    raw = base()
    raw["clusters"].append({"name": "host2", "role": "host", "nodeImage": "kindest/node:v1.25.16"})
    raw["joins"].append({"member": "member", "host": "host2"})
    raw.update(allowMultipleHosts=True, jwtSecretMode="copy")
    only(raw, "jwtSecretMode", "several hosts")


def test_bad_jwt_mode_and_timeouts():
    raw = copy.deepcopy(base())
    raw.update(jwtSecretMode="random", installTimeoutSeconds="soon")
    found = {p.field for p in problems(raw)}
    assert {"kslab:jwtSecretMode", "kslab:installTimeoutSeconds"} <= found


def test_error_message_lists_all_problems():
    raw = base()
    raw["clusters"][0]["role"] = "boss"
    raw["clusters"][1]["name"] = "Member"
    with pytest.raises(LabConfigError) as info:
        parse_lab(raw)
    text = str(info.value)
    assert "nothing was created" in text and "boss" in text and "Member" in text


def test_warn_mode_downgrades_only_policy_guarded_problems():
    raw = base()
    raw["validationMode"] = "warn"
    raw["clusters"][1]["consoleHostPort"] = 30880   # guarded by kslab-duplicate-port-or-name
    raw["clusters"][0]["role"] = "boss"             # guarded by kslab-invalid-role (join role too)
    lab = parse_lab(raw)
    assert lab.cluster("host").role == "boss" and len(lab.joins) == 1
    assert any("left to policy kslab-duplicate-port-or-name" in w for w in lab.warnings)
    raw["clusters"][1]["name"] = "host"             # structural: resource names would collide
    with pytest.raises(LabConfigError) as info:
        parse_lab(raw)
    fields = [p.field for p in info.value.problems]
    assert "kslab:clusters[1].name" in fields and all(p.policy is None for p in info.value.problems)


def test_bad_validation_mode():
    raw = base()
    raw["validationMode"] = "lenient"
    only(raw, "kslab:validationMode", "not a validation mode")


def test_the_settings_are_the_models_alone():
    """Pulumi.yaml declares no config (a declared key without a default is required by the engine, and a declared
    default is a second copy); the model describes every lab-wide setting it gives a default."""
    import os

    import yaml

    from kslab.model.stack_config import STRING_KEYS, STRUCTURED_KEYS
    from kslab.model.types import LAB_SETTINGS
    from tests.support.mock_run import ROOT

    with open(os.path.join(ROOT, "Pulumi.yaml")) as fh:
        assert "config" not in yaml.safe_load(fh)
    assert set(LAB_SETTINGS) <= set(STRUCTURED_KEYS) | set(STRING_KEYS)
    assert all(setting.description.strip() for setting in LAB_SETTINGS.values())


def test_the_loader_applies_the_model_defaults():
    from kslab.model.types import LAB_DEFAULTS
    lab = parse_lab({"clusters": [{"name": "a"}]})
    c = lab.clusters[0]
    assert LAB_DEFAULTS == {
        "jwtSecretMode": lab.jwt_secret_mode, "allowMultipleHosts": lab.allow_multiple_hosts,
        "kubesphereVersion": c.kubesphere_version, "nodeImage": c.node_image, "registry": lab.registry,
        "kindWait": lab.kind_wait, "installTimeoutSeconds": lab.install_timeout_seconds,
        "joinTimeoutSeconds": lab.join_timeout_seconds, "unjoinTimeoutSeconds": lab.unjoin_timeout_seconds,
        "validationMode": lab.validation_mode, "namespaceOverride": lab.namespace_override, "zone": lab.zone,
    }
