"""The build scripts' shared part (tools/lib/gocache.sh): a warm cache, at the very paths the scripts used before
it was shared, builds nothing (no Go needed) and prints the one export line; and every shell script passes
shellcheck (`make check`)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.mock_run import ROOT


def _program(path, says: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{says}'\n")
    path.chmod(0o755)


def _no_go_env(tmp_path) -> dict:
    bin_dir = tmp_path / "no-go-bin"  # bash and coreutils only: a build would fail for want of go
    bin_dir.mkdir()
    for tool in ("bash", "sh", "grep", "date", "dirname", "head", "cat", "sed"):
        found = shutil.which(tool)
        if found:
            os.symlink(found, bin_dir / tool)
    return {"PATH": str(bin_dir), "HOME": str(tmp_path), "KSLAB_CACHE": str(tmp_path / "cache")}


@pytest.mark.parametrize("script, cached, programs", [
    ("tools/registry/build.sh", "registry/v3.1.2-crane-v0.22.1/bin",
     {"registry": "registry github.com/distribution/distribution/v3 v3.1.2", "crane": "v0.22.1"}),
    ("tools/kind/build.sh", "kind/v0.33.0/bin", {"kind": "kind v0.33.0 go1.26 linux/amd64"}),
])
def test_a_warm_cache_stays_warm(tmp_path, script, cached, programs):
    for name, says in programs.items():
        _program(tmp_path / "cache" / cached / name, says)
    proc = subprocess.run([os.path.join(ROOT, script)], env=_no_go_env(tmp_path), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f'export PATH="{tmp_path / "cache" / cached}:$PATH"\n'
    assert "cached at" in proc.stderr


def test_a_cold_cache_without_go_says_what_is_missing(tmp_path):
    proc = subprocess.run([os.path.join(ROOT, "tools", "kind", "build.sh")], env=_no_go_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "[kind-build] ERROR: go is not installed (needed to build kind v0.33.0)" in proc.stderr


def test_every_shell_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        pytest.skip("SKIPPED: shellcheck is not installed (apt-get install shellcheck; make check installs it)")
    proc = subprocess.run([os.path.join(ROOT, "tools", "lib", "shellcheck.sh")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


# --- the Kubernetes minors (tools/kube/minors/<minor>.env, #27) ---------------------------------------------------

MINOR_FACTS = ("K8S_VERSION", "K8S_BUILD", "NODE_ETCD_MODULE", "NODE_ETCD_VERSION", "ETCD_TAG", "IMAGE_REPOSITORY",
               "PAUSE_TAG", "COREDNS_VERSION", "COREDNS_IMAGE", "COREDNS_LDFLAGS", "COREDNS_GO_TOOLCHAIN",
               "SYSTEMD_CGROUP")
# what a minor built from a copy of its source needs besides (tools/kube/from-source.sh)
SOURCE_FACTS = ("K8S_GO_TOOLCHAIN", "K8S_GOMOD_REPLACES", "K8S_UNPUBLISHED_STAGING", "K8S_OPENAPI_DEFINITIONS",
                "NODE_ETCD_REPORTS")


@pytest.mark.parametrize("minor, version, cgroup", [("1.26", "v1.26.13", "true"), ("1.19", "v1.19.16", "false")])
def test_every_minor_file_holds_every_fact(minor, version, cgroup):
    script = 'source "tools/kube/minors/$1.env"; for n in "${@:2}"; do printf "%s=%s\\n" "$n" "${!n-UNSET}"; done'
    proc = subprocess.run(["bash", "-c", script, "-", minor, *MINOR_FACTS, *SOURCE_FACTS], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    facts = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    needed = MINOR_FACTS + (SOURCE_FACTS if facts["K8S_BUILD"] == "source" else ())
    assert [n for n in needed if facts[n] == "UNSET"] == [], facts
    assert facts["K8S_VERSION"] == version and facts["SYSTEMD_CGROUP"] == cgroup
    assert facts["COREDNS_IMAGE"].startswith(facts["IMAGE_REPOSITORY"] + "/coredns")


def test_the_default_minor_has_a_file():
    with open(os.path.join(ROOT, "tools", "kube", "minors", "DEFAULT")) as fh:
        assert os.path.exists(os.path.join(ROOT, "tools", "kube", "minors", f"{fh.read().strip()}.env"))


@pytest.mark.parametrize("script", ["tools/kube/build.sh --node", "tools/kind/node-image/build.sh"])
@pytest.mark.parametrize("version, says", [
    ("v1.20.1", "no facts for Kubernetes 1.20"),
    ("v1.19.15", "kslab builds Kubernetes v1.19.16 of the 1.19 line, not v1.19.15"),
    ("1.19.x", "--kubernetes needs a version such as v1.19.16"),
])
def test_a_minor_without_facts_or_another_patch_is_refused_before_anything_runs(tmp_path, script, version, says):
    env = _no_go_env(tmp_path)
    os.symlink(shutil.which("basename"), os.path.join(env["PATH"], "basename"))
    proc = subprocess.run([os.path.join(ROOT, script.split()[0]), *script.split()[1:], "--kubernetes", version],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "", proc.stderr
    assert says in proc.stderr
    assert not (tmp_path / "cache").exists(), "nothing was built or cached"


def test_check_names_the_minors_build(tmp_path):
    command = [os.path.join(ROOT, "tools", "kube", "build.sh"), "--check", "--node", "--kubernetes", "v1.19.16"]
    proc = subprocess.run(command, env=_no_go_env(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and proc.stdout == "", proc.stderr
    assert f"not built or out of date: {tmp_path}/cache/kube/node-k8s-v1.19.16_etcd-3.4.13" in proc.stderr
    assert "build.sh --node --kubernetes v1.19.16" in proc.stderr
