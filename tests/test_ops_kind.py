"""kind steps against stand-in `kind` and `docker` programs that record their calls:
create is idempotent (adopts its own cluster, never duplicates), refuses a same-named cluster it did not make for
this lab or with another image, delete tolerates a cluster that is already gone and never deletes another lab's,
and kubeconfigs never reach stderr."""
import base64
import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

from kslab.model import contract
from kslab.model import kubeconfig as kc
from tests.support.mock_run import ROOT, fake_kubeconfig

FAKE_KIND = r"""
import os, sys, json, yaml
state = os.environ["FAKE_STATE"]
db = json.load(open(state)) if os.path.exists(state) else {"clusters": {}, "calls": []}
args = sys.argv[1:]
db["calls"].append(args)
def save(): json.dump(db, open(state, "w"))
def arg(flag): return args[args.index(flag) + 1]
if args[:1] == ["version"]:
    print("kind v0.33.0 go1.26.8 linux/amd64")
elif args[:2] == ["get", "clusters"]:
    print("\n".join(db["clusters"]) or "No kind clusters found.", file=sys.stdout if db["clusters"] else sys.stderr)
elif args[:2] == ["create", "cluster"]:
    name = arg("--name")
    if name in db["clusters"]:
        print(f"ERROR: node(s) already exist for a cluster with the name \"{name}\"", file=sys.stderr)
        save()
        sys.exit(1)
    cfg = open(arg("--config")).read()
    nodes = (yaml.safe_load(cfg) or {}).get("nodes") or [{"role": "control-plane"}]
    # as kind does: each node's labels go into its kubeadm config's node-labels
    db["clusters"][name] = {"image": arg("--image"), "config": cfg,
                            "nodes": [{"role": n["role"], "labels": n.get("labels") or {}} for n in nodes],
                            "ports": ["6443/tcp"] + [f"{m['containerPort']}/tcp" for n in nodes
                                                     for m in n.get("extraPortMappings") or []]}
    print("Creating cluster ...", file=sys.stderr)
elif args[:2] == ["get", "kubeconfig"]:
    if db["clusters"].get(arg("--name"), {}).get("stopped"):  # kind reads admin.conf with a docker exec
        print("ERROR: failed to get cluster internal kubeconfig: command \"docker exec\" failed", file=sys.stderr)
        sys.exit(1)
    # each cluster kind makes has a certificate authority of its own
    import base64
    tag = db["clusters"].get(arg("--name"), {}).get("ca", "lab-ca") or "unreadable"
    pem = "-----BEGIN CERTIFICATE-----\n" + base64.b64encode(tag.encode()).decode() + "\n-----END CERTIFICATE-----\n"
    print(KUBECONFIG.replace("NAME", arg("--name")).replace("Q0E=", base64.b64encode(pem.encode()).decode()))
elif args[:2] == ["delete", "cluster"]:
    db["clusters"].pop(arg("--name"), None)
save()
"""

FAKE_DOCKER = r"""
import io, os, sys, json, tarfile
db = json.load(open(os.environ["FAKE_STATE"])) if os.path.exists(os.environ["FAKE_STATE"]) else {"clusters": {}}
args = sys.argv[1:]
def node_names(name, cluster):
    return [f"{name}-control-plane" if i == 0 else f"{name}-{n['role']}{i}" for i, n in enumerate(cluster["nodes"])]
def find(container):
    for name, cluster in db["clusters"].items():
        for node, spec in zip(node_names(name, cluster), cluster["nodes"]):
            if node == container:
                return name, cluster, spec
    sys.exit(1)
if args[:1] == ["info"] or args[:2] == ["image", "inspect"]:
    print("27.0.0")
elif args[:2] == ["ps", "-a"]:
    name = args[args.index("--filter") + 1].rsplit("=", 1)[1]
    cluster = db["clusters"].get(name)
    for node, spec in zip(node_names(name, cluster), cluster["nodes"]) if cluster else ():
        print(node, spec["role"])
elif args[:1] == ["cp"]:
    name, cluster, spec = find(args[1].split(":")[0])
    labels = ",".join(f"{k}={v}" for k, v in spec["labels"].items())
    body = f'nodeRegistration:\n  kubeletExtraArgs:\n    node-labels: "{labels}"\n'.encode()
    if args[1].endswith("/etc/kubernetes/pki/ca.crt"):  # the node's CA, as kubeadm wrote it (stopped nodes too)
        import base64
        if cluster.get("ca", "lab-ca") is None:
            sys.exit(1)
        tag = cluster.get("ca", "lab-ca").encode()
        body = b"-----BEGIN CERTIFICATE-----\n" + base64.b64encode(tag) + b"\n-----END CERTIFICATE-----\n"
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("kubeadm.conf")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    sys.stdout.buffer.write(out.getvalue())
elif args[:1] == ["inspect"]:
    name, cluster, spec = find(args[-1])
    fmt = args[args.index("--format") + 1]
    if ".Config.Image" in fmt:
        print(cluster["image"])
    elif "PortBindings" in fmt:
        print(json.dumps({p: [{"HostIp": "0.0.0.0", "HostPort": "1"}] for p in cluster["ports"]}))
    else:
        print("172.18.0.7")
else:
    sys.exit(1)
"""

FAKE_KUBECTL = r"""
print("clientVersion:\n  gitVersion: v1.26.13")
"""

KIND_CONFIG = "kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n"


@pytest.fixture
def fakes(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    kubeconfig = fake_kubeconfig("NAME", "https://127.0.0.1:41234")
    for name, body in (("kind", FAKE_KIND.replace("KUBECONFIG", repr(kubeconfig))), ("docker", FAKE_DOCKER),
                       ("kubectl", FAKE_KUBECTL)):
        path = bindir / name
        path.write_text(f"#!{sys.executable}\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "state.json"
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", FAKE_STATE=str(state),
               KSLAB_CLUSTER="host", KSLAB_NODE_IMAGE="kindest/node:v1.25.16", KSLAB_STACK="kt-lab",
               KSLAB_KIND_CONFIG=KIND_CONFIG, KSLAB_KIND_WAIT="1s")

    def run(step, **extra):
        return subprocess.run([sys.executable, "-m", "kslab.steps", step], cwd=ROOT,
                              env={**env, **extra}, capture_output=True, text=True, timeout=60)

    def db():
        return json.loads(state.read_text())

    run.state = state
    return run, db


def made_by_hand(run, name="host", labels=None, ports=("6443/tcp",), ca="lab-ca", stopped=False):
    """A kind cluster that exists before the step: `kind create cluster --name host` by hand (no labels, the API
    server's port only), or one with the given node labels and published ports."""
    db = json.loads(run.state.read_text()) if run.state.exists() else {"clusters": {}, "calls": []}
    db["clusters"][name] = {"image": "kindest/node:v1.25.16", "config": "",
                            "nodes": [{"role": "control-plane", "labels": labels or {}}], "ports": list(ports),
                            "ca": ca, "stopped": stopped}
    run.state.write_text(json.dumps(db))


def test_create_then_adopt(fakes):
    run, db = fakes
    first = run("kind-create")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["containerIp"] == "172.18.0.7"
    assert yaml.safe_load(result["kubeconfig"])["current-context"] == "kind-host"
    internal = yaml.safe_load(result["internalKubeconfig"])
    assert internal["clusters"][0]["cluster"]["server"] == "https://172.18.0.7:6443"
    assert "client-key-data" not in first.stderr and "certificate" not in first.stderr

    second = run("kind-create")
    assert second.returncode == 0 and "adopting it" in second.stderr
    creates = [c for c in db()["calls"] if c[:2] == ["create", "cluster"]]
    assert len(creates) == 1, "an existing cluster must be adopted, not created again"
    assert json.loads(second.stdout)["containerIp"] == "172.18.0.7"


def test_same_name_other_image_is_refused(fakes):
    run, db = fakes
    assert run("kind-create").returncode == 0
    other = run("kind-create", KSLAB_NODE_IMAGE="kindest/node:v1.19.16")
    assert other.returncode == 1
    assert "already exists with image kindest/node:v1.25.16" in other.stderr and "kind delete cluster" in other.stderr


def test_delete_tolerates_gone_cluster(fakes):
    run, db = fakes
    assert run("kind-create").returncode == 0
    assert run("kind-delete").returncode == 0
    assert "host" not in db()["clusters"]
    again = run("kind-delete")
    assert again.returncode == 0 and "already gone" in again.stderr


def test_kind_create_passes_validated_args_only(fakes):
    run, db = fakes
    assert run("kind-create").returncode == 0
    create = next(c for c in db()["calls"] if c[:2] == ["create", "cluster"])
    assert create[create.index("--name") + 1] == "host"
    assert create[create.index("--image") + 1] == "kindest/node:v1.25.16"
    assert create[create.index("--wait") + 1] == "1s"


# --- only the lab's own clusters (#25 item 1) --------------------------------------------------------

def test_create_marks_every_node_of_the_config_it_writes(fakes):
    """kind-create labels every node of the kind config with this lab's id; the program's config stays as given."""
    run, db = fakes
    two_nodes = KIND_CONFIG + "nodes:\n- role: control-plane\n  labels: {tier: a}\n- role: worker\n"
    assert run("kind-create", KSLAB_KIND_CONFIG=two_nodes).returncode == 0
    lab = contract.lab_id("kt-lab")
    nodes = yaml.safe_load(db()["clusters"]["host"]["config"])["nodes"]
    assert [n["labels"] for n in nodes] == [{"tier": "a", contract.LAB_LABEL: lab}, {contract.LAB_LABEL: lab}]
    # a config naming no node: kind's default, one control-plane, marked
    assert run("kind-create", KSLAB_CLUSTER="other").returncode == 0
    assert yaml.safe_load(db()["clusters"]["other"]["config"])["nodes"] == [
        {"role": "control-plane", "labels": {contract.LAB_LABEL: lab}}]


def test_a_cluster_made_by_hand_is_refused_and_never_touched(fakes):
    run, db = fakes
    made_by_hand(run)
    proc = run("kind-create")
    assert proc.returncode == 1 and proc.stdout == ""
    assert "a kind cluster named 'host' already exists" in proc.stderr
    assert "rename the cluster in the stack file" in proc.stderr and "`kind delete cluster --name host`" in proc.stderr
    assert [c[:2] for c in db()["calls"] if c[0] in ("create", "delete")] == []


def test_a_rerun_of_create_keeps_the_cluster_an_earlier_kslab_made(fakes):
    """The create step runs again when its settings change (an update: the plugin says the resource is in the
    stack's state); an unmarked cluster is then one an earlier kslab made for this stack, and is kept. The same
    cluster seen by a first create (not in the state) is refused; another lab's is refused either way."""
    run, db = fakes
    made_by_hand(run, ports=("6443/tcp", "30880/tcp"))
    rerun = run("kind-create", KSLAB_STEP_IN_STATE="1")
    assert rerun.returncode == 0 and "adopting it" in rerun.stderr, rerun.stderr
    assert [c[:2] for c in db()["calls"] if c[0] in ("create", "delete")] == []
    assert run("kind-create").returncode == 1, "a first create never takes an unmarked cluster"


def test_a_rerun_of_create_refuses_another_labs_cluster(fakes):
    run, db = fakes
    assert run("kind-create", KSLAB_STACK="other-stack").returncode == 0
    proc = run("kind-create", KSLAB_STEP_IN_STATE="1")
    assert proc.returncode == 1 and "is another kslab lab's" in proc.stderr


def test_another_labs_cluster_is_refused_by_create_and_kept_by_delete(fakes):
    run, db = fakes
    assert run("kind-create", KSLAB_STACK="other-stack").returncode == 0
    proc = run("kind-create")
    assert proc.returncode == 1
    assert "belongs to another kslab lab" in proc.stderr and contract.lab_id("other-stack") in proc.stderr
    assert "rename the cluster in the stack file" in proc.stderr
    deleted = run("kind-delete")
    assert deleted.returncode == 1 and "is not deleted" in deleted.stderr and "refresh" in deleted.stderr
    assert "host" in db()["clusters"]
    # refresh: this lab's cluster of that name is gone (the name is the other lab's now)
    assert run("kind-read").returncode == contract.GONE_EXIT
    # the same stack in another checkout is another lab too
    assert contract.lab_id("kt-lab", "/elsewhere") != contract.lab_id("kt-lab")


def test_a_cluster_an_earlier_kslab_made_is_refreshed_and_deleted_as_before(fakes):
    """A cluster in the stack's state from before the mark (no label) never runs create again; refresh reads it and
    destroy deletes it."""
    run, db = fakes
    made_by_hand(run, ports=("6443/tcp", "30880/tcp"))
    read = run("kind-read")
    assert read.returncode == 0 and json.loads(read.stdout)["containerIp"] == "172.18.0.7"
    assert run("kind-delete").returncode == 0 and "host" not in db()["clusters"]


def _pem(tag: str) -> bytes:
    return b"-----BEGIN CERTIFICATE-----\n" + base64.b64encode(tag.encode()) + b"\n-----END CERTIFICATE-----\n"


def _state_ca(ca="lab-ca"):
    """What the plugin hands a kind step from the stack's state: the CA fingerprint of the stored kubeconfig."""
    stored = fake_kubeconfig("host", "https://127.0.0.1:1").replace("Q0E=", base64.b64encode(_pem(ca)).decode())
    return {contract.ENV_STATE_CA: kc.ca_fingerprint(stored)}


def test_a_cluster_made_by_hand_in_place_of_the_labs_is_neither_refreshed_nor_deleted_nor_adopted(fakes):
    """The lab's cluster (made by an earlier kslab, so unmarked) was deleted, and someone made another of its name by
    hand, with the same published ports: its certificate authority is not the one in the stack's state, so refresh
    forgets the lab's cluster, destroy leaves the other alone, and a re-run of create refuses it."""
    run, db = fakes
    made_by_hand(run, ports=("6443/tcp", "30880/tcp"), ca="made-by-hand")
    read = run("kind-read", **_state_ca())
    assert read.returncode == contract.GONE_EXIT and "is not the one this lab made" in read.stderr
    deleted = run("kind-delete", **_state_ca())
    assert deleted.returncode == 1 and "is not deleted" in deleted.stderr and "refresh" in deleted.stderr
    rerun = run("kind-create", KSLAB_STEP_IN_STATE="1", **_state_ca())
    assert rerun.returncode == 1 and "will not take it" in rerun.stderr
    assert "host" in db()["clusters"] and [c[:2] for c in db()["calls"] if c[0] in ("create", "delete")] == []


@pytest.mark.parametrize("stopped", [False, True])
def test_a_cluster_made_by_hand_is_told_apart_by_the_ca_on_its_node_even_when_stopped(fakes, stopped):
    """The CA is read from the node container (docker cp works on a stopped one; `kind get kubeconfig` does not)."""
    run, db = fakes
    made_by_hand(run, ports=("6443/tcp", "30880/tcp"), ca="made-by-hand", stopped=stopped)
    assert run("kind-read", **_state_ca()).returncode == contract.GONE_EXIT
    deleted = run("kind-delete", **_state_ca())
    assert deleted.returncode == 1 and "/etc/kubernetes/pki/ca.crt" in deleted.stderr and "host" in db()["clusters"]


def test_a_cluster_whose_ca_cannot_be_read_is_not_taken_for_the_labs(fakes):
    """Fail closed: with a CA in the state and none readable on the node, an unmarked cluster is neither deleted nor
    taken again."""
    run, db = fakes
    made_by_hand(run, ports=("6443/tcp", "30880/tcp"), ca=None)
    assert run("kind-delete", **_state_ca()).returncode == 1 and "host" in db()["clusters"]
    assert run("kind-create", KSLAB_STEP_IN_STATE="1", **_state_ca()).returncode == 1
    assert [c[:2] for c in db()["calls"] if c[0] in ("create", "delete")] == []


def test_the_labs_own_cluster_is_known_by_its_ca_or_its_mark(fakes):
    """The same checks pass the cluster the state holds: an earlier kslab's (unmarked) with the stored CA, and this
    lab's marked one whatever the CA (its mark says kslab made it for this lab)."""
    run, db = fakes
    made_by_hand(run, ports=("6443/tcp", "30880/tcp"))
    assert run("kind-read", **_state_ca()).returncode == 0
    assert run("kind-create", KSLAB_STEP_IN_STATE="1", **_state_ca()).returncode == 0
    assert run("kind-delete", **_state_ca()).returncode == 0 and "host" not in db()["clusters"]
    assert run("kind-create").returncode == 0
    assert run("kind-read", **_state_ca("another-ca")).returncode == 0
    assert run("kind-delete", **_state_ca("another-ca")).returncode == 0 and "host" not in db()["clusters"]


def test_the_labs_cluster_is_still_its_own_after_the_checkout_moved(fakes):
    """Moving the checkout changes the lab id, so the lab's clusters carry an old mark: the stack's state still knows
    them by their certificate authority, so refresh reads them, a re-run of create keeps them and destroy deletes them.
    Without a CA to compare, a cluster under another mark stays another lab's."""
    run, db = fakes
    assert run("kind-create", KSLAB_STACK="kt-lab-at-the-old-path").returncode == 0
    assert run("kind-read").returncode == contract.GONE_EXIT
    assert run("kind-read", **_state_ca()).returncode == 0
    assert run("kind-create", KSLAB_STEP_IN_STATE="1", **_state_ca()).returncode == 0
    assert run("kind-delete", **_state_ca()).returncode == 0 and "host" not in db()["clusters"]


def test_adoption_needs_the_stack(fakes):
    """A step given no stack (the dynamic provider of a stack from before the step plugin) adopts nothing."""
    run, db = fakes
    assert run("kind-create").returncode == 0
    proc = run("kind-create", KSLAB_STACK="")
    assert proc.returncode == 1 and "belongs to another kslab lab" in proc.stderr


def preflight(run, clusters, **extra):
    plan = {"node_images": ["kindest/node:v1.25.16"], "memory_estimate_mib": 1, "kind_clusters": clusters}
    return run("preflight", KSLAB_PLAN=json.dumps(plan), **extra)


def test_preflight_refuses_a_cluster_that_is_not_the_labs_before_anything_exists(fakes):
    run, db = fakes
    made_by_hand(run)
    made_by_hand(run, "member", labels={contract.LAB_LABEL: contract.lab_id("other-stack")})
    proc = preflight(run, ["host", "member", "fresh"])
    assert proc.returncode == 1 and "preflight failed, no cluster was created" in proc.stderr
    assert "a kind cluster named 'host' already exists and was not created by kslab" in proc.stderr
    assert "a kind cluster named 'member' already exists and belongs to another kslab lab" in proc.stderr
    assert "'fresh'" not in proc.stderr
    assert [c for c in db()["calls"] if c[0] in ("create", "delete")] == []


def test_preflight_passes_the_labs_own_clusters_and_an_earlier_kslabs(fakes):
    """Own (marked) clusters pass; so does an unmarked one that maps a port besides the API server's, as every
    cluster kslab made before the mark does (it may be in this stack's state: a stack from before re-runs the
    preflight once). kind-create still refuses it if it is not in the state."""
    run, db = fakes
    assert run("kind-create").returncode == 0
    made_by_hand(run, "member", ports=("6443/tcp", "30880/tcp"))
    proc = preflight(run, ["host", "member"])
    assert proc.returncode == 0, proc.stderr
    assert "kind cluster 'member' exists without kslab's mark" in proc.stderr
    assert run("kind-create", KSLAB_CLUSTER="member").returncode == 1


def test_preflight_plan_from_before_the_mark_still_runs(fakes):
    run, db = fakes
    made_by_hand(run)
    plan = {"node_images": ["kindest/node:v1.25.16"], "memory_estimate_mib": 1}
    assert run("preflight", KSLAB_PLAN=json.dumps(plan)).returncode == 0
