"""kind steps against stand-in `kind` and `docker` programs that record their calls:
create is idempotent (adopts, never duplicates), refuses a same-named cluster with another
image, delete tolerates a cluster that is already gone, and kubeconfigs never reach stderr."""
import json
import os
import stat
import subprocess
import sys

import pytest
import yaml

from tests.support.mock_run import ROOT, fake_kubeconfig

FAKE_KIND = r'''#!/usr/bin/env python3
import os, sys, json
state = os.environ["FAKE_STATE"]
db = json.load(open(state)) if os.path.exists(state) else {"clusters": {}, "calls": []}
args = sys.argv[1:]
db["calls"].append(args)
def save(): json.dump(db, open(state, "w"))
def arg(flag): return args[args.index(flag) + 1]
if args[:2] == ["get", "clusters"]:
    print("\n".join(db["clusters"]) or "No kind clusters found.", file=sys.stdout if db["clusters"] else sys.stderr)
elif args[:2] == ["create", "cluster"]:
    name = arg("--name")
    if name in db["clusters"]:
        print(f"ERROR: node(s) already exist for a cluster with the name \"{name}\"", file=sys.stderr)
        save()
        sys.exit(1)
    cfg = open(arg("--config")).read()
    db["clusters"][name] = {"image": arg("--image"), "config": cfg}
    print("Creating cluster ...", file=sys.stderr)
elif args[:2] == ["get", "kubeconfig"]:
    print(KUBECONFIG.replace("NAME", arg("--name")))
elif args[:2] == ["delete", "cluster"]:
    db["clusters"].pop(arg("--name"), None)
save()
'''

FAKE_DOCKER = r'''#!/usr/bin/env python3
import os, sys, json
db = json.load(open(os.environ["FAKE_STATE"]))
name = sys.argv[-1].replace("-control-plane", "")
if name not in db["clusters"]:
    sys.exit(1)
print(db["clusters"][name]["image"] if ".Config.Image" in sys.argv[3] else "172.18.0.7")
'''


@pytest.fixture
def fakes(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    kubeconfig = fake_kubeconfig("NAME", "https://127.0.0.1:41234")
    for name, body in (("kind", FAKE_KIND.replace("KUBECONFIG", repr(kubeconfig))), ("docker", FAKE_DOCKER)):
        path = bindir / name
        path.write_text(body)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "state.json"
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}", FAKE_STATE=str(state),
               KSLAB_CLUSTER="host", KSLAB_NODE_IMAGE="kindest/node:v1.25.16",
               KSLAB_KIND_CONFIG="kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\n", KSLAB_KIND_WAIT="1s")

    def run(step, **extra):
        return subprocess.run([sys.executable, "-m", "kslab.steps", step], cwd=ROOT,
                              env={**env, **extra}, capture_output=True, text=True, timeout=60)

    def db():
        return json.loads(state.read_text())

    return run, db


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
