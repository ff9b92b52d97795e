"""A stack's lab as its stack file declares it, read without the engine, for the commands that need no state
(`make status`, `make graph`, `make images`, `make registry`, and the tools a command needs)."""
from __future__ import annotations

import sys

import yaml

from kslab.model.spec import LabConfigError, LabSpec, parse_lab_problems, settle
from kslab.model.stack_config import read_stack_file


def load_spec(project_dir: str, stack: str) -> LabSpec:
    """The stack file's lab, read without the engine. LabConfigError, OSError or yaml.YAMLError otherwise."""
    raw, keys = read_stack_file(project_dir, stack)
    lab, problems = parse_lab_problems(raw, keys)
    # kslab:jwtSecret is encrypted in the stack file and not needed to read the lab: its problems are up's.
    return settle(lab, [p for p in problems if p.field != "kslab:jwtSecret"]).of_stack(stack)


def load_spec_or_say_why(project_dir: str, stack: str) -> LabSpec | None:
    """The stack file's lab, or None after saying on stderr why it cannot be read (for the read-only commands)."""
    try:
        return load_spec(project_dir, stack)
    except LabConfigError as exc:
        print(f"kslab: the stack file of {stack} has problems (make preview STACK={stack} lists them):\n{exc}",
              file=sys.stderr)
    except FileNotFoundError:
        print(f"kslab: no stack file for {stack} (stacks/Pulumi.{stack}.yaml)", file=sys.stderr)
    except (OSError, yaml.YAMLError) as exc:
        print(f"kslab: the stack file of {stack} cannot be read: {str(exc).splitlines()[0][:200]}", file=sys.stderr)
    return None
