"""The machine-wide lab registry lock is one per user whatever TMPDIR says, private, and never another user's
(issue #25 item 8); the docker CLI the lab registry runs is given no step variable, above all not the sources'
credentials (issue #25 item 6)."""
import json
import os
import stat
import subprocess
import sys
import textwrap

import pytest

from kslab.model import contract
from kslab.model.image_sources import LabRegistry
from kslab.steps import lab_registry
from tests.support.mock_run import ROOT

HOLD = """
    import sys
    from kslab.model.image_sources import LabRegistry
    from kslab.steps import lab_registry
    with lab_registry.machine_lock(LabRegistry(name="kslab-lock-test"), print):
        print("held", flush=True)
        sys.stdin.read()
"""


def _holder(tmp_path, tmpdir: str) -> subprocess.Popen:
    env = {**os.environ, "TMPDIR": tmpdir, "XDG_STATE_HOME": str(tmp_path / "state")}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(HOLD)], cwd=ROOT, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "held", proc.stderr.read()
    return proc


def test_two_processes_with_different_tmpdirs_exclude_each_other(tmp_path, monkeypatch):
    first_tmp, second_tmp = tmp_path / "tmp-a", tmp_path / "tmp-b"
    first_tmp.mkdir()
    second_tmp.mkdir()
    holder = _holder(tmp_path, str(first_tmp))
    try:
        monkeypatch.setenv("TMPDIR", str(second_tmp))
        monkeypatch.setattr("tempfile.tempdir", str(second_tmp))
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
        with pytest.raises(lab_registry.RegistryError, match="kept the lab registry busy"):
            with lab_registry.machine_lock(LabRegistry(name="kslab-lock-test"), print, seconds=0.0):
                pass
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    with lab_registry.machine_lock(LabRegistry(name="kslab-lock-test"), print, seconds=0.0):
        pass  # free once the holder is gone


def test_the_lock_is_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with lab_registry.machine_lock(LabRegistry(name="kslab-lock-test"), print, seconds=0.0):
        pass
    folder = tmp_path / "state" / "kslab" / "locks"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "lab-registry-kslab-lock-test.lock").stat().st_mode) == 0o600
    assert not any(n.startswith("kslab-lab-registry") for n in os.listdir(str(tmp_path.parent))), \
        "nothing in the temporary directory"


@pytest.mark.skipif(os.geteuid() != 0, reason="SKIPPED: needs root to make a file of another user")
def test_a_lock_file_of_another_user_is_refused(tmp_path, monkeypatch):
    import pwd
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    folder = tmp_path / "state" / "kslab" / "locks"
    folder.mkdir(parents=True, mode=0o700)
    lock = folder / "lab-registry-kslab-lock-test.lock"
    lock.write_text("")
    nobody = pwd.getpwnam("nobody")
    os.chown(lock, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(lab_registry.RegistryError) as refused:
        with lab_registry.machine_lock(LabRegistry(name="kslab-lock-test"), print, seconds=0.0):
            pytest.fail("entered a lock another user holds")
    assert f"{lock} belongs to uid {nobody.pw_uid}, not to you" in str(refused.value)
    assert "Fix: remove it" in str(refused.value)


def test_a_linked_lock_folder_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "state" / "kslab").mkdir(parents=True)
    (tmp_path / "state" / "kslab" / "locks").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(lab_registry.RegistryError, match="is not a folder of this user's"):
        with lab_registry.machine_lock(LabRegistry(name="kslab-lock-test"), print, seconds=0.0):
            pass


def test_docker_gets_no_step_variable(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f"#!/bin/sh\nenv > {tmp_path / 'docker-env'}\n")
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    password = "hunter2-the-password"
    monkeypatch.setenv(contract.ENV_REGISTRY_AUTH, json.dumps({"harbor.corp": {"username": "u",
                                                                                "password": password}}))
    monkeypatch.setenv(contract.ENV_KUBECONFIG, "apiVersion: v1\nkind: Config\n")
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/kslab-test.sock")
    assert lab_registry.docker("version").returncode == 0
    seen = (tmp_path / "docker-env").read_text()
    assert password not in seen and contract.ENV_REGISTRY_AUTH not in seen and contract.ENV_KUBECONFIG not in seen
    assert "DOCKER_HOST=unix:///run/kslab-test.sock" in seen, "what docker needs is still passed on"
