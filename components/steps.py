"""Kept for stacks made when steps were Pulumi dynamic resources: their state names the provider class
`components.steps.StepProvider`, which now lives in kslab/program/legacy_steps.py. Nothing else is here."""
from kslab.program.legacy_steps import StepProvider

__all__ = ["StepProvider"]
