"""Preflight rules (pure) and the real probe on this machine (no Docker engine here)."""
import json
import os
import subprocess
import sys

from kslab.model.preflight_rules import Facts, Plan, evaluate
from tests.support.mock_run import ROOT


def facts(**kw):
    base = dict(docker_ok=True, docker_detail="docker server 28", kind_version="kind v0.20.0 go1.20 linux/amd64",
                kubectl_version="v1.27.3", inotify_watches=524288, inotify_instances=512, mem_available_mib=20000)
    base.update(kw)
    return Facts(**base)


PLAN = Plan(node_images=["kindest/node:v1.25.16", "kindest/node:v1.25.16"], memory_estimate_mib=9000)


def test_all_good():
    v = evaluate(facts(), PLAN)
    assert v.errors == [] and v.warnings == []


def test_docker_unreachable():
    v = evaluate(facts(docker_ok=False, docker_detail="Cannot connect to the Docker daemon"), PLAN)
    assert len(v.errors) == 1 and "Docker engine not reachable" in v.errors[0] and "docker info" in v.errors[0]


def test_missing_tools():
    v = evaluate(facts(kind_version=None, kubectl_version=None), PLAN)
    assert any("`kind` not found" in e for e in v.errors) and any("`kubectl` not found" in e for e in v.errors)


def test_kind_too_new_for_image():
    v = evaluate(facts(kind_version="kind v0.24.0 go1.22 linux/amd64"),
                 Plan(["kindest/node:v1.19.16"], 1000))
    assert any("v0.24" in e and "v1.19.16" in e for e in v.errors)


def test_unknown_kind_release_warns():
    v = evaluate(facts(kind_version="kind v0.99.0"), Plan(["kindest/node:v1.25.16"], 1000))
    assert v.errors == [] and any("not in kslab's table" in w for w in v.warnings)


def test_inotify_only_matters_for_several_clusters():
    low = facts(inotify_watches=8192, inotify_instances=128)
    assert evaluate(low, Plan(["kindest/node:v1.25.16"], 1000)).errors == []
    errors = evaluate(low, PLAN).errors
    assert len(errors) == 1 and "max_user_watches=8192" in errors[0] and "sysctl" in errors[0]


def test_memory_is_a_warning():
    v = evaluate(facts(mem_available_mib=4000), PLAN)
    assert v.errors == [] and "9000 MiB needed" in v.warnings[0]


def test_a_local_image_needs_no_published_one():
    """kind uses an image present in the local Docker and never pulls it; one neither local nor published
    for the kind release is still refused."""
    plan = Plan(["kslab.local/kind-node:v1.26.13"], 1000)
    assert evaluate(facts(kind_version="kind v0.24.0", local_images=frozenset(plan.node_images)), plan).errors == []
    refused = evaluate(facts(kind_version="kind v0.24.0"), Plan(["kindest/node:v1.19.16"], 1000)).errors
    assert any("not in the local Docker" in e and "v0.24" in e for e in refused)


def test_real_probe_without_the_tools_stops_fast_and_clearly(tmp_path):
    """The step `pulumi up` runs first for kind stacks, here on a PATH with no docker, kind or kubectl
    (the same verdict on every machine): it fails at once with each reason and creates nothing."""
    empty = tmp_path / "bin"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty), KSLAB_PLAN=json.dumps({"node_images": ["kindest/node:v1.25.16"],
                                                                   "memory_estimate_mib": 5000}))
    proc = subprocess.run([sys.executable, "-m", "kslab.steps", "preflight"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "preflight failed, no cluster was created" in proc.stderr
    assert "Docker engine not reachable" in proc.stderr and "`kind` not found" in proc.stderr
