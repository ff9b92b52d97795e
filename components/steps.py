"""Only for stacks made when steps were Pulumi dynamic resources (before each step had its own type).

Until such a step has been through one `up` with today's program, the engine hands its refresh, replace and
delete to the dynamic provider, which unpickles the provider class by the name it was saved under,
`components.steps.StepProvider`: this module. The step plugin loads only when the engine calls it, never when the
program runs.
"""
from __future__ import annotations

import sys

import pulumi.dynamic as dynamic


class StepProvider(dynamic.ResourceProvider):
    """Only for stacks made when steps were Pulumi dynamic resources. Until a step has been through one
    `up` with today's program, the engine hands its refresh, replace and delete to the dynamic provider, which
    unpickles this class by its name (`components.steps.StepProvider`) from the step's state. It does what
    kslab's provider plugin does (provider.Steps)."""

    @staticmethod
    def _steps():  # the plugin's Steps, imported only when a legacy step runs
        from kslab.steps.plugin import StepRunner, Steps

        return Steps(StepRunner(lambda line: print(line, file=sys.stderr, flush=True)))

    def create(self, props):
        id_, outs = self._steps().create(props)
        return dynamic.CreateResult(id_=id_, outs=outs)

    def diff(self, _id, olds, news):
        changes, replaces, delete_before_replace = self._steps().diff(olds, news)
        return dynamic.DiffResult(changes=changes, replaces=replaces, delete_before_replace=delete_before_replace)

    def update(self, _id, olds, news):
        return dynamic.UpdateResult(outs=self._steps().update(olds, news))

    def read(self, id_, props):
        new_id, outs = self._steps().read(id_, props)
        return dynamic.ReadResult(id_=new_id, outs=outs)

    def delete(self, _id, props):
        self._steps().delete(props)
