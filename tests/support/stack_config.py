"""A stand-in for pulumi.Config("kslab") that hands values over as the engine does: a string as it is,
anything else (list, mapping, number, boolean) as JSON text."""
from __future__ import annotations

import json


class FakeConfig:
    def __init__(self, settings: dict):
        self.settings = settings

    def get(self, key: str):
        value = self.settings.get(key)
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value)
