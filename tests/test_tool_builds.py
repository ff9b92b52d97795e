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
