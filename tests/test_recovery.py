"""kslab/cli/recovery.py on backend folders built by hand: what a killed run leaves, and what is repaired."""
import json
import os
import time

import pytest

from kslab.cli import processes, recovery
from kslab.cli.recovery import recover_files
from kslab.cli.stack_state import (
    Candidate,
    StackFiles,
    backend_dir,
    best_restore,
    checkpoint_problem,
    lock_verdict,
    parse_lock,
    pending_operations,
    sidecar_is_broken,
)
from kslab.steps import procfs

HOST = "labhost"
GOOD_ATTRS = json.dumps({"user.content_type": "text/plain; charset=utf-8", "md5": "yzX7IaqAo1MnMJc8uef1Uw=="})


def checkpoint(resources=1, pending=()):
    latest = {"resources": [{"urn": f"urn:pulumi:s::kslab::t::r{i}"} for i in range(resources)]}
    if pending:
        latest["pending_operations"] = [{"type": t, "resource": {"urn": f"urn:pulumi:s::kslab::t::{n}"}}
                                        for t, n in pending]
    return json.dumps({"version": 3, "checkpoint": {"stack": "s", "latest": latest}}).encode()


def put(path, data, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@pytest.fixture
def files(tmp_path):
    f = StackFiles(str(tmp_path), "kslab", "s")
    put(f.checkpoint, checkpoint(3))
    put(f.checkpoint + ".attrs", GOOD_ATTRS)
    return f


def lock_at(f, pid, host=HOST, age=0.0):
    path = os.path.join(f.pulumi, "locks", "organization", "kslab", "s", "1d2c.json")
    put(path, json.dumps({"pid": pid, "username": "u", "hostname": host, "timestamp": "2026-01-01T00:00:00Z"}),
        mtime=time.time() - age)
    put(path + ".attrs", GOOD_ATTRS)
    return path


def test_backend_dir_only_for_file_urls():
    assert backend_dir("file:///home/u/lab/.kslab/state") == "/home/u/lab/.kslab/state"
    assert backend_dir("file://%2Ftmp%2Fx") == "/tmp/x"
    assert backend_dir("s3://bucket") is None and backend_dir(None) is None and backend_dir("") is None


def test_sidecar_checks():
    assert sidecar_is_broken(b"") and sidecar_is_broken(b'{"user.cont') and sidecar_is_broken(b"[]")
    assert not sidecar_is_broken(GOOD_ATTRS.encode())


def test_checkpoint_problems_name_what_is_wrong():
    assert "empty (0 bytes)" in checkpoint_problem(b"")
    assert "not JSON" in checkpoint_problem(checkpoint()[:40])
    assert "not a Pulumi checkpoint" in checkpoint_problem(b'{"version": 3}')
    assert checkpoint_problem(checkpoint()) is None


def test_pending_operations_are_read():
    assert pending_operations(checkpoint()) == []
    assert pending_operations(checkpoint(pending=[("creating", "a"), ("deleting", "b")])) == [
        ("creating", "urn:pulumi:s::kslab::t::a"), ("deleting", "urn:pulumi:s::kslab::t::b")]


def test_lock_verdicts():
    alive = parse_lock("l", json.dumps({"pid": 10, "hostname": HOST, "timestamp": "t"}).encode(), 5)
    assert lock_verdict(alive, HOST, lambda pid: True) == (False, "pulumi pid 10 (since t) is still running")
    stale, why = lock_verdict(alive, HOST, lambda pid: False)
    assert stale and "no longer running" in why
    other, why = lock_verdict(alive, "elsewhere", lambda pid: False)
    assert not other and "another host" in why, "a lock of another machine is never judged from here"
    fresh_empty = parse_lock("l", b"", 1)
    assert not fresh_empty.readable and lock_verdict(fresh_empty, HOST, lambda pid: False)[0] is False
    assert lock_verdict(parse_lock("l", b"", 60), HOST, lambda pid: False)[0] is True


def test_best_restore_takes_the_newest_usable_copy():
    good_old, good_new = Candidate("a", 1, checkpoint(1)), Candidate("b", 2, checkpoint(2))
    assert best_restore([good_old, good_new, Candidate("c", 3, b"")]) is good_new
    assert best_restore([Candidate("c", 3, b"{")]) is None


def test_a_clean_backend_is_left_alone(files):
    before = sorted(os.listdir(files.stacks_dir))
    report = recover_files(files, "up", this_host=HOST, is_pulumi=lambda pid: False)
    assert report.done == [] and report.stop is None and report.pending == []
    assert sorted(os.listdir(files.stacks_dir)) == before


def test_a_live_lock_stops_everything_and_touches_nothing(files):
    lock = lock_at(files, 4242)
    put(files.checkpoint + ".attrs", "")  # even a broken sidecar: the live run may be writing it right now
    report = recover_files(files, "up", this_host=HOST, is_pulumi=lambda pid: pid == 4242)
    assert report.stop and "pulumi pid 4242" in report.stop and "tools/lab.sh cancel s" in report.stop
    assert os.path.exists(lock) and os.path.getsize(files.checkpoint + ".attrs") == 0


def test_a_lock_of_another_host_is_left_with_the_command(files):
    lock = lock_at(files, 4242, host="laptop")
    report = recover_files(files, "up", this_host=HOST, is_pulumi=lambda pid: False)
    assert report.stop and "laptop" in report.stop and "tools/lab.sh cancel s" in report.stop and os.path.exists(lock)


def test_a_stale_lock_is_moved_aside(files, tmp_path):
    lock = lock_at(files, 4242)
    report = recover_files(files, "up", this_host=HOST, is_pulumi=lambda pid: False)
    assert report.stop is None and not os.path.exists(lock) and not os.path.exists(lock + ".attrs")
    assert any("pulumi pid 4242" in d and "no longer running" in d for d in report.done)
    kept = os.listdir(os.path.join(tmp_path, recovery.RECOVERY_DIR))
    assert len(kept) == 1
    assert any(n.endswith("1d2c.json") for n in os.listdir(tmp_path / recovery.RECOVERY_DIR / kept[0]))


def test_the_eof_case_an_empty_sidecar_is_moved_aside_and_the_checkpoint_kept(files):
    """What the killed run of issue #13 left: stack.json whole, stack.json.attrs empty, a .tmp never renamed."""
    put(files.checkpoint + ".attrs", "")
    put(files.checkpoint + ".18ec12c326a16efd.tmp", checkpoint(4))
    data = open(files.checkpoint, "rb").read()
    report = recover_files(files, "up", this_host=HOST, is_pulumi=lambda pid: False)
    assert report.stop is None
    assert not os.path.exists(files.checkpoint + ".attrs"), "no sidecar is what the blob store reads as defaults"
    assert open(files.checkpoint, "rb").read() == data, "the checkpoint itself is not touched"
    assert os.listdir(files.stacks_dir) == ["s.json"]
    assert any("broken metadata file" in d and "EOF" in d for d in report.done)
    assert any("never finished" in d for d in report.done)


def test_an_unreadable_checkpoint_is_restored_from_the_newest_good_copy(files, tmp_path):
    put(files.checkpoint, b"")
    put(files.checkpoint + ".bak", checkpoint(2), mtime=2000)
    put(os.path.join(files.backups_dir, "s.100.json"), checkpoint(1), mtime=1000)
    put(os.path.join(files.history_dir, "s-100.checkpoint.json"), b"{broken", mtime=3000)
    report = recover_files(files, "up", this_host=HOST, is_pulumi=lambda pid: False)
    assert report.stop is None
    assert open(files.checkpoint, "rb").read() == checkpoint(2)
    msg = next(d for d in report.done if "could not be read" in d)
    assert "empty (0 bytes)" in msg and "s.json.bak" in msg
    kept = [os.path.join(r, n) for r, _, ns in os.walk(tmp_path / recovery.RECOVERY_DIR) for n in ns]
    assert any(k.endswith("s.json.unreadable") and os.path.getsize(k) == 0 for k in kept)


def test_an_unreadable_checkpoint_without_any_good_copy_stops_with_the_way_out(files):
    put(files.checkpoint, b"{\"version\": 3, \"checkp")
    put(files.checkpoint + ".bak", b"")
    report = recover_files(files, "up", this_host=HOST, is_pulumi=lambda pid: False)
    assert report.stop and "cannot be read" in report.stop and "tools/lab.sh forget s" in report.stop
    assert open(files.checkpoint, "rb").read().startswith(b"{\"version\"")


def test_pending_creates_before_a_destroy_stop_with_both_ways(files):
    put(files.checkpoint, checkpoint(pending=[("creating", "member-to-host-cluster")]))
    report = recover_files(files, "destroy", this_host=HOST, is_pulumi=lambda pid: False)
    assert report.stop and "member-to-host-cluster" in report.stop
    assert "tools/lab.sh up s" in report.stop and "--clear-pending-creates" in report.stop


def test_pending_operations_before_an_up_are_reported_for_the_refresh(files):
    put(files.checkpoint, checkpoint(pending=[("creating", "a"), ("deleting", "b")]))
    report = recover_files(files, "up", this_host=HOST, is_pulumi=lambda pid: False)
    assert report.stop is None and report.pending_creates == ["urn:pulumi:s::kslab::t::a"]
    assert recovery.refresh_command("s") == ["pulumi", "refresh", "--stack", "s", "--yes", "--skip-preview",
                                             "--clear-pending-creates"]


def test_the_command_line_never_shows_a_traceback(tmp_path, capsys, monkeypatch):
    f = StackFiles(str(tmp_path), "kslab", "s")
    put(f.checkpoint, b"")
    project = tmp_path / "project"  # never this machine's working directory: leftovers are looked for there
    project.mkdir()
    assert recovery.main(["up", "s", "--backend", f"file://{tmp_path}", "--project-dir", str(project)]) == \
        recovery.EXIT_STOP
    assert "cannot be read" in capsys.readouterr().err

    def unwritable(path, data):
        raise PermissionError(13, "Permission denied", path)
    put(f.checkpoint + ".bak", checkpoint())
    monkeypatch.setattr(recovery, "write_atomic", unwritable)
    assert recovery.main(["up", "s", "--backend", f"file://{tmp_path}", "--project-dir", str(project)]) == \
        recovery.EXIT_STOP
    err = capsys.readouterr().err
    assert "Traceback" not in err and "recovery of stack 's' failed: [Errno 13] Permission denied" in err


def test_the_command_line_ignores_other_backends(capsys):
    assert recovery.main(["up", "s", "--backend", "s3://bucket/x"]) == 0
    assert capsys.readouterr().err == ""


def test_only_plugins_are_taken_for_leftovers_never_a_program_that_names_one():
    assert processes.is_plugin_argv(["/cache/bin/pulumi-resource-kubernetes"])
    assert processes.is_plugin_argv(["/p/venv/bin/python", "-m", "kslab.steps.plugin"])
    assert processes.is_plugin_argv(["/p/venv/bin/python", "-u", "-m", "pulumi.policy", "127.0.0.1:1", "policies"])
    assert processes.is_plugin_argv(["/p/venv/bin/python", "-u", "/cache/bin/pulumi-language-python-exec", "x"])
    assert not processes.is_plugin_argv(["vim", "provider/pulumi-resource-kslab"])
    assert not processes.is_plugin_argv(["grep", "-r", "pulumi-resource-", "."])
    assert not processes.is_plugin_argv(["python3", "-c", "import kslab.steps.plugin"])


def test_a_leftover_temp_lock_counts_as_a_lock(tmp_path):
    f = StackFiles(str(tmp_path), "kslab", "s")
    lock_dir = os.path.join(f.pulumi, "locks", "organization", "kslab", "s")
    put(os.path.join(lock_dir, "abc.json.1234.tmp"), b'{"pid": 4242, "hostname": "laptop", "timestamp": "t"}')
    report = recovery.recover_files(f, "up", this_host="laptop", is_pulumi=lambda pid: True)
    assert report.stop and "tools/lab.sh cancel s" in report.stop


def test_a_restored_state_needs_an_up_before_a_destroy(tmp_path):
    f = StackFiles(str(tmp_path), "kslab", "s")
    put(f.checkpoint, b"")
    put(f.checkpoint + ".bak", checkpoint())
    report = recovery.recover_files(f, "destroy")
    assert report.restored and report.stop and "tools/lab.sh up s" in report.stop


def _fake_proc(monkeypatch, tmp_path, table):
    """A /proc of `table` {pid: (ppid, program)}: every process of this user, started in `tmp_path`."""
    real_readlink = os.readlink
    monkeypatch.setattr(processes, "listdir", lambda d: [str(p) for p in table] if d == "/proc" else [])
    monkeypatch.setattr(processes, "_ppid", lambda pid: table[pid][0] if pid in table else None)
    monkeypatch.setattr(processes, "_owner", lambda pid: os.getuid())
    monkeypatch.setattr(processes, "_is_plugin", lambda pid: table[pid][1].startswith("pulumi-resource-"))
    monkeypatch.setattr(processes, "is_pulumi_pid", lambda pid: pid in table and table[pid][1] == "pulumi")
    monkeypatch.setattr(os, "readlink", lambda path: str(tmp_path) if path.startswith("/proc/")
                        else real_readlink(path))


def test_a_plugin_of_a_live_pulumi_that_is_pid_1_is_not_a_leftover(monkeypatch, tmp_path):
    # issue #20, defect 5: a container whose entrypoint is `tools/lab.sh up X` runs that pulumi as pid 1
    _fake_proc(monkeypatch, tmp_path, {1: (0, "pulumi"), 50: (1, "pulumi-resource-kubernetes")})
    assert processes.orphaned_plugins(str(tmp_path)) == []


def test_a_plugin_whose_pulumi_is_gone_is_a_leftover(monkeypatch, tmp_path):
    _fake_proc(monkeypatch, tmp_path, {1: (0, "init"), 50: (1, "pulumi-resource-kubernetes"), 51: (50, "kind")})
    assert processes.orphaned_plugins(str(tmp_path)) == [50, 51]


def test_recovery_touches_no_other_stacks_sidecars(files, tmp_path):
    # issue #20, defect 3: the walk covered the whole .pulumi tree, so another stack's sidecar that a live run was
    # rewriting (empty for a moment), or another project's, was moved aside
    put(files.checkpoint + ".attrs", "")
    others = [os.path.join(files.stacks_dir, "s-2.json.attrs"), os.path.join(files.stacks_dir, "t.json.attrs"),
              os.path.join(files.pulumi, "stacks", "other-project", "s.json.attrs"),
              os.path.join(files.pulumi, "backups", "kslab", "t", "t.1.json.attrs"),
              os.path.join(files.pulumi, "locks", "organization", "kslab", "t", "9f.json.attrs")]
    for path in others:
        put(path, "")
    recover_files(files, "up", this_host=HOST, is_pulumi=lambda pid: False)
    assert not os.path.exists(files.checkpoint + ".attrs"), "this stack's own broken sidecar is still repaired"
    assert all(os.path.exists(p) and os.path.getsize(p) == 0 for p in others)


def test_recovery_repairs_its_own_backups_sidecars(files):
    mine = os.path.join(files.backups_dir, "s.1.json.attrs")
    put(mine, "")
    recover_files(files, "up", this_host=HOST, is_pulumi=lambda pid: False)
    assert not os.path.exists(mine)


def test_a_reused_pid_is_never_hit():
    """#20, defect 6: the pidfd is opened first, then checked to be the process the scan saw (same owner and
    start time); a pid that now names another process is left alone."""
    import subprocess
    victim = subprocess.Popen(["sleep", "60"])
    try:
        uid, start = procfs.process_identity(victim.pid)
        assert processes.stop_processes({victim.pid: (uid, start - 1)}, grace=0.5) == []  # the scan saw another
        assert victim.poll() is None
        assert processes.stop_processes({victim.pid: (uid, start)}, grace=2) == [victim.pid]
        assert victim.wait(timeout=10) != 0
    finally:
        victim.kill()
        victim.wait()


def test_a_descendant_of_another_user_is_not_stopped(monkeypatch, tmp_path):
    """#20, defect 6: a leftover plugin's children are stopped only when they are this user's."""
    _fake_proc(monkeypatch, tmp_path, {1: (0, "init"), 50: (1, "pulumi-resource-kubernetes"), 51: (50, "kind"),
                                       52: (50, "sudo-child")})
    monkeypatch.setattr(processes, "_owner", lambda pid: os.getuid() + 1 if pid == 52 else os.getuid())
    monkeypatch.setattr(processes, "process_identity", lambda pid: (os.getuid(), pid))
    assert processes.orphaned_plugins(str(tmp_path)) == [50, 51]
