"""Private scratch folders of the steps (issue #25 item 7): registry credentials and kind's scratch kubeconfig are
removed when a step is stopped by SIGTERM or SIGINT, and recovery removes what a SIGKILLed step left, and only
that."""
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from kslab.cli import recovery
from kslab.steps import scratch
from tests.support.mock_run import ROOT

FAKE_TOOL = """#!/bin/sh
# records its arguments, then blocks until killed (the test's stand-in for a long crane copy or kind call)
printf '%s\\n' "$@" > "$FAKE_ARGS.tmp" && mv "$FAKE_ARGS.tmp" "$FAKE_ARGS"
exec sleep 600
"""


def wait_for(path: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    """Until the fake tool runs (bounded); a step that ended before it is shown with its output."""
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if proc.poll() is not None:
            pytest.fail(f"the step ended (exit {proc.returncode}) before its tool ran: {proc.stderr.read()[-2000:]}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _fake_bin(tmp_path, *names: str) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name in names:
        (bin_dir / name).write_text(FAKE_TOOL)
        (bin_dir / name).chmod(0o755)
    return str(bin_dir)


def _step(tmp_path, script: str, fake: str, extra_env: dict | None = None) -> tuple[subprocess.Popen, list[str]]:
    """A step process (python running `script`) whose call of `fake` blocks; returns it with the fake's argv once
    the fake runs."""
    args_file = str(tmp_path / "fake-args")
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "PATH": _fake_bin(tmp_path, fake) + os.pathsep + os.environ["PATH"], "TMPDIR": str(tmp),
           "FAKE_ARGS": args_file, **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(args_file, proc)
    with open(args_file) as fh:
        return proc, fh.read().splitlines()


def _stop_fake(args: list[str]) -> None:
    """The blocking fake outlives its killed step (as a real kind would, until recovery stops it): end it."""
    out = subprocess.run(["pgrep", "-f", "sleep 600"], capture_output=True, text=True).stdout.split()
    for pid in out:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            if b"FAKE_ARGS=" in fh.read():
                os.kill(int(pid), signal.SIGKILL)


def _scratch_dirs(tmp_path) -> list[str]:
    return sorted(n for n in os.listdir(tmp_path / "tmp") if n.startswith("kslab-"))


KIND_DELETE = """
    import os
    from kslab.model import requests
    os.environ.update(requests.KindCluster(cluster="lab", node_image="kindest/node:v1.25.16", kind_config="{}",
                                           kind_wait="1m").to_env())
    from kslab.steps import common, kind_steps
    common.kind = lambda *a, **k: (__import__("subprocess").run(["kind", *a], capture_output=True, text=True)
                                    if a[0] == "delete" else type("P", (), {"returncode": 0, "stdout": "lab"})())
    kind_steps.step_kind_delete()
"""

# The lab-images step up to its first copy, with everything around the copy stood in for: crane (the fake, which
# blocks) is then running with the credentials folder as its DOCKER_CONFIG.
LAB_IMAGES = """
    import contextlib, json, os, subprocess
    from kslab.model import requests
    from kslab.model.image_sources import LabRegistry
    os.environ.update(requests.LabImages(
        registry=LabRegistry("kslab-registry", 5001), lab_id="lab-test",
        images={"kubesphere/ks-console:v3.4.1": requests.LabImage(
            candidates=["harbor.corp/kubesphere/ks-console:v3.4.1"], clusters=["lab"], override=False)},
        credentials=json.dumps({"harbor.corp": {"username": "u", "password": "pw"}})).to_env())
    from kslab.steps import image_steps, lab_registry, lab_store, registry_auth, registry_check
    lab_registry.machine_lock = lambda lab, log: contextlib.nullcontext()
    lab_registry.container_state = lambda lab, name=None: None
    lab_registry.is_running = lambda state: False
    lab_registry.ensure_running = lambda lab: "created"
    registry_auth.push_credentials = lambda lab: {}
    lab_store.LabStore = lambda *args: None
    lab_store.resolve = lambda ask, checker, store: {path: None for path in ask}
    lab_store.as_asked = lambda found: {}
    registry_check.report_sources = lambda *args: None

    class Placer:
        def __init__(self, store, docker_config, log):
            self.docker_config, self.counts = docker_config, {}

        def place(self, item):
            subprocess.run(["crane", "copy", "--docker-config", self.docker_config])

    lab_store.Placer = Placer
    image_steps.step_lab_images()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_kind_step_leaves_no_scratch_kubeconfig(tmp_path, sig):
    proc, args = _step(tmp_path, KIND_DELETE, "kind")
    try:
        kubeconfig = args[args.index("--kubeconfig") + 1]
        folder = os.path.dirname(kubeconfig)
        assert os.path.isdir(folder) and stat.S_IMODE(os.stat(folder).st_mode) == 0o700
        assert f".{proc.pid}-" in os.path.basename(folder), "the folder's name carries its owner's pid"
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        _stop_fake(args)
    assert not os.path.exists(folder)
    assert _scratch_dirs(tmp_path) == []


def test_a_stopped_lab_images_step_leaves_no_credentials(tmp_path):
    proc, args = _step(tmp_path, LAB_IMAGES, "crane")
    try:
        folders = _scratch_dirs(tmp_path)
        assert len(folders) == 1 and folders[0].startswith("kslab-auth.")
        config = tmp_path / "tmp" / folders[0] / "config.json"
        assert "harbor.corp" in json.loads(config.read_text())["auths"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == -signal.SIGTERM, "the step still ends as SIGTERM ends it"
    finally:
        proc.kill()
        _stop_fake(args)
    assert _scratch_dirs(tmp_path) == []


def _holder(tmp_path) -> tuple[subprocess.Popen, str]:
    """A process holding a scratch folder, which prints the folder's path and waits."""
    script = ("import sys; from kslab.steps import scratch\n"
              "with scratch.private_dir('auth') as d:\n"
              "    open(d + '/config.json', 'w').write('{}'); print(d, flush=True); sys.stdin.read()\n")
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def test_recovery_removes_what_a_killed_step_left_and_nothing_else(tmp_path, monkeypatch, capsys):
    killed, left = _holder(tmp_path)
    killed.kill()
    killed.wait()
    live, held = _holder(tmp_path)
    try:
        assert os.path.isdir(left) and os.path.isdir(held)
        # a symlink with a scratch name, to a folder of the user's: never followed, never removed
        target = tmp_path / "precious"
        target.mkdir()
        (target / "keep").write_text("x")
        link = tmp_path / "tmp" / f"kslab-auth.{killed.pid}-1.link"
        link.symlink_to(target)
        monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "tmp"))
        assert recovery.remove_scratch_left() == [left]
        assert "removed 1 scratch folder(s) a killed step left" in capsys.readouterr().err
        assert not os.path.exists(left) and os.path.isdir(held)
        assert os.path.islink(link) and (target / "keep").exists()
    finally:
        live.stdin.close()
        live.wait(timeout=30)
    assert not os.path.exists(held), "the live one removed its own at the end of its block"


@pytest.mark.skipif(os.geteuid() != 0, reason="SKIPPED: needs root to make a folder of another user")
def test_recovery_leaves_another_users_folder(tmp_path):
    import pwd
    folder = tmp_path / "kslab-auth.999999-1.abc"
    folder.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(folder, nobody.pw_uid, nobody.pw_gid)
    assert scratch.sweep((str(tmp_path),)) == []
    assert folder.is_dir()
