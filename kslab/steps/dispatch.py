"""Apply-time steps run by the lab's step resources: `python -m kslab.steps <step>`.

Inputs come from environment variables, one typed request per step (kslab/model/requests.py; kubeconfigs are
Pulumi secrets there, never arguments, so they stay out of process lists and logs). Progress goes to stderr; only
the step's result goes to stdout, which the resource stores (as a secret where it holds one). Exit status non-zero =
the step failed, with the reason on stderr.

This module is the dispatcher: it runs the function the one table of steps names (kslab/model/step_table.py). The
steps themselves live by family: kind_steps (preflight, kind clusters), image_steps (image check, lab registry),
install_steps (KubeSphere's install), join_steps (multicluster join and unjoin), dev_steps (developer workspaces);
what they share is in common. The stand-ins a test sets go on the module that holds the seam (common.kube,
common.kind, dev_steps._give_back), and tests call a step from its family's module.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable

from kslab.model.step_table import STEPS
from kslab.steps import common
from kslab.steps.common import fail, fatal_api_errors


def function_of(step: str) -> Callable[[], None]:
    """The step's function, imported from the dotted path the table names."""
    module, _, name = STEPS[step].function.partition(":")
    function: Callable[[], None] = getattr(importlib.import_module(module), name)
    return function


def main(argv: list[str]) -> None:
    if len(argv) != 1 or argv[0] not in STEPS:
        fail("usage: python -m kslab.steps {" + ",".join(STEPS) + "}")
    common.STEP = argv[0]
    fatal_api_errors(function_of(argv[0]))()
