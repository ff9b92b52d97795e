"""kslab's CrossGuard policies, importable without starting a policy server.

The names the program registers (step types, labels, annotations, step environment) and the version and
kubeconfig facts come from the program's own modules under components/ (one source of truth), so the
project root is put on the path first.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from .rules import MANDATORY_POLICIES, POLICIES, POLICY_NAMES  # noqa: E402 (after the path above)

__all__ = ["POLICIES", "POLICY_NAMES", "MANDATORY_POLICIES"]
