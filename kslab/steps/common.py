"""What every apply-time step shares (kslab/steps/dispatch.py): its stderr progress and failure, its typed request
(kslab/model/requests.py) and the user's knobs, the cluster client and the `kind` binary, the bounded wait, and the
one error boundary a step runs in.

`kube` and `kind` are the steps' ways out of the process (a cluster's API, the kind binary). Every step module
calls them through this module (`common.kube(...)`, never a name imported from it), so one stand-in set here
(monkeypatch.setattr(common, "kube", ...)) reaches every step.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
from typing import Any, NoReturn, TypeVar

from kslab.model import contract as names
from kslab.model import requests
from kslab.model.step_table import STEPS
from kslab.steps.errors import ApiFailure, Transient

R = TypeVar("R", bound=requests.StepRequest)
STEP: str | None = None  # the step this process runs (kslab/steps/dispatch.py sets it)


def log(message: str) -> None:
    print(f"[kslab] {message}", file=sys.stderr, flush=True)


def fail(message: str) -> NoReturn:
    print(f"[kslab] ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def _step_of(kind: type[Any]) -> str:
    """The step this process runs, or (a step function called on its own, as tests do) the first of the table's
    steps that read this request."""
    return STEP or next((s.name for s in STEPS.values() if s.request is kind), kind.__name__)


def request(kind: type[R]) -> R:
    """This step's request, read from its environment; a missing or malformed variable ends the step with the
    step's and the variable's name (a kslab bug: the program writes every request)."""
    try:
        read: R = kind.from_env(os.environ, _step_of(kind))
    except requests.RequestError as error:
        fail(str(error))
    return read


def knobs() -> requests.UserKnobs:
    """The user's knobs for this run (requests.UserKnobs: the poll and progress intervals, a forced unjoin, ...)."""
    try:
        read: requests.UserKnobs = requests.UserKnobs.from_env(os.environ, STEP or "of this run")
    except requests.RequestError as error:
        fail(f"{error}. Fix: unset it, or correct it")
    return read


def kube(var: str, label: str):
    """A client of the cluster whose kubeconfig the step's variable `var` holds (a field of its request)."""
    from kslab.steps.kube import Kube  # the client library loads only for steps that need it
    kubeconfig = os.environ.get(var)
    if kubeconfig is None:
        fail(f"internal: step {STEP}: {var} is not set")
    return Kube(kubeconfig, label)


def kind(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["kind", *args], capture_output=True, text=True, timeout=timeout)


def wait_for(probe, timeout: float, poll: float, progress: float, label: str):
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


def fatal_api_errors(step):
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
