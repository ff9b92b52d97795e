"""Running `python -m kslab.cli.status` in a test lab's project (its backend and passphrase) and reading
its JSON; shared by the live and the real-kind tiers."""
import json
import subprocess
import sys
import time


def run_status_command(lab, *args, timeout=120):
    return subprocess.run([sys.executable, "-m", "kslab.cli.status", *args, "--stack", lab.stack],
                          cwd=lab.project.dir, env=lab.project.env, capture_output=True, text=True, timeout=timeout)


def status(lab, *extra):
    proc = run_status_command(lab, "status", "--json", *extra)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert proc.returncode == (1 if doc["findings"] else 0), (proc.returncode, doc["findings"])
    return doc


def kinds(doc) -> set[str]:
    return {f["kind"] for f in doc["findings"]}


def finding(doc, kind) -> dict:
    found = [f for f in doc["findings"] if f["kind"] == kind]
    assert found, f"no {kind} finding in {doc['findings']}"
    return found[0]


def eventually(lab, want: str, *extra, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while True:
        doc = status(lab, *extra)
        if want in kinds(doc) or time.monotonic() > deadline:
            return doc
        time.sleep(1)


def quiet(lab, *extra, seconds: float = 30):
    """The first status with no finding (the played controllers need a few seconds after a change)."""
    deadline = time.monotonic() + seconds
    while True:
        doc = status(lab, *extra)
        if not doc["findings"] or time.monotonic() > deadline:
            return doc
        time.sleep(1)
