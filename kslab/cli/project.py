"""Where and how a kslab command runs Pulumi: the stack's files, its scratch project under .kslab/projects, the
state backend and passphrase, and the policy pack and Pulumi home that suit the engine found."""
from __future__ import annotations

import os
import re
import secrets
import sys
from dataclasses import dataclass

from kslab.cli.needs import is_kslab_engine

# What a scratch project links to in the checkout (the program, the pack, the virtualenv, the test stacks).
LINKED = ("Pulumi.yaml", "__main__.py", "kslab", "components", "provider", "policies", "venv", "tests")
LIVE_POLICY_CONFIG = "tests/stacks/policy-config.live.json"
_STACK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Stack:
    root: str  # the checkout
    name: str
    source: str  # the stack file you edit, relative to root: stacks/..., or tests/stacks/... for a test stack

    @property
    def test(self) -> bool:
        return self.source.startswith("tests/")

    @property
    def work(self) -> str:
        """The scratch project: Pulumi runs here, never in the checkout."""
        return os.path.join(self.root, ".kslab", "projects", self.name)

    @property
    def files(self) -> tuple[str, str, str]:
        """The stack file, the lab's own settings (.kslab/stacks) and the scratch stack file made of both."""
        file = f"Pulumi.{self.name}.yaml"
        return (os.path.join(self.root, self.source), os.path.join(self.root, ".kslab", "stacks", file),
                os.path.join(self.work, "stacks", file))

    def policy_config(self) -> list[str]:
        """The live test stacks' policy configuration (they run on API servers alone)."""
        return ["--policy-pack-config", os.path.join(self.root, LIVE_POLICY_CONFIG)] \
            if self.test and self.name.startswith("live-") else []


def find_stack(root: str, name: str) -> Stack | None:
    """The stack of stacks/Pulumi.<name>.yaml, else the test stack of tests/stacks (e.g. against `make
    harness-up`); None when neither exists or the name is no stack name."""
    if not _STACK_NAME.match(name):
        return None
    for folder in ("stacks", "tests/stacks"):
        if os.path.isfile(os.path.join(root, folder, f"Pulumi.{name}.yaml")):
            return Stack(root, name, f"{folder}/Pulumi.{name}.yaml")
    return None


def make_scratch_project(stack: Stack) -> None:
    """The scratch project's folder with its links to the checkout (made anew: a checkout moved keeps working)."""
    os.makedirs(os.path.join(stack.work, "stacks"), exist_ok=True)
    for item in LINKED:
        link = os.path.join(stack.work, item)
        if os.path.islink(link):
            os.unlink(link)
        if not os.path.exists(link):
            os.symlink(os.path.join(stack.root, item), link)


def use_state(root: str) -> None:
    """State in a local file backend under .kslab/state (PULUMI_BACKEND_URL overrides it); secrets encrypted with
    PULUMI_CONFIG_PASSPHRASE(_FILE), else the passphrase file .kslab/passphrase, made once (mode 600)."""
    os.makedirs(os.path.join(root, ".kslab", "state"), exist_ok=True)
    os.environ.setdefault("PULUMI_BACKEND_URL", f"file://{root}/.kslab/state")
    if os.environ.get("PULUMI_CONFIG_PASSPHRASE") or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"):
        return
    path = os.path.join(root, ".kslab", "passphrase")
    if not os.path.isfile(path) or os.path.getsize(path) == 0:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
        print("kslab: created .kslab/passphrase (keep it: it encrypts this lab's secrets)", file=sys.stderr)
    os.environ["PULUMI_CONFIG_PASSPHRASE_FILE"] = path


def use_engine(root: str, pulumi: str, sdk: str) -> str:
    """The policy pack for this engine, and for kslab's own engine build its settings: no plugin downloads, and
    (when its installed kubernetes plugin is the version the program's SDK `sdk` asks for, and complete) a Pulumi
    home of kslab's own whose plugins are those, so the engine takes it from there instead of warning that it uses
    it from PATH, and nothing is written into ~/.pulumi. Its Python language host predates running packs itself:
    it gets the pack's analyzer folder."""
    if not is_kslab_engine(pulumi):
        return "policies"
    os.environ["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] = "true"
    plugin_home = os.environ.get("KSLAB_ENGINE_PLUGIN_HOME")
    if plugin_home and not os.environ.get("PULUMI_HOME"):
        built = os.path.join(plugin_home, "plugins", f"resource-kubernetes-v{sdk}")
        if sdk and os.path.isdir(built) and not os.path.exists(f"{built}.partial"):
            home = os.path.join(root, ".kslab", "pulumi-home")
            os.makedirs(home, exist_ok=True)
            link = os.path.join(home, "plugins")
            if os.path.islink(link):
                os.unlink(link)
            if not os.path.exists(link):
                os.symlink(os.path.join(plugin_home, "plugins"), link)
            os.environ.update(PULUMI_HOME=home, PULUMI_IGNORE_AMBIENT_PLUGINS="true")
    return "policies/analyzer"
