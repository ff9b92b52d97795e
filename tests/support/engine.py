"""Driving the real Pulumi CLI in tests: a throwaway copy of the project, a local file
backend, a passphrase, and no plugin downloads (a missing plugin fails loudly)."""
from __future__ import annotations

import glob
import importlib.metadata
import json
import os
import shutil
import subprocess
from dataclasses import dataclass

import pytest
import yaml

from kslab.cli.needs import is_kslab_engine
from kslab.cli.stack_files import without_salt
from tests.support.mock_run import ROOT

PASSPHRASE = "kslab-test-passphrase"
PROJECT_ITEMS = ("Pulumi.yaml", "__main__.py", "kslab", "components", "provider", "stacks", "policies",
                 "requirements.txt")


def policy_pack() -> str:
    """`policies` for an official CLI; `policies/analyzer` for the engine tools/engine/build.sh builds,
    whose Python language host predates running policy packs (see tools/engine/README.md)."""
    path = shutil.which("pulumi")
    return "policies/analyzer" if path and is_kslab_engine(path) else "policies"


def require_pulumi() -> str:
    """The engine must be there: `make test` builds it. Never a silent skip."""
    path = shutil.which("pulumi")
    if path is None:
        pytest.fail("the Pulumi CLI is not on PATH: run the tests through `make test`, which builds the engine "
                    "(tools/engine/build.sh) and puts it on PATH", pytrace=False)
    return path


@dataclass
class Project:
    dir: str
    state: str
    env: dict

    def pulumi(self, *args: str, timeout: float = 600, check: bool = False, extra_env: dict | None = None,
               input: str | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(["pulumi", *args], cwd=self.dir, env={**self.env, **(extra_env or {})},
                              capture_output=True, text=True, timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"pulumi {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n"
                                 f"{proc.stderr[-4000:]}")
        return proc

    def init(self, stack: str) -> None:
        self.pulumi("stack", "select", stack, "--create", check=True)

    def add_stack_file(self, path: str, stack: str) -> None:
        with open(path) as fh:
            text = without_salt(fh.read())
        with open(os.path.join(self.dir, "stacks", f"Pulumi.{stack}.yaml"), "w") as fh:
            fh.write(text)

    def preview_json(self, stack: str, *extra: str) -> tuple[subprocess.CompletedProcess, dict | None]:
        proc = self.pulumi("preview", "--stack", stack, "--json", "--policy-pack", policy_pack(), *extra)
        try:
            return proc, json.loads(proc.stdout)
        except json.JSONDecodeError:
            return proc, None

    def export(self, stack: str) -> dict:
        return json.loads(self.pulumi("stack", "export", "--stack", stack, check=True).stdout)


def copy_items(dest, items=PROJECT_ITEMS) -> None:
    """Copy these items of this checkout into `dest` (a project copy), without bytecode caches. Stack files are
    copied pristine: an encryption salt a user's run left in one (kslab before .kslab/stacks) is not the test's."""
    for item in items:
        src = os.path.join(ROOT, item)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(dest, item), ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, os.path.join(dest, item))
    for stack_file in glob.glob(os.path.join(dest, "stacks", "Pulumi.*.yaml")):
        with open(stack_file) as fh:
            text = fh.read()
        with open(stack_file, "w") as fh:
            fh.write(without_salt(text))


def _installed_plugins(home) -> dict[str, str]:
    """The engine's built plugins as installed plugins of this test's Pulumi home (a link to the engine cache's
    plugin home, tools/engine/build.sh), so the engine takes them from there and does not warn that it uses them
    from PATH. Nothing when the engine has none (an official CLI) or a test names its own home."""
    installed = os.environ.get("KSLAB_ENGINE_PLUGIN_HOME")
    if not installed or os.environ.get("KSLAB_PULUMI_HOME"):
        return {}
    # The engine then looks up exactly the version the program's SDK asks for (as tools/lab.sh checks too).
    sdk = importlib.metadata.version("pulumi_kubernetes")
    built = os.path.join(installed, "plugins", f"resource-kubernetes-v{sdk}")
    if not os.path.isdir(built) or os.path.exists(built + ".partial"):
        return {}
    home.mkdir(exist_ok=True)
    os.symlink(os.path.join(installed, "plugins"), home / "plugins")
    return {"PULUMI_IGNORE_AMBIENT_PLUGINS": "true"}


def make_project(tmp_path, extra_env: dict | None = None) -> Project:
    require_pulumi()
    project = tmp_path / "kslab"
    project.mkdir()
    copy_items(project)
    # Reuse the project's virtualenv (the program and the pack both name it relative to themselves).
    os.symlink(os.path.join(ROOT, "venv"), project / "venv")
    (project / "tests").mkdir()
    shutil.copytree(os.path.join(ROOT, "tests", "stacks"), project / "tests" / "stacks")
    state = tmp_path / "state"
    state.mkdir()
    home = tmp_path / "pulumi-home"
    plugins = _installed_plugins(home)
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{state}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_HOME": os.environ.get("KSLAB_PULUMI_HOME", str(home)),
        **plugins,
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
        "NO_COLOR": "1",
        **(extra_env or {}),
    }
    return Project(dir=str(project), state=str(state), env=env)


def planned_resources(preview: dict) -> set[tuple[str, str, str]]:
    """(type, name, parent name) of every planned resource, from `pulumi preview --json`."""
    steps = preview.get("steps") or []
    states = {}
    for step in steps:
        new = step.get("newState") or {}
        urn = step.get("urn") or new.get("urn")
        states[urn] = new
    names = {urn: urn.split("::")[-1] for urn in states}
    out = set()
    for urn, new in states.items():
        type_ = new.get("type") or urn.split("::")[-2].split("$")[-1]
        if type_ == "pulumi:pulumi:Stack":
            continue
        parent = new.get("parent") or ""
        is_stack = parent.count("::") >= 3 and parent.split("::")[-2] == "pulumi:pulumi:Stack"
        out.add((type_, names[urn], "" if not parent or is_stack else parent.split("::")[-1]))
    return out


class StackLab:
    """What a test lab of one stack does with its project copy (the live and kind labs build on it)."""
    stack: str
    config: dict
    project: Project

    def set_config(self, key: str, value) -> None:
        """Edit the stack file as a user would (structured values, no CLI path quirks)."""
        path = os.path.join(self.project.dir, "stacks", f"Pulumi.{self.stack}.yaml")
        with open(path) as fh:
            doc = yaml.safe_load(fh)
        doc["config"][key] = value
        self.config[key] = value
        with open(path, "w") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False)

    def pulumi(self, *args, **kw):
        return self.project.pulumi(*args, "--stack", self.stack, **kw)
