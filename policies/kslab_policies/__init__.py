"""kslab's CrossGuard policies, importable without starting a policy server."""
from .rules import MANDATORY_POLICIES, POLICIES, POLICY_NAMES

__all__ = ["POLICIES", "POLICY_NAMES", "MANDATORY_POLICIES"]
