"""A failing step's error reaches the user once (#25 item 13): as the failure the engine shows under the step,
not also as progress (which the engine shows under the stack). kslab/steps/plugin.py, StepRunner."""
from __future__ import annotations

import os
import stat
import sys
import textwrap

import pytest

from kslab.steps.plugin import StepError, StepRunner

FAKE_STEP = textwrap.dedent("""\
    #!{python}
    import sys
    from kslab.steps.common import fail, log
    log("asking 3 images")
    if {fails}:
        fail("image check failed: 2 of 3 planned images cannot be found; no cluster was created:\\n"
             "  - a/b:1 (for host): missing\\n  - a/c:1 (for host): denied\\n  Fix: add a source")
    sys.stderr.write("[kslab] ERROR: a line a step printed, then went on\\n  with its detail\\n")
    log("done")
    sys.stderr.write("[kslab] ERROR: and a last one\\n")
    """)


def _runner(tmp_path, fails: bool, logged: list[str]) -> StepRunner:
    path = tmp_path / "python"
    path.write_text(FAKE_STEP.format(python=sys.executable, fails=fails))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    machine = {"PATH": os.environ["PATH"]}
    return StepRunner(logged.append, machine=machine, python=str(path))


def _props() -> dict:
    return {"step": "image-check", "environment": {}}


def test_a_failing_step_shows_its_error_list_once(tmp_path):
    logged: list[str] = []
    with pytest.raises(StepError) as info:
        _runner(tmp_path, True, logged).run(_props())
    message = str(info.value)
    assert message.splitlines() == [
        "[kslab] ERROR: image check failed: 2 of 3 planned images cannot be found; no cluster was created:",
        "  - a/b:1 (for host): missing", "  - a/c:1 (for host): denied", "  Fix: add a source"]
    assert logged == ["[kslab] asking 3 images"], "the error is the failure's message, not progress too"


def test_an_error_line_of_a_step_that_goes_on_and_succeeds_is_still_shown(tmp_path):
    logged: list[str] = []
    _runner(tmp_path, False, logged).run(_props())
    assert logged == ["[kslab] asking 3 images", "[kslab] ERROR: a line a step printed, then went on",
                      "  with its detail", "[kslab] done", "[kslab] ERROR: and a last one"]
