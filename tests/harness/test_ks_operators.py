"""The fixture that plays KubeSphere's controllers behaves like upstream (not like kslab's assumptions), on
real API servers. Each test names the upstream behaviour it pins; see tests/harness/ks_operators.py."""
import base64
import threading
import time

import pytest
import yaml
from kubernetes import client, config, utils, watch
from kubernetes.client.rest import ApiException

from kslab.model.spec import parse_lab
from kslab.render import manifests as render
from tests.harness.ks_operators import Operator
from tests.harness.live_cluster import LiveCluster, find_bin_dir

pytestmark = pytest.mark.live

GROUP, VERSION, NS = "installer.kubesphere.io", "v1alpha1", "kubesphere-system"


def api_of(cluster: LiveCluster) -> client.ApiClient:
    return config.new_client_from_config_dict(yaml.safe_load(cluster.kubeconfig_path.read_text()))


@pytest.fixture
def world(tmp_path):
    """Two live clusters and the fixture playing KubeSphere on them (quick installs)."""
    bin_dir = find_bin_dir()
    clusters = {n: LiveCluster(n, tmp_path / n, bin_dir).start() for n in ("host", "member")}
    op = Operator({n: c.kubeconfig_path.read_text() for n, c in clusters.items()}, install_delay=1.0,
                  interval=0.2).start()
    yield clusters, op
    op.stop()
    for c in clusters.values():
        c.stop()


def install(cluster: LiveCluster, version: str, role: str, spec_override=None, jwt: str = "") -> str:
    """The installer objects and a cc, as kslab applies them (or with a spec of the test's own); the cc's uid."""
    install_objects(cluster, version)
    return create_cc(cluster, version, role, spec_override, jwt)


def install_objects(cluster: LiveCluster, version: str) -> None:
    api = api_of(cluster)
    for obj in render.installer_objects(version):
        utils.create_from_dict(api, obj)
    until(lambda: _cc_listable(api), what="the cc CRD")


def _cc_listable(api) -> bool:
    try:
        client.CustomObjectsApi(api).list_namespaced_custom_object(GROUP, VERSION, NS, "clusterconfigurations")
        return True
    except ApiException:
        return False


def create_cc(cluster: LiveCluster, version: str, role: str, spec_override=None, jwt: str = "") -> str:
    """Create the cc; its uid, from the create's own answer (a read after it may already see a migrated cc)."""
    lab = parse_lab({"clusters": [{"name": "c", "role": role, "backend": "existing", "kubernetesVersion": "v1.26.13",
                                   "kubesphereVersion": version, "kubeconfigPath": "unused"}]})
    api = api_of(cluster)
    cc = render.cluster_configuration(lab.clusters[0], jwt)
    if spec_override is not None:
        cc["spec"] = spec_override
    created = client.CustomObjectsApi(api).create_namespaced_custom_object(GROUP, VERSION, NS,
                                                                           "clusterconfigurations", cc)
    return created["metadata"]["uid"]


def cc_of(cluster: LiveCluster) -> dict | None:
    try:
        return client.CustomObjectsApi(api_of(cluster)).get_namespaced_custom_object(
            GROUP, VERSION, NS, "clusterconfigurations", "ks-installer")
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def until(predicate, timeout=30.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_v3_4_migration_step_raises_on_a_cc_without_common_es(world):
    """installRunner.py@v3.4.1 reads spec.common.es unconditionally: the hook raises, no status is ever written."""
    clusters, op = world
    install(clusters["host"], "v3.4.1", "none", spec_override={"common": {"core": {}}, "terminal": {"timeout": 600}})
    until(lambda: op.actor("host").hook_errors, what="the hook to fail")
    time.sleep(2)
    assert (cc_of(clusters["host"]) or {}).get("status") is None
    assert "common.es" in op.actor("host").hook_errors[0]


def test_v3_4_migration_recreates_a_cc_without_terminal(world):
    """No `terminal`: the cc is deleted and created again with only name, namespace and version label."""
    clusters, op = world
    lab = parse_lab({"clusters": [{"name": "c", "backend": "existing", "kubernetesVersion": "v1.26.13",
                                   "kubeconfigPath": "unused"}]})
    spec = render.cluster_configuration(lab.clusters[0], "")["spec"]
    del spec["terminal"]
    first_uid = install(clusters["host"], "v3.4.1", "none", spec_override=spec)
    until(lambda: op.actor("host").recreated, what="the migration")
    cc = until(lambda: cc_of(clusters["host"]))
    assert cc["metadata"]["uid"] != first_uid
    assert cc["metadata"]["labels"] == {"version": "v3.4.1"}, "kslab's labels are lost"
    assert "annotations" not in cc["metadata"]


def test_status_order_and_no_reset_on_a_rerun(world):
    """ks-core writes core.status early, kubesphere-config comes after the components, core.version last,
    and a re-run resets nothing (every write is a merge patch)."""
    clusters, op = world
    # Every write, from API watches (not sampling, which a busy machine can make miss a short-lived state),
    # merged in etcd's order: one etcd, so resourceVersions are its revisions.
    writes: list[tuple[int, str, dict]] = []
    watchers = [watch.Watch(), watch.Watch()]
    custom_api = client.CustomObjectsApi(api_of(clusters["host"]))
    core = client.CoreV1Api(api_of(clusters["host"]))
    # Watches from the revision of a list made before the cc is created replay every later write, whenever
    # their connection is made.
    install_objects(clusters["host"], "v3.4.1")
    cc_rv = custom_api.list_namespaced_custom_object(GROUP, VERSION, NS, "clusterconfigurations")["metadata"][
        "resourceVersion"]
    config_rv = core.list_namespaced_config_map(NS).metadata.resource_version
    streams = [
        ("cc", lambda: watchers[0].stream(custom_api.list_namespaced_custom_object, GROUP, VERSION, NS,
                                          "clusterconfigurations", resource_version=cc_rv, timeout_seconds=120)),
        ("config", lambda: watchers[1].stream(core.list_namespaced_config_map, NS, resource_version=config_rv,
                                              field_selector="metadata.name=kubesphere-config", timeout_seconds=120)),
    ]

    stopping, broken = threading.Event(), []

    def follow(kind, stream):
        try:
            for event in stream():
                obj = event["object"]
                if isinstance(obj, dict):
                    writes.append((int(obj["metadata"]["resourceVersion"]), kind, obj))
                else:
                    writes.append((int(obj.metadata.resource_version), kind, {}))
        except Exception as exc:  # a watch cut before the test stops it would hide writes
            if not stopping.is_set():
                broken.append(f"{kind}: {exc!r}")
    threads = [threading.Thread(target=follow, args=s, daemon=True) for s in streams]
    for t in threads:
        t.start()
    create_cc(clusters["host"], "v3.4.1", "host", jwt="first-secret-000000000000000000")
    until(lambda: bool(((cc_of(clusters["host"]) or {}).get("status") or {}).get("core", {}).get("version")),
          what="the first run to end")
    time.sleep(1)
    stopping.set()
    for w in watchers:
        w.stop()
    assert not broken, broken
    seen = []
    status, config_written = {}, False
    for _, kind, obj in sorted(writes, key=lambda w: w[0]):
        if kind == "cc":
            status = obj.get("status") or {}
        else:
            config_written = True
        point = (bool((status.get("core") or {}).get("status")), bool(status.get("multicluster")), config_written,
                 bool((status.get("core") or {}).get("version")))
        if not seen or seen[-1] != point:
            seen.append(point)
    assert seen[-1] == (True, True, True, True), seen
    for earlier in seen[:-1]:
        assert not earlier[3], "version is the last write"
        assert not (earlier[2] and not earlier[1]), "kubesphere-config comes after the component statuses"
    assert any(p[0] and not p[2] for p in seen), "core.status is written before kubesphere-config"
    before = cc_of(clusters["host"])["status"]
    custom = client.CustomObjectsApi(api_of(clusters["host"]))
    custom.patch_namespaced_custom_object(GROUP, VERSION, NS, "clusterconfigurations", "ks-installer",
                                          {"spec": {"authentication": {"jwtSecret": "second-secret-0000000000000000"}}})
    until(lambda: cc_of(clusters["host"])["status"]["core"]["enabledTime"] != before["core"]["enabledTime"] or None,
          what="the re-run to start")
    during = cc_of(clusters["host"])["status"]
    assert during["core"]["version"] == "v3.4.1" and during["multicluster"]["status"] == "enabled", \
        "a re-run keeps the old status: old values prove nothing about the new run"


def test_multicluster_controller_only_on_a_host_and_its_own_cluster(world):
    clusters, op = world
    install(clusters["host"], "v3.4.1", "host")
    install(clusters["member"], "v3.4.1", "member")
    until(lambda: op.installs("host") and op.installs("member"), what="both installs")
    own = until(lambda: client.CustomObjectsApi(api_of(clusters["host"])).list_cluster_custom_object(
        "cluster.kubesphere.io", "v1alpha1", "clusters")["items"], what="the host's own Cluster")
    assert own[0]["metadata"]["labels"]["cluster-role.kubesphere.io/host"] == ""
    assert own[0]["metadata"]["name"] == "c", "named multicluster.hostClusterName"
    time.sleep(1)
    assert client.CustomObjectsApi(api_of(clusters["member"])).list_cluster_custom_object(
        "cluster.kubesphere.io", "v1alpha1", "clusters")["items"] == [], "no controller runs on a member"


def join(clusters, op):
    install(clusters["host"], "v3.4.1", "host", jwt="j" * 32)
    install(clusters["member"], "v3.4.1", "member", jwt="j" * 32)
    until(lambda: op.installs("host") and op.installs("member"), what="both installs")
    obj = render.member_cluster_object("member", "host", render.b64(clusters["member"].kubeconfig_path.read_text()),
                                       "existing", member_uid="x")
    custom = client.CustomObjectsApi(api_of(clusters["host"]))
    custom.create_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", obj)

    def ready():
        got = custom.get_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", "member")
        conds = {c["type"]: c["status"] for c in (got.get("status") or {}).get("conditions") or []}
        return got if conds.get("Ready") == "True" else None
    return custom, until(ready, what="Ready")


def test_join_and_what_delete_leaves(world):
    """The join records the member's kube-system UID (v3.4.1); delete unjoins with no member config: the
    host's KubeFedCluster and Secret go, the member keeps kube-federation-system and its ServiceAccount."""
    clusters, op = world
    custom, obj = join(clusters, op)
    member_core = client.CoreV1Api(api_of(clusters["member"]))
    assert obj["status"]["uid"] == member_core.read_namespace("kube-system").metadata.uid
    assert obj["metadata"]["finalizers"] == ["finalizer.cluster.kubesphere.io"]
    member_config = yaml.safe_load(member_core.read_namespaced_config_map("kubesphere-config", NS)
                                   .data["kubesphere.yaml"])
    assert member_config["multicluster"]["clusterName"] == "member"
    custom.delete_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", "member")
    until(lambda: not [c for c in custom.list_cluster_custom_object("cluster.kubesphere.io", "v1alpha1",
                                                                   "clusters")["items"]
                       if c["metadata"]["name"] == "member"], what="the unjoin")
    with pytest.raises(ApiException):
        custom.get_namespaced_custom_object("core.kubefed.io", "v1beta1", "kube-federation-system",
                                            "kubefedclusters", "member")
    assert member_core.read_namespaced_service_account("member-kubesphere", "kube-federation-system")


def test_v3_4_webhook_denies_the_finalizer_removal_with_the_member_gone(world):
    clusters, op = world
    custom, obj = join(clusters, op)
    clusters["member"].stop_apiserver()
    with pytest.raises(ApiException) as denied:
        custom.patch_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", "member",
                                           {"metadata": {"finalizers": None}})
    assert "validating-cluster.kubesphere.io" in str(denied.value.body)
    custom.delete_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", "member")
    time.sleep(3)
    stuck = custom.get_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", "member")
    assert stuck["metadata"]["deletionTimestamp"] and stuck["metadata"]["finalizers"], \
        "the controller's own finalizer removal is denied too (kubesphere#6154)"


def test_the_controller_cannot_use_file_credentials(world, tmp_path):
    """A kubeconfig naming files: the controller's pod has none of them, so no join happens."""
    clusters, op = world
    install(clusters["host"], "v3.4.1", "host")
    until(lambda: op.installs("host"), what="the install")
    doc = yaml.safe_load(clusters["member"].kubeconfig_path.read_text())
    ca = tmp_path / "ca.crt"
    ca.write_bytes(base64.b64decode(doc["clusters"][0]["cluster"].pop("certificate-authority-data")))
    doc["clusters"][0]["cluster"]["certificate-authority"] = str(ca)
    obj = render.member_cluster_object("member", "host", render.b64(yaml.safe_dump(doc)), "existing")
    custom = client.CustomObjectsApi(api_of(clusters["host"]))
    custom.create_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", obj)
    until(lambda: any("certificate-authority file not found" in line for line in op.lines), what="the refusal")
    got = custom.get_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", "member")
    assert not (got.get("status") or {}).get("conditions")
