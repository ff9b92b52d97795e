"""Run the policy pack's policies over a mock run's registrations, as the engine would hand them
over (wire-form properties decoded by the pack's own decoder, behind pulumi-policy's proxies)."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from kslab_policies import POLICIES
from kslab_policies.facts import REGISTERED, props_from_rpc
from tests.support.mock_run import Run


@dataclass
class Verdicts:
    violations: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    unknown: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    levels: dict[str, EnforcementLevel] = field(default_factory=dict)

    @property
    def mandatory(self) -> set[str]:
        return {p for p, v in self.violations.items() if v and self.levels[p] == EnforcementLevel.MANDATORY}

    @property
    def advisory(self) -> set[str]:
        return {p for p, v in self.violations.items() if v and self.levels[p] == EnforcementLevel.ADVISORY}

    def messages(self, policy: str) -> str:
        return "\n".join(m for m, _ in self.violations.get(policy, []))


def policy_resources(run: Run, mutate=None) -> list[PolicyResource]:
    out = []
    for reg in run.resources:
        raw = mutate(reg) if mutate else reg.raw_props
        opts = PolicyResourceOptions(False, [], reg.delete_before_replace, [], PolicyCustomTimeouts(0, 0, 0),
                                     list(reg.additional_secret_outputs), reg.parent)
        props = unknown_checking_proxy(props_from_rpc(raw))
        out.append(PolicyResource(reg.type, props, reg.urn, reg.name, opts, None, None, [], {}))
    return out


def run_policies(run: Run, config: dict | None = None, mutate=None, empty_stack_props: bool = False) -> Verdicts:
    """`empty_stack_props`: hand the stack validations resources without properties, as the engine
    does in preview for Kubernetes objects whose cluster does not exist yet."""
    config = config or {}
    resources = policy_resources(run, mutate)
    stack_resources = [PolicyResource(r.resource_type, {}, r.urn, r.name, r.opts, None, None, [], {})
                       for r in resources] if empty_stack_props else resources
    verdicts = Verdicts()
    REGISTERED.clear()
    # As the engine does: every resource is analyzed before the stack.
    ordered = [p for p in POLICIES if isinstance(p, ResourceValidationPolicy)] + \
              [p for p in POLICIES if not isinstance(p, ResourceValidationPolicy)]
    for policy in ordered:
        cfg = dict(config.get(policy.name, {}))
        level = EnforcementLevel(cfg.get("enforcementLevel", policy.enforcement_level.value))
        verdicts.levels[policy.name] = level
        if level == EnforcementLevel.DISABLED:
            continue

        def report(message, urn=None, _name=policy.name):
            verdicts.violations[_name].append((message, urn or ""))

        targets = ([ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, r.opts, None, cfg)
                    for r in resources] if isinstance(policy, ResourceValidationPolicy)
                   else [StackValidationArgs(stack_resources, cfg)])
        for args in targets:
            try:
                policy.validate(args, report)
            except UnknownValueError as exc:
                verdicts.unknown[policy.name].append(exc.message)
    return verdicts
