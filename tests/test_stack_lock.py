"""One command per stack at a time (issue #20, defect 4): tools/lab.sh holds a per-stack lock for recovery plus
the run, through a holder process that lets go the moment the run's process ends, however it ends."""
import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kslab.cli import stack_lock
from tests.support.mock_run import ROOT


def _holder(lock: str, pid: int, what: str = "tools/lab.sh up s") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "kslab.cli.stack_lock", "hold", lock, str(pid), what],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _run():
    return subprocess.Popen(["sleep", "60"])


def test_a_second_command_is_told_who_holds_the_stack(tmp_path):
    lock = str(tmp_path / "locks" / "s.lock")
    run = _run()
    holder = _holder(lock, run.pid)
    try:
        answer = stack_lock.acquire(lock, os.getpid(), "tools/lab.sh destroy s", wait=0.5)
        assert answer == (f"stack is busy: tools/lab.sh up s (pid {run.pid}) runs on it. Wait for it to end, then "
                          "run your command again")
    finally:
        run.kill()
        run.wait()
    assert holder.wait(timeout=10) == 0


def test_the_lock_goes_when_the_run_is_killed(tmp_path):
    lock = str(tmp_path / "s.lock")
    run = _run()
    holder = _holder(lock, run.pid)
    run.send_signal(signal.SIGKILL)
    run.wait()
    locked = stack_lock.acquire(lock, os.getpid(), "next")
    assert isinstance(locked, int), locked
    os.close(locked)
    with open(lock) as fh:
        assert json.load(fh) == {"pid": os.getpid(), "what": "next"}  # the new holder's record, not the old one's
    holder.wait(timeout=10)


def test_ctrl_c_does_not_release_the_lock(tmp_path):
    lock = str(tmp_path / "s.lock")
    run = _run()
    holder = _holder(lock, run.pid)
    try:
        holder.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert holder.poll() is None
        assert isinstance(stack_lock.acquire(lock, os.getpid(), "next", wait=0.2), str)
    finally:
        run.kill()
        run.wait()
        holder.wait(timeout=10)


@pytest.mark.parametrize("record", ['{"pid": "abc", "what": "x"}', '{"pid": [1]}', '{"pid": 99999999999999999999}',
                                    '["pid"]', "not json"])
def test_a_held_lock_with_a_broken_record_is_named_not_a_traceback(tmp_path, record):
    """A lock file whose pid is not a process number, held by someone: busy, said plainly (#25 item 12)."""
    lock = tmp_path / "s.lock"
    lock.write_text(record)
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        answer = stack_lock.acquire(str(lock), os.getpid(), "next", wait=0.1)
    assert isinstance(answer, str)
    assert answer.startswith(f"stack is busy, and its lock file {lock} is broken"), answer
    assert "Wait for the command that holds it to end" in answer


def test_a_free_lock_with_a_broken_record_is_taken_over(tmp_path):
    lock = tmp_path / "s.lock"
    lock.write_text('{"pid": "abc"}')
    locked = stack_lock.acquire(str(lock), 4242, "next", wait=0.1)
    assert isinstance(locked, int), locked
    os.close(locked)
    assert json.loads(lock.read_text()) == {"pid": 4242, "what": "next"}


def test_hold_with_a_pid_that_is_not_a_number_says_how_to_call_it(capsys):
    assert stack_lock.main(["hold", "/tmp/x.lock", "abc", "up"]) == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.engine
def test_tools_lab_sh_refuses_a_second_command_on_a_busy_stack_and_runs_once_it_is_free(tmp_path):
    from tests.support.engine import require_pulumi
    from tests.test_stack_files import _fresh_clone
    require_pulumi()
    clone = _fresh_clone(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(PULUMI_HOME=str(tmp_path / "pulumi-home"), PULUMI_SKIP_UPDATE_CHECK="true")
    run = _run()
    holder = _holder(os.path.join(clone, ".kslab", "locks", "host-member.lock"), run.pid,
                     "tools/lab.sh up host-member")
    try:
        busy = subprocess.run(["tools/lab.sh", "preview", "host-member"], cwd=clone, env=env, capture_output=True,
                              text=True, timeout=120)
        assert busy.returncode == stack_lock.BUSY_EXIT
        assert f"stack is busy: tools/lab.sh up host-member (pid {run.pid})" in busy.stderr
        assert not os.path.exists(os.path.join(clone, ".kslab", "state", ".pulumi")), "nothing read or written"
    finally:
        run.kill()
        run.wait()
        holder.wait(timeout=10)
    free = subprocess.run(["tools/lab.sh", "preview", "host-member"], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=600)
    assert "stack is busy" not in free.stderr and "Previewing update (host-member)" in free.stdout, \
        (free.stdout + free.stderr)[-3000:]
