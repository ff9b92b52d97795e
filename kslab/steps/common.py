"""What every apply-time step shares (kslab/steps/programs.py): its stderr progress and failure, its environment
inputs, the cluster client and the `kind` binary, the bounded wait, and the one error boundary a step runs in.

`_kube` and `_kind` are the steps' ways out of the process (a cluster's API, the kind binary). Every step module
calls them through this module (`common._kube(...)`, never a name imported from it), so one stand-in set here
(monkeypatch.setattr(common, "_kube", ...)) reaches every step.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from typing import NoReturn

from kslab.model import contract as names
from kslab.steps.errors import ApiFailure, Transient


def log(message: str) -> None:
    print(f"[kslab] {message}", file=sys.stderr, flush=True)


def fail(message: str) -> NoReturn:
    print(f"[kslab] ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        fail(f"internal: {name} not set")
    return value


def _kube(var: str, label: str):
    from kslab.steps.kube import Kube  # the client library loads only for steps that need it
    return Kube(env(var), label)


def _kind(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["kind", *args], capture_output=True, text=True, timeout=timeout)


def _timing() -> tuple[float, float, float]:
    return (float(env(names.ENV_TIMEOUT, "600")), float(env(names.ENV_POLL_SECONDS, "5")),
            float(env(names.ENV_PROGRESS_SECONDS, "30")))


def _wait_for(probe, timeout: float, poll: float, progress: float, label: str):
    """Poll `probe() -> (done, summary, value)` until done; a progress line every `progress` seconds.
    Only what can heal is waited through: an unreachable API server or a 5xx answer (kube.Transient) counts
    as not done yet; any other error propagates at once. Returns (value, elapsed, summary), or
    (None, elapsed, last summary) on timeout."""
    start = last = time.monotonic()
    summary = "not seen yet"
    while True:
        try:
            done, summary, value = probe()
        except Transient as exc:
            done, summary, value = False, str(exc), None
        now = time.monotonic()
        if done:
            return value, now - start, summary
        if now - start >= timeout:
            return None, now - start, summary
        if now - last >= progress:
            log(f"{label}: still waiting after {now - start:.0f}s ({summary})")
            last = now
        time.sleep(poll)


def _fatal_api_errors(step):
    """Run a step; an API answer that waiting cannot change ends it with that answer, not a traceback.
    Anything else is a kslab bug: said as such, with the traceback only when asked for (KSLAB_DEBUG=1)."""
    def run() -> None:
        try:
            step()
        except (ApiFailure, Transient) as exc:
            fail(str(exc))
        except Exception as exc:  # noqa: BLE001
            if os.environ.get(names.ENV_DEBUG):
                traceback.print_exc()
            fail(f"step {step.__name__} failed unexpectedly ({exc.__class__.__name__}: {exc}). This is a kslab "
                 f"bug: rerun with {names.ENV_DEBUG}=1 for the traceback and report it")
    return run
