"""The kslab command (kslab/cli/main.py; `kslab`, `python -m kslab`, tools/lab.sh and the make targets): a command
used wrongly is refused before anything runs, each action reaches the pulumi command (or the view) it stands for,
the tools a run needs are decided from the lab its stack file declares, and kslab's own engine build is known by
the stamp its build leaves."""
from __future__ import annotations

import ast
import glob
import importlib
import os
import subprocess
import sys
import tomllib

import pytest

from kslab.cli import main as cli
from kslab.cli import needs, project, stack_spec
from kslab.cli.config_value import UsageError, split_value_source
from tests.support.mock_run import ROOT
from tests.test_lab_sh import _env, _fake_pulumi, _records
from tests.test_stack_files import _fresh_clone


@pytest.mark.parametrize("args, said", [
    ([], "usage: kslab <preview|up|destroy|refresh|outputs|status|graph|images|registry|config|cancel|forget>"),
    (["up"], "usage: kslab"),
    (["launch", "standalone"], "unknown action launch"),
    (["up", "no-such-stack"], "no stack file stacks/Pulumi.no-such-stack.yaml"),
    (["up", "../stacks/standalone"], "no stack file"),
    (["config", "standalone", "set", "k", "--from-file"], "--from-file needs the file that holds the value"),
])
def test_a_command_used_wrongly_is_refused_before_anything_runs(args, said, capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(project, "make_scratch_project", lambda stack: ran.append(stack))
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
    assert ran == [], "no scratch project was made"


def test_help_names_every_action(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"kslab {action}" in out or action in out.split("<", 1)[1] for action in cli.ACTIONS)


def test_lab_sh_names_itself_in_what_it_says(tmp_path):
    proc = subprocess.run([os.path.join(ROOT, "tools", "lab.sh"), "launch", "standalone"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "unknown action launch; usage: tools/lab.sh <" in proc.stderr, proc.stderr


def test_a_value_source_is_resolved_from_where_the_command_was_typed(tmp_path):
    (tmp_path / "creds.json").write_text("{}")
    rest, source = split_value_source(["set", "--secret", "kslab:registryCredentials", "--from-file=creds.json"],
                                      "kslab config s", str(tmp_path))
    assert rest == ["set", "--secret", "kslab:registryCredentials"] and source == str(tmp_path / "creds.json")
    with pytest.raises(UsageError, match="give the KEY alone"):
        split_value_source(["set", "--type", "string", "k", "v", "--from-stdin"], "kslab config s", str(tmp_path))
    assert split_value_source(["set", "--type", "string", "k", "--from-stdin"], "x", str(tmp_path))[1] == "-"


def test_registry_credentials_on_the_command_line_are_refused_before_pulumi_runs(tmp_path):
    """#25 item 5: the credentials never ride on a command line, even when typed there; the fix names the file."""
    with pytest.raises(UsageError, match="never given on the command line.*--from-file PATH.*--from-stdin"):
        split_value_source(["set", "--secret", "kslab:registryCredentials", '{"h.corp": {"password": "p"}}'],
                           "kslab config s", str(tmp_path))
    assert split_value_source(["set", "--secret", "kslab:jwtSecret", "v"], "x", str(tmp_path)) == (
        ["set", "--secret", "kslab:jwtSecret", "v"], None), "other settings as before"
    assert split_value_source(["get", "kslab:registryCredentials"], "x", str(tmp_path))[1] is None


# (action as typed, the pulumi command it runs after the stack's name)
PULUMI_ACTIONS = [
    (["preview"], ["preview", "--stack", "standalone", "--policy-pack", "policies"]),
    (["up", "--yes"], ["up", "--stack", "standalone", "--policy-pack", "policies", "--yes"]),
    (["destroy", "--yes"], ["destroy", "--stack", "standalone", "--yes"]),
    (["refresh"], ["refresh", "--stack", "standalone"]),
    (["outputs", "--json"], ["stack", "output", "--stack", "standalone", "--json"]),
    (["output"], ["stack", "output", "--stack", "standalone"]),
    (["cancel"], ["cancel", "--stack", "standalone", "--yes"]),
    (["forget"], ["stack", "rm", "--stack", "standalone", "--force", "--preserve-config", "--yes"]),
    (["config", "get", "kslab:clusters"], ["config", "--stack", "standalone", "get", "kslab:clusters"]),
]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    return _fresh_clone(tmp_path_factory.mktemp("cli"))


@pytest.mark.parametrize("typed, runs", PULUMI_ACTIONS, ids=lambda v: " ".join(v))
def test_each_action_runs_its_pulumi_command_in_the_scratch_project(clone, tmp_path, typed, runs):
    log = tmp_path / "pulumi.log"
    _fake_pulumi(str(tmp_path / "bin"), log)
    action, *rest = typed
    proc = subprocess.run([os.path.join(clone, "venv", "bin", "python"), "-m", "kslab", action, "standalone", *rest],
                          cwd=clone, env=_env(tmp_path, tmp_path / "bin", log), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = _records(log)
    assert records[-1]["argv"] == runs
    assert records[-1]["cwd"] == os.path.join(clone, ".kslab", "projects", "standalone")
    created = [r for r in records if r["argv"][:2] == ["stack", "select"]]
    # a command that only acts on a stack that exists never creates one (its salt would be written)
    assert bool(created) == (action not in cli.NO_CREATE)


@pytest.mark.parametrize("action, module, args", [
    ("status", "kslab.cli.status", ["status", "--stack", "s", "--json"]),
    ("graph", "kslab.cli.status", ["graph", "--stack", "s", "--out-dir", "ROOT", "--json"]),
])
def test_the_views_run_their_module(monkeypatch, tmp_path, action, module, args):
    ran = []
    monkeypatch.setattr(cli, "_exec", lambda command: ran.append(command) or 0)
    monkeypatch.setattr(cli.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0))
    stack = project.Stack(str(tmp_path), "s", "stacks/Pulumi.s.yaml")
    assert cli._run(action, stack, ["--json"], "policies", None) == 0
    assert ran == [[sys.executable, "-m", module, *[str(tmp_path) if a == "ROOT" else a for a in args]]]


def _lab(tmp_path, text: str, name: str = "s"):
    (tmp_path / "stacks").mkdir(exist_ok=True)
    (tmp_path / "Pulumi.yaml").write_text("name: kslab\nruntime: python\nstackConfigDir: stacks\n")
    (tmp_path / "stacks" / f"Pulumi.{name}.yaml").write_text(text)
    return needs.lab_or_none(str(tmp_path), name)


KIND_LAB = """config:
  {sources}
  kslab:clusters:
    - name: lab
      role: none
      nodeImage: kindest/node:v1.25.16
      kubesphereVersion: v3.4.1
"""


def test_the_registry_tools_are_for_an_up_of_a_lab_with_image_sources(tmp_path):
    # a quoted key, which the YAML grep tools/lab.sh did never saw
    lab = _lab(tmp_path, KIND_LAB.format(sources='"kslab:imageSources": [harbor.corp/kubesphere]'))
    assert lab is not None and lab.image_sources is not None
    assert needs.tools_for("up", [], lab, False) == [needs.REGISTRY_TOOLS]
    assert needs.tools_for("preview", [], lab, False) == []
    plain = _lab(tmp_path, KIND_LAB.format(sources="# kslab:imageSources: [harbor.corp]"))
    assert plain is not None and needs.tools_for("up", [], plain, False) == []
    assert needs.tools_for("images", ["--save", "/tmp/x.tar"], plain, False) == [needs.REGISTRY_TOOLS]


def test_archives_alone_need_the_registry_tools_too(tmp_path):
    lab = _lab(tmp_path, KIND_LAB.format(sources="kslab:imageArchives: [images.tar]"))
    assert lab is not None and needs.tools_for("up", [], lab, False) == [needs.REGISTRY_TOOLS]


def test_a_stack_file_with_problems_needs_no_tool(tmp_path):
    assert _lab(tmp_path, "config:\n  kslab:clusters: 3\n") is None
    assert needs.tools_for("up", [], None, True) == []


@pytest.mark.parametrize("stack, action, tools", [
    ("kind-standalone", "up", [needs.KIND_TIER]),
    ("kind-standalone", "status", [needs.KIND_TIER]),
    ("kind-standalone", "images", []),  # the image plan reads the stack file alone
    ("live-standalone", "up", []),  # API servers alone: no kind
])
def test_a_kind_test_stack_runs_on_the_kind_tier(tmp_path, stack, action, tools):
    found = project.find_stack(ROOT, stack)
    assert found is not None and found.test
    with open(os.path.join(ROOT, found.source)) as fh:
        lab = _lab(tmp_path, fh.read(), stack)
    assert lab is not None
    assert needs.tools_for(action, [], lab, found.test) == tools


def test_a_lab_of_your_own_on_kind_uses_your_docker_and_kind():
    lab = stack_spec.load_spec(ROOT, "standalone")
    assert any(c.is_kind for c in lab.clusters) and needs.tools_for("up", [], lab, False) == []


def _engine(where, stamp=True, host=True) -> str:
    bin_dir = where / "bin"
    bin_dir.mkdir(parents=True)
    for name in ["pulumi"] + (["pulumi-language-python-host"] if host else []):
        (bin_dir / name).write_text("#!/bin/sh\n")
        (bin_dir / name).chmod(0o755)
    if stamp:
        (where / ".complete").write_text("2026-01-01T00:00:00Z\n")
    return str(bin_dir / "pulumi")


def test_kslabs_engine_is_known_by_its_builds_stamp_wherever_it_lies(tmp_path):
    pulumi = _engine(tmp_path / "anywhere" / "not-an-engine-path")
    assert needs.is_kslab_engine(pulumi)
    link = tmp_path / "my-bin" / "pulumi"  # on PATH through a link of your own
    link.parent.mkdir()
    link.symlink_to(pulumi)
    assert needs.is_kslab_engine(str(link))
    # an unfinished build (no stamp), or another pulumi beside a stamp: not kslab's engine
    assert not needs.is_kslab_engine(_engine(tmp_path / "cache" / "engine" / "half-built", stamp=False))
    assert not needs.is_kslab_engine(_engine(tmp_path / "cache" / "engine" / "pulumi-other", host=False))


def test_a_tool_scripts_export_line_reaches_the_environment(tmp_path):
    script = tmp_path / "tools" / "x.sh"
    script.parent.mkdir()
    script.write_text('#!/bin/sh\necho "[x] progress" >&2\necho \'export PATH="/opt/x/bin:$PATH" X_HOME="/opt/x"\'\n')
    script.chmod(0o755)
    env = needs.tool_env(str(tmp_path), "tools/x.sh")
    assert env == {"PATH": f"/opt/x/bin:{os.environ['PATH']}", "X_HOME": "/opt/x"}
    script.write_text("#!/bin/sh\nexit 7\n")
    assert needs.tool_env(str(tmp_path), "tools/x.sh") == 7, "a failed build stops the command with its status"


def test_the_console_script_is_the_cli():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as fh:
        target = tomllib.load(fh)["project"]["scripts"]["kslab"]
    module, name = target.split(":")
    assert getattr(importlib.import_module(module), name) is cli.main


def test_nothing_below_the_cli_imports_the_kslab_command():
    """The command's own modules sit on top: the model, the steps and the components never import them."""
    own = {"kslab.cli.main", "kslab.cli.needs", "kslab.cli.project", "kslab.cli.config_value"}
    below = [f for pattern in ("kslab/model/**/*.py", "kslab/steps/**/*.py", "kslab/render/**/*.py",
                               "components/**/*.py") for f in glob.glob(os.path.join(ROOT, pattern), recursive=True)]
    for path in below:
        with open(path) as fh:
            tree = ast.parse(fh.read())
        names = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        names |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not names & own, f"{path} imports the CLI"
