"""What a step's messages must never show: the secrets of its environment (kslab/steps/plugin.py blots them out
of every progress line and failure message before the engine sees it).

- every secret variable's value (contract.is_secret_env: kubeconfigs, tokens) and every long line or word inside
  one (a kubeconfig's key data);
- every registry password of kslab:registryCredentials on its own, whatever its length, with the forms a client
  writes it in (`user:password`, its base64, URL-quoted, JSON-escaped).
"""
from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from kslab.model import contract

REDACTED = "[secret]"


def secret_fragments(step_env: Mapping[str, Any]) -> list[str]:
    """Pieces of the step's environment that must never appear in a message: every secret variable's value
    (contract.is_secret_env: kubeconfigs, tokens), and every long line or word inside one (a kubeconfig's
    key data); and each registry credential on its own, whatever its length (credential_fragments). Plain
    settings such as cluster names stay readable."""
    fragments: set[str] = set()
    for key, value in step_env.items():
        text = str(value or "")
        if not contract.is_secret_env(key) or not text:
            continue
        if key == contract.ENV_REGISTRY_AUTH:
            fragments |= credential_fragments(text)
        if len(text) < 8:
            continue
        fragments.add(text)
        for line in text.splitlines():
            for word in line.replace(":", " ").split():
                if len(word) >= 16:
                    fragments.add(word)
    return sorted(fragments, key=len, reverse=True)


def credential_fragments(text: str) -> set[str]:
    """Every password (and any other value but the user name) of kslab:registryCredentials'
    {host: {username, password}}, each on its own and as the forms a client writes it in: `user:password`, its
    base64 (a Docker config's `auth`), URL-quoted and JSON-escaped."""
    try:
        doc = json.loads(text)
    except ValueError:
        return set()
    out: set[str] = set()
    for entry in doc.values() if isinstance(doc, dict) else ():
        if not isinstance(entry, dict):
            continue
        user = entry.get("username")
        for key, value in entry.items():
            if key == "username" or not isinstance(value, str) or not value:
                continue
            out |= {value, quote(value, safe=""), json.dumps(value)[1:-1]}
            if isinstance(user, str):
                pair = f"{user}:{value}"
                out |= {pair, base64.b64encode(pair.encode()).decode()}
    return out


# A secret this long is blotted wherever it appears, even inside a longer word; a shorter one (a short password)
# only where it stands alone, not inside a longer run of letters and digits: a 3-letter password must not blot
# every word that holds those letters. It is still blotted wherever something prints it as a value (`"pw"`,
# `user:pw@`, `password=pw`).
MIN_ANYWHERE = 8


def redact(message: str, fragments: list[str]) -> str:
    for fragment in fragments:
        if len(fragment) >= MIN_ANYWHERE:
            message = message.replace(fragment, REDACTED)
        else:
            message = re.sub(rf"(?<![A-Za-z0-9]){re.escape(fragment)}(?![A-Za-z0-9])", REDACTED, message)
    return message
