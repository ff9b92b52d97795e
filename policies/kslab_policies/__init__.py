"""kslab's CrossGuard policies, importable without starting a policy server.

The names the program registers (step types, labels, annotations, step environment) and the version and
kubeconfig facts come from the kslab package (kslab.model, one source of truth), installed in the project's
virtualenv.
"""
from .rules import MANDATORY_POLICIES, POLICIES, POLICY_NAMES

__all__ = ["POLICIES", "POLICY_NAMES", "MANDATORY_POLICIES"]
