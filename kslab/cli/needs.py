"""What a kslab command needs besides Python: which of kslab's own tools (each built once and cached by its script
under tools/), decided from the lab its stack file declares, and whether the `pulumi` found is kslab's own engine
build (by the stamp tools/engine/build.sh leaves, wherever KSLAB_CACHE put it)."""
from __future__ import annotations

import os
import subprocess
import sys

import yaml

from kslab.cli.stack_spec import load_spec
from kslab.model.spec import LabConfigError, LabSpec

ENGINE = "tools/engine/build.sh"
REGISTRY_TOOLS = "tools/registry/build.sh"  # distribution's registry and crane
KIND_TIER = "tools/kind/tier.sh"  # the Docker engine, kind and the node image kslab builds
ENGINE_STAMP = ".complete"  # tools/engine/build.sh writes it beside bin/ once the engine is built and checked
ENGINE_ONLY_PROGRAM = "pulumi-language-python-host"  # the language host wrapper only that build installs


def lab_or_none(project_dir: str, stack: str) -> LabSpec | None:
    """The lab, or None when the stack file has problems (the command itself names them, before anything is
    created, and needs no tool to do so)."""
    try:
        return load_spec(project_dir, stack)
    except (LabConfigError, OSError, yaml.YAMLError):
        return None


def tools_for(action: str, args: list[str], lab: LabSpec | None, test_stack: bool) -> list[str]:
    """The tool scripts a command needs, in the order they are set up:
    - a test stack (tests/stacks) with a kind cluster runs on the Docker, kind and node image kslab builds (but its
      image plan reads the stack file alone);
    - `up` of a lab with image sources or archives copies its images with crane into a lab registry run from
      distribution's binary, and `images --save` pulls with crane."""
    tools = []
    if test_stack and action != "images" and lab is not None and any(c.is_kind for c in lab.clusters):
        tools.append(KIND_TIER)
    if (action == "up" and lab is not None and lab.image_sources is not None) or (
            action == "images" and "--save" in args):
        tools.append(REGISTRY_TOOLS)
    return tools


def is_kslab_engine(pulumi: str) -> bool:
    """Whether this `pulumi` program is kslab's own engine build: its bin/ folder holds the language host wrapper
    only that build installs, and the build's stamp lies beside that folder."""
    bin_dir = os.path.dirname(os.path.realpath(pulumi))
    return (os.path.isfile(os.path.join(bin_dir, os.pardir, ENGINE_STAMP))
            and os.access(os.path.join(bin_dir, ENGINE_ONLY_PROGRAM), os.X_OK))


def tool_env(root: str, script: str) -> dict[str, str] | int:
    """Run a tool script (it builds or finds its tool; its progress goes to stderr) and return the environment
    its `export ...` line sets, or the script's exit status when it failed."""
    done = subprocess.run([os.path.join(root, script)], cwd=root, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        print(f"kslab: {script} failed (exit {done.returncode}); see what it said above", file=sys.stderr)
        return done.returncode
    lines = done.stdout.strip().splitlines()
    # The environment before and after the line, as the same shell sees it (bash sets some variables itself).
    shown = subprocess.run(["bash", "-c", 'env -0; printf "\\1"; eval "$1" && env -0', "_", lines[-1] if lines else ""],
                           stdout=subprocess.PIPE, text=True)
    before, _, after = shown.stdout.partition("\1")
    if shown.returncode != 0 or not after:
        print(f"kslab: {script} printed no usable export line", file=sys.stderr)
        return 1
    old, new = (dict(item.split("=", 1) for item in text.split("\0") if "=" in item) for text in (before, after))
    return {k: v for k, v in new.items() if old.get(k) != v}


def use_tools(root: str, scripts: list[str]) -> int:
    """Set up each tool into this process's environment (the commands it starts inherit it); 0, or the status of
    the first that failed."""
    for script in scripts:
        env = tool_env(root, script)
        if isinstance(env, int):
            return env
        os.environ.update(env)
    return 0
