"""Reading one stack-config value: its YAML type, its range, and the Problem that says what is wrong with it.

Every reader records a Problem (field, value, what is wrong, how to fix it) and goes on, so a stack file's every
problem is reported at once; a value never shown when its field may hold a secret. Pure code.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, NamedTuple

# DNS-1123 label; kind also names the container "<name>-control-plane", and the
# name ends up in shell commands, so nothing outside this alphabet is accepted.
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LEN = 40
class Problem(NamedTuple):
    """One thing wrong with the stack config (a tuple, so callers may also unpack it)."""
    field: str
    value: Any
    message: str
    fix: str
    # The policy-pack policy that guards the same trap; such problems become warnings in
    # validationMode 'warn' (the pack then judges). Structural problems have none and always fail.
    policy: str | None = None

    def __str__(self) -> str:
        return f"{self.field} = {shown(self.field, self.value)}: {self.message}. Fix: {self.fix}"


# A field whose name says it may hold a secret, e.g. a kubeconfig pasted under a mistyped key.
_SECRET_FIELD = re.compile(r"(?i)(kubeconfig|secret|token|password|key|cert)")


def shown(field: str, value: Any) -> str:
    """A value as a message may show it: never that of a field that may hold a secret (other than the
    name of a config key), and never a long or multi-line one (a pasted kubeconfig or token)."""
    if isinstance(value, str) and (field.endswith(".kubeconfigSecret") or field.endswith(".kubeconfigPath")) \
            and len(value) <= 200 and "\n" not in value:
        return repr(value)
    text = repr(value)
    if _SECRET_FIELD.search(field.rsplit(".", 1)[-1]) and value not in (None, "", "(set)", "(secret)"):
        return f"({yaml_kind(value) if not isinstance(value, str) else 'a string'}, not shown)"
    if len(text) > 120 or "\n" in str(value):
        return f"({len(str(value))} characters, not shown)"
    return text


class LabConfigError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"kslab: invalid stack config ({len(problems)} problem(s)); nothing was created:\n{lines}")


# What YAML made of a value, for messages ("a list", "the number 1.2").
def yaml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


WRONG_TYPE = object()  # a value of the wrong YAML type; its problem is already recorded


def as_text(problems: list[Problem], path: str, value: Any, default: Any = None, *,
             example: str = "") -> Any:
    """A string field: its value, `default` when absent, or WRONG_TYPE (with a problem) for a list,
    mapping, number or boolean. A number is usually a version YAML read as a float (1.20 -> 1.2)."""
    if value is None:
        return default
    if isinstance(value, str):
        return value
    hint = (f"quote it: '{example}'" if example else "quote it") if isinstance(value, (int, float)) \
        else f"write one string{', e.g. ' + repr(example) if example else ''}"
    problems.append(Problem(path, value, f"must be a string, but YAML read {yaml_kind(value)}", hint))
    return WRONG_TYPE


def as_bool(problems: list[Problem], path: str, value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append(Problem(path, value, "must be true or false", f"set {path} to true or false"))
    return default


def as_int(problems: list[Problem], path: str, value: Any, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    try:
        number = int(str(value), 10)
    except ValueError:
        number = None
    if number is None or isinstance(value, bool) or not lo <= number <= hi:
        problems.append(Problem(path, value, f"must be a whole number from {lo} to {hi}",
                                f"set {path} to a number in that range"))
        return default
    return number


def check_name(problems: list[Problem], path: str, name: Any) -> bool:
    if name is None or name == "":
        problems.append(Problem(path, name, "is missing", "give every cluster a name such as 'host' or 'member'"))
        return False
    if not isinstance(name, str):
        problems.append(Problem(path, name, f"must be a string, but YAML read {yaml_kind(name)}",
                                "write the name as one string, e.g. 'member'"))
        return False
    if len(name) > MAX_NAME_LEN or not _DNS1123.match(name):
        problems.append(Problem(
            path, name,
            f"is not a DNS-1123 label of at most {MAX_NAME_LEN} characters (lower-case letters, digits, '-')",
            "rename it, e.g. 'host2' or 'member-a'"))
        return False
    return True


def check_cidr(problems: list[Problem], path: str, value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_network(str(value), strict=True))
    except ValueError:
        problems.append(Problem(path, value, "is not a valid network CIDR", "use a form like 10.245.0.0/16"))
        return None
