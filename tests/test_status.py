"""`make status` and `make graph` without clusters: findings from recorded facts, the JSON shape, the table,
the stack-file-only picture of every shipped and test stack (SVG parsed for nodes, edges and colours)."""
import glob
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from kslab.cli import findings as st
from kslab.cli import graph, stack_spec
from kslab.cli import status as ops_status
from tests.support.mock_run import ROOT

SVG = "{http://www.w3.org/2000/svg}"
STACKS = sorted(glob.glob(os.path.join(ROOT, "stacks", "Pulumi.*.yaml"))
                + [p for p in glob.glob(os.path.join(ROOT, "tests", "stacks", "Pulumi.*.yaml"))
                   if not p.endswith("Pulumi.broken.yaml")])


def healthy_lab() -> st.LabStatus:
    def cluster(name, role):
        return st.ClusterStatus(name, "kind", role, "v3.4.1", "v1.26.13", f"http://127.0.0.1:3088{len(name)}",
                                reachable=True, cc_found=True, cc_role=role, reported_role=role,
                                installed_version="v3.4.1", components={"monitoring": "enabled"},
                                expected_components=["monitoring"], jwt_in_cc=True)
    join = st.JoinStatus("member", "host", cluster_found=True, conditions={"Ready": "True", "Federated": "True"},
                         kubefed_ready="True", kubefed_offline=False, member_reachable=True, jwt_matches=True)
    return st.LabStatus("s", True, [cluster("host", "host"), cluster("member", "member")], [join])


def kinds(lab) -> list[str]:
    return [f.kind for f in st.findings(lab)]


def test_a_healthy_lab_has_no_finding():
    assert st.findings(healthy_lab()) == []


def test_a_lab_never_brought_up_is_one_finding_that_says_make_up():
    lab = st.LabStatus("s", False, [], [])
    (only,) = st.findings(lab)
    assert only.kind == "not-up" and only.fix == "make up STACK=s"


def test_a_member_kubesphere_config_edited_by_hand_is_fixed_by_its_installer_restart():
    lab = healthy_lab()
    lab.joins[0].jwt_matches, lab.clusters[1].jwt_in_cc = False, False
    (f,) = st.findings(lab)
    assert f.kind == "jwt-mismatch" and "member's kubesphere-config was edited" in f.message
    assert "kubeconfig-member" in f.fix and "rollout restart deploy/ks-installer" in f.fix


def test_a_host_kubesphere_config_edited_by_hand_names_the_host():
    lab = healthy_lab()
    lab.joins[0].jwt_matches, lab.clusters[0].jwt_in_cc = False, False
    (f,) = st.findings(lab)
    assert "host's kubesphere-config was edited" in f.message and "kubeconfig-host " in f.fix


def test_a_jwt_secret_changed_in_the_member_cc_is_fixed_by_refresh_and_up():
    lab = healthy_lab()
    lab.joins[0].jwt_matches = False  # both kubesphere-configs match their own cc: the member's cc moved
    (f,) = st.findings(lab)
    assert f.kind == "jwt-mismatch" and f.fix.startswith("tools/lab.sh refresh s --yes && make up STACK=s")


def test_a_cc_role_edited_by_hand_is_role_drift():
    lab = healthy_lab()
    lab.clusters[1].cc_role = "none"
    assert kinds(lab) == ["role-drift"]


def test_a_role_the_installer_has_not_applied_is_role_drift():
    lab = healthy_lab()
    lab.clusters[1].reported_role = "none"
    (f,) = st.findings(lab)
    assert f.kind == "role-drift" and "has not applied" in f.message


def test_v321_reports_not_host_for_a_member_which_is_no_drift():
    lab = healthy_lab()
    lab.clusters[1].reported_role = "not host"
    assert st.findings(lab) == []


def test_an_offline_member_warns_of_the_cache_sync_hang():
    lab = healthy_lab()
    lab.joins[0].kubefed_offline = True
    (f,) = st.findings(lab)
    assert f.kind == "member-unreachable" and "cache sync" in f.message and "KSLAB_FORCE_UNJOIN=1" in f.fix


def test_an_unreachable_kind_cluster_is_fixed_by_starting_its_node():
    lab = healthy_lab()
    lab.clusters[1].reachable, lab.joins[0].member_reachable = False, False
    assert kinds(lab) == ["cluster-unreachable", "member-unreachable"]
    fix = st.findings(lab)[0].fix
    assert fix.startswith("docker start member-control-plane") and "tools/lab.sh refresh s --yes" in fix


def test_a_cluster_that_refuses_the_lab_s_credentials_is_not_called_unreachable():
    lab = healthy_lab()
    lab.clusters[1].reachable, lab.clusters[1].refused = False, True
    lab.clusters[1].unreachable_reason = "API server answered 403 Forbidden"
    assert kinds(lab)[0] == "cluster-refuses"


def test_a_cluster_declared_after_the_last_up_is_not_up():
    lab = healthy_lab()
    lab.clusters.append(st.ClusterStatus("new", "kind", "none", "v3.4.1", "v1.26.13", None, in_outputs=False))
    (f,) = st.findings(lab)
    assert (f.kind, f.subject, f.fix) == ("not-up", "cluster new", "make up STACK=s")


def test_a_host_whose_join_objects_cannot_be_read_says_so():
    lab = healthy_lab()
    lab.joins[0].read_error = "cluster 'host': API server answered 403 Forbidden"
    assert kinds(lab) == ["join-unreadable"] and st.join_state(lab.joins[0]) == st.UNKNOWN


def test_a_cluster_deleting_on_its_finalizer_for_long_is_stuck():
    lab = healthy_lab()
    lab.joins[0].deleting_since, lab.joins[0].finalizers = "2026-11-28T00:00:00Z", ["finalizer.cluster.kubesphere.io"]
    lab.joins[0].deleting_seconds = st.STUCK_DELETING_SECONDS
    assert "cluster-stuck-deleting" in kinds(lab)


def test_a_stuck_cluster_is_fixed_narrowest_first_and_destroy_comes_last():
    # issue #20, defect 10: the first fix offered was a destroy of the whole lab
    lab = healthy_lab()
    lab.joins[0].deleting_since, lab.joins[0].finalizers = "2026-11-28T00:00:00Z", ["finalizer.cluster.kubesphere.io"]
    lab.joins[0].deleting_seconds = st.STUCK_DELETING_SECONDS
    fix = next(f.fix for f in st.findings(lab) if f.kind == "cluster-stuck-deleting")
    assert fix.startswith("bring member back")
    steps = [fix.index("bring member back"), fix.index("KSLAB_FORCE_UNJOIN=1 make up"),
             fix.index("KSLAB_FORCE_UNJOIN=1 make destroy")]
    assert steps == sorted(steps) and fix.endswith("which removes the whole lab (every cluster kslab made, every "
                                                   "install and join)")


def test_a_cluster_deleting_for_a_few_seconds_is_an_unjoin_under_way():
    lab = healthy_lab()
    lab.joins[0].deleting_since, lab.joins[0].finalizers = "2026-11-28T00:00:00Z", ["finalizer.cluster.kubesphere.io"]
    lab.joins[0].deleting_seconds = 3
    assert "cluster-stuck-deleting" not in kinds(lab)


def test_an_insecure_join_is_a_finding():
    lab = healthy_lab()
    lab.joins[0].insecure = True
    assert kinds(lab) == ["insecure-join"]


def test_the_clusters_join_kubeconfig_is_read_for_insecure_skip_tls_verify():
    import base64
    kubeconfig = ("clusters:\n- name: m\n  cluster:\n    server: https://10.0.0.2:6443\n"
                  "    insecure-skip-tls-verify: true\n")
    obj = {"spec": {"connection": {"kubeconfig": base64.b64encode(kubeconfig.encode()).decode()}}}
    assert ops_status._insecure(obj) is True
    assert ops_status._insecure({"spec": {"connection": {"kubeconfig": base64.b64encode(b"clusters: []").decode()}}}) \
        is False


def test_objects_two_hosts_federate_and_churning_objects_are_findings():
    lab = healthy_lab()
    lab.shared_objects = [st.SharedObject("member", "users", "dev", ["host", "host2", "host3"], False)]
    lab.churning = [st.ChurningObject("member", "users", "dev", 5, 4.0)]
    fs = st.findings(lab)
    assert [f.kind for f in fs] == ["federated-clash", "churn"]
    assert "delete it on host2, host3" in fs[0].fix and "users.iam.kubesphere.io dev" in fs[0].fix
    assert "overwritten back and forth" in fs[0].message


def test_a_built_in_object_two_hosts_federate_is_never_to_be_deleted():
    lab = healthy_lab()
    lab.shared_objects = [st.SharedObject("member", "globalroles", "platform-admin", ["host", "host2"], True,
                                          st.is_built_in("globalroles", "platform-admin"))]
    (f,) = st.findings(lab)
    assert "built-in" in f.message and "identical templates" in f.message
    assert "do not delete it" in f.fix and "remove one of the member's joins" in f.fix and "delete " not in \
        f.fix.replace("do not delete it", "")


def test_placement_follows_kubefed():
    assert ops_status._placed_on({"clusterSelector": {}}, "m")
    assert ops_status._placed_on({"clusters": [{"name": "m"}], "clusterSelector": {}}, "m")
    assert not ops_status._placed_on({"clusters": [{"name": "other"}], "clusterSelector": {}}, "m")
    assert not ops_status._placed_on({"clusterSelector": {"matchLabels": {"a": "b"}}}, "m")


def test_a_failed_component_is_a_finding_and_a_failed_cluster():
    lab = healthy_lab()
    lab.clusters[0].components["monitoring"] = "failed"
    assert kinds(lab) == ["install-failed"] and st.cluster_state(lab.clusters[0]) == st.FAILED


def test_states_follow_the_facts():
    lab = healthy_lab()
    assert [st.cluster_state(c) for c in lab.clusters] == [st.READY, st.READY]
    lab.clusters[0].installed_version = None
    assert st.cluster_state(lab.clusters[0]) == st.WAITING
    lab.joins[0].conditions["Ready"] = "False"
    assert st.join_state(lab.joins[0]) == st.WAITING
    lab.joins[0].member_reachable = False
    assert st.join_state(lab.joins[0]) == st.FAILED
    assert st.cluster_state(st.ClusterStatus("x", "kind", "none", "v3.4.1", "v1.26.13", None)) == st.UNKNOWN


def test_the_json_shape():
    lab = healthy_lab()
    lab.joins[0].jwt_matches = False
    doc = json.loads(json.dumps(st.as_json(lab, st.findings(lab))))
    assert set(doc) == {"stack", "up", "clusters", "joins", "sharedObjects", "churning", "sampleSeconds",
                        "findings", "tenants"}
    assert set(doc["clusters"][0]) == {
        "name", "backend", "role", "kubesphereVersion", "kubernetesVersion", "consoleUrl", "reachable",
        "unreachableReason", "refused", "inOutputs", "ccFound", "ccRole", "reportedRole", "installedVersion",
        "components",
        "expectedComponents", "jwtInCc", "state"}
    assert set(doc["joins"][0]) == {
        "name", "member", "host", "clusterFound", "conditions", "deletingSince", "deletingSeconds", "readError",
        "finalizers", "kubefedReady", "kubefedOffline", "memberReachable", "insecure", "jwtMatches", "state"}
    assert doc["findings"][0].keys() == {"kind", "subject", "message", "fix"}
    assert doc["joins"][0]["state"] == "failed"


def test_the_table_lists_every_cluster_join_and_finding():
    lab = healthy_lab()
    lab.joins[0].insecure = True
    text = st.table(lab, st.findings(lab))
    assert "host/host/host" in text and "member-to-host" in text
    assert "[insecure-join] join member-to-host:" in text and "-> fix:" in text


@pytest.fixture(scope="module")
def test_stacks_project(tmp_path_factory):
    """Test stacks live under tests/stacks; status reads them from a project whose stackConfigDir holds them."""
    project = tmp_path_factory.mktemp("project")
    os.makedirs(project / "stacks")
    shutil.copy(os.path.join(ROOT, "Pulumi.yaml"), project)
    for p in glob.glob(os.path.join(ROOT, "tests", "stacks", "Pulumi.*.yaml")):
        shutil.copy(p, project / "stacks")
    return str(project)


def _stack_and_project(path, test_stacks_project):
    stack = os.path.basename(path)[len("Pulumi."):-len(".yaml")]
    return stack, (test_stacks_project if os.sep + "tests" + os.sep in path else ROOT)


@pytest.mark.parametrize("path", STACKS, ids=os.path.basename)
def test_status_reads_every_stack_file_before_any_up(path, test_stacks_project):
    stack, project = _stack_and_project(path, test_stacks_project)
    spec = stack_spec.load_spec(project, stack)
    lab = ops_status.collect(spec, stack, {}, 0)
    assert [c.name for c in lab.clusters] == [c.name for c in spec.clusters] and kinds(lab) == ["not-up"]


def _svg(path):
    root = ET.parse(path).getroot()
    nodes, edges, legend = {}, {}, set()
    for g in root.iter(f"{SVG}g"):
        gid, cls = g.get("id") or "", g.get("class")
        shape = next((e for e in g.iter() if e.tag in (f"{SVG}path", f"{SVG}polygon")), None)
        if cls == "node" and gid.startswith("cluster-"):
            label = " ".join(t.text or "" for t in g.iter(f"{SVG}text"))
            nodes[gid.removeprefix("cluster-")] = (shape.get("fill"), label)
        elif cls == "edge" and gid.startswith("join-"):
            edges[gid.removeprefix("join-")] = (g.find(f"{SVG}title").text, shape.get("stroke"))
        elif cls == "node" and gid.startswith("legend-"):
            legend.add(gid.removeprefix("legend-"))
    return nodes, edges, legend


requires_dot = pytest.mark.skipif(shutil.which("dot") is None,
                                  reason="SKIPPED LOUDLY: Graphviz `dot` is not installed (tools/graph/dot.sh)")


@requires_dot
@pytest.mark.parametrize("path", STACKS, ids=os.path.basename)
def test_graph_draws_every_stack_from_its_file_alone(path, tmp_path, test_stacks_project):
    stack, project = _stack_and_project(path, test_stacks_project)
    proc = subprocess.run([sys.executable, "-m", "kslab.cli.status", "graph", "--offline", "--stack", stack,
                           "--project-dir", project, "--out-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    spec = stack_spec.load_spec(project, stack)
    nodes, edges, legend = _svg(tmp_path / f"{stack}.svg")
    unknown = graph.STATE_COLOURS[st.UNKNOWN]
    assert set(nodes) == {c.name for c in spec.clusters}
    assert set(edges) == {j.name for j in spec.joins}
    for c in spec.clusters:
        fill, text = nodes[c.name]
        assert fill == unknown.fill and c.role in text and c.kubesphere_version in text
    for j in spec.joins:
        assert edges[j.name] == (f"{j.member}&#45;&gt;{j.host}", unknown.line) or \
            edges[j.name] == (f"{j.member}->{j.host}", unknown.line)
    assert legend == set(st.STATES)
    assert (tmp_path / f"{stack}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@requires_dot
def test_graph_colours_each_cluster_and_join_by_its_state(tmp_path):
    lab = healthy_lab()
    lab.clusters.append(st.ClusterStatus("idle", "kind", "none", "v3.4.1", "v1.26.13", None))
    lab.clusters[0].installed_version = None          # waiting
    lab.joins[0].kubefed_offline = True               # failed
    from kslab.model.spec import parse_lab
    written = graph.write(parse_lab({"clusters": [{"name": "x"}]}), lab, str(tmp_path), "coloured")
    assert [os.path.basename(p) for p in written] == ["coloured.svg", "coloured.png"]
    nodes, edges, _ = _svg(tmp_path / "coloured.svg")
    assert nodes["host"][0] == graph.STATE_COLOURS[st.WAITING].fill
    assert nodes["member"][0] == graph.STATE_COLOURS[st.READY].fill
    assert nodes["idle"][0] == graph.STATE_COLOURS[st.UNKNOWN].fill
    assert edges["member-to-host"][1] == graph.STATE_COLOURS[st.FAILED].line


def test_graph_without_dot_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(graph.GraphError, match="apt-get install graphviz"):
        graph.write(None, healthy_lab(), str(tmp_path), "x")


def test_a_sample_window_out_of_bounds_is_refused_before_anything_is_read(capsys):
    with pytest.raises(SystemExit) as exit_:
        ops_status.main(["status", "--stack", "standalone", "--project-dir", ROOT, "--sample-seconds", "999"])
    assert exit_.value.code == 2 and "between 0 and 120" in capsys.readouterr().err


@requires_dot
def test_graph_never_writes_or_removes_a_file_through_a_link_in_the_out_dir(tmp_path):
    # issue #20, defect 7: the source was rendered through <out-dir>/<stack>.gv (following a link) and removed
    outside = tmp_path / "outside.txt"
    outside.write_text("mine")
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.gv").symlink_to(outside)
    (out / "mine.svg").symlink_to(outside)
    from kslab.model.spec import parse_lab
    graph.write(parse_lab({"clusters": [{"name": "x"}]}), healthy_lab(), str(out), "mine")
    assert outside.read_text() == "mine" and (out / "mine.gv").is_symlink()
    assert not (out / "mine.svg").is_symlink() and (out / "mine.svg").read_text().startswith("<?xml")
    assert sorted(p.name for p in out.iterdir()) == ["mine.gv", "mine.png", "mine.svg"]


# --- tenants --------------------------------------------------------------------------------------------------

def _with_tenant(kind="user", cluster="member", present=False, federated=True):
    lab = healthy_lab()
    lab.tenants = [st.TenantPlacement(kind, "ann", "host", "host", present=True),
                   st.TenantPlacement(kind, "ann", "host", cluster, present=present, federated=federated)]
    return lab


def test_tenants_everywhere_they_are_placed_are_no_finding():
    assert st.findings(_with_tenant(present=True)) == []


def test_a_tenant_missing_on_its_home_says_make_up():
    lab = _with_tenant(cluster="host")
    (f,) = st.findings(lab)
    assert f.kind == "tenant-missing" and f.subject == "user ann on host" and "make up STACK=s" in f.fix


def test_a_tenant_on_a_member_not_joined_says_the_join_is_why():
    lab = _with_tenant()
    lab.joins[0].conditions = {"Ready": "False"}
    f = [f for f in st.findings(lab) if f.kind == "tenant-missing"][0]
    assert "not joined to host" in f.message and "member-to-host" in f.fix


def test_a_tenant_its_host_never_federated_says_so():
    (f,) = st.findings(_with_tenant(kind="workspace", federated=False))
    assert "no FederatedWorkspace on host" in f.message


def test_a_federated_tenant_not_propagated_yet_says_kubefed():
    (f,) = st.findings(_with_tenant())
    assert "not propagated there yet by KubeFed of host" in f.message


def test_a_tenant_on_an_unreachable_cluster_is_left_to_that_clusters_finding():
    lab = _with_tenant(present=None)
    lab.clusters[1].reachable = False
    assert "tenant-missing" not in kinds(lab)


def test_a_user_declared_on_two_hosts_that_flaps_is_named_with_the_fix():
    lab = healthy_lab()
    lab.tenants = [st.TenantPlacement("user", "ann", h, h, present=True) for h in ("host", "host2")]
    lab.shared_objects = [st.SharedObject("member", "users", "ann", ["host", "host2"], False)]
    f = [f for f in st.findings(lab) if f.kind == "tenant-flapping"][0]
    assert f.subject == "user ann" and "kubesphere#6466" in f.message and "one host" in f.fix


def test_the_demo_stack_declares_where_each_tenant_goes():
    from kslab.model.spec import parse_lab
    from kslab.model.stack_config import read_stack_file
    raw, keys = read_stack_file(ROOT, "demo")
    placed = {(t.kind, t.name, t.cluster) for t in st.declared(parse_lab(raw, keys), "demo").tenants}
    assert ("user", "pat", "member2") in placed and ("workspace", "lab-only", "member2") in placed
    assert ("workspace", "lab-only", "host") not in placed and ("project", "sandbox", "member2") in placed


def test_the_graph_draws_each_workspace_placement_coloured_by_whether_it_is_there():
    lab = healthy_lab()
    lab.tenants = [st.TenantPlacement("workspace", "shop", "host", "host", present=True),
                   st.TenantPlacement("workspace", "shop", "host", "member", present=False),
                   st.TenantPlacement("project", "web", "member", "member", workspace="shop")]
    source = graph.dot_source(lab).source
    assert 'id="workspace-shop"' in source and "projects: web@member" in source
    assert 'id="placement-shop-host"' in source and 'id="placement-shop-member"' in source
    member_edge = next(line for line in source.splitlines() if 'id="placement-shop-member"' in line)
    assert graph.STATE_COLOURS[st.WAITING].line in member_edge
