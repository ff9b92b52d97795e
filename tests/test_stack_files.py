"""A stack's own settings live outside the repository (kslab/cli/stack_files.py): the pure merge, and the
README's commands in a fresh clone, which must leave `git status --porcelain` empty."""
import glob
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from kslab.cli import stack_files as sf
from tests.support.engine import PASSPHRASE, require_pulumi
from tests.support.mock_run import ROOT

SOURCE = {"config": {"kslab:registry": "", "kslab:clusters": [{"name": "a"}]}}


def test_compose_lays_the_labs_settings_over_the_stack_file():
    doc = sf.compose(SOURCE, {"encryptionsalt": "v1:x", "config": {"kslab:registry": "harbor.corp"}})
    assert doc == {"encryptionsalt": "v1:x", "config": {"kslab:registry": "harbor.corp",
                                                        "kslab:clusters": [{"name": "a"}]}}


def test_an_edit_of_the_stack_file_takes_effect():
    edited = {"config": {**SOURCE["config"], "kslab:kindWait": "1m"}}
    assert sf.compose(edited, {"encryptionsalt": "v1:x"})["config"]["kslab:kindWait"] == "1m"


def test_settings_are_what_pulumi_added():
    scratch = {"encryptionsalt": "v1:x", "config": {**SOURCE["config"], "kslab:jwtSecret": {"secure": "v1:y"}}}
    assert sf.settings_of(scratch, SOURCE) == {"encryptionsalt": "v1:x",
                                              "config": {"kslab:jwtSecret": {"secure": "v1:y"}}}


def test_a_value_equal_to_the_stack_files_is_not_a_setting():
    assert sf.settings_of(sf.compose(SOURCE, {}), SOURCE) == {}


def test_the_salt_moves_out_of_a_stack_file_once(tmp_path):
    source = tmp_path / "Pulumi.s.yaml"
    text = "# a comment   aligned\nconfig:\n  kslab:registry: ''   # why\n"
    source.write_text("encryptionsalt: v1:abc\n" + text)
    settings = tmp_path / "settings" / "Pulumi.s.yaml"
    assert "moved the encryption salt" in sf.move_salt_out(str(source), str(settings))
    assert source.read_text() == text  # only that line went; comments and alignment stay
    assert yaml.safe_load(settings.read_text()) == {"encryptionsalt": "v1:abc"}
    assert sf.move_salt_out(str(source), str(settings)) is None


def test_a_different_salt_is_never_overwritten(tmp_path):
    source = tmp_path / "Pulumi.s.yaml"
    source.write_text("encryptionsalt: v1:new\nconfig: {}\n")
    settings = tmp_path / "Pulumi.settings.yaml"
    settings.write_text("encryptionsalt: v1:old\n")
    assert "differs" in sf.move_salt_out(str(source), str(settings))
    assert "v1:new" in source.read_text() and "v1:old" in settings.read_text()


def test_a_scratch_file_of_the_old_layout_gives_its_salt_once(tmp_path):
    source, settings, scratch = (tmp_path / n for n in ("source.yaml", "settings.yaml", "scratch.yaml"))
    source.write_text(yaml.safe_dump(SOURCE))
    old = sf.compose({"config": {"kslab:registry": "old"}}, {"encryptionsalt": "v1:kept"})
    scratch.write_text(yaml.safe_dump(old))
    assert sf.main(["compose", str(source), str(settings), str(scratch)]) == 0
    assert yaml.safe_load(settings.read_text()) == {"encryptionsalt": "v1:kept"}  # the salt, not the old config
    assert yaml.safe_load(scratch.read_text())["config"]["kslab:registry"] == ""


def test_an_edit_of_the_stack_file_is_never_lost_to_an_older_scratch_file(tmp_path):
    source, settings, scratch = (tmp_path / n for n in ("source.yaml", "settings.yaml", "scratch.yaml"))
    source.write_text(yaml.safe_dump(SOURCE))
    assert sf.main(["compose", str(source), str(settings), str(scratch)]) == 0
    source.write_text(yaml.safe_dump({"config": {**SOURCE["config"], "kslab:registry": "harbor.corp"}}))
    assert sf.main(["compose", str(source), str(settings), str(scratch)]) == 0
    assert yaml.safe_load(scratch.read_text())["config"]["kslab:registry"] == "harbor.corp"


def test_run_keeps_what_the_command_wrote(tmp_path):
    source, settings, scratch = (tmp_path / n for n in ("source.yaml", "settings.yaml", "scratch.yaml"))
    source.write_text(yaml.safe_dump(SOURCE))
    assert sf.main(["compose", str(source), str(settings), str(scratch)]) == 0
    writer = f"import yaml; p={str(scratch)!r}; d=yaml.safe_load(open(p)); d['encryptionsalt']='v1:new'; " \
             "yaml.safe_dump(d, open(p, 'w'))"
    assert sf.main(["run", str(source), str(settings), str(scratch), "--", sys.executable, "-c", writer]) == 0
    assert yaml.safe_load(settings.read_text()) == {"encryptionsalt": "v1:new"}



# What Pulumi does to the file it runs on (`pulumi config set`): sets the key, and writes every other top-level value
# back as text (900 -> '900').
PULUMI_REWRITE = ("import sys, yaml; p = sys.argv[1]; d = yaml.safe_load(open(p)); "
                  "d['config'] = {k: v if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) "
                  "else str(v) for k, v in d['config'].items()}; d['config'][sys.argv[2]] = sys.argv[3]; "
                  "yaml.safe_dump(d, open(p, 'w'))")


def test_a_config_set_never_freezes_the_stack_files_numbers(tmp_path):
    """Issue #25 item 14: after `tools/lab.sh config <stack> set` of another key, an edit of the stack file's
    kslab:installTimeoutSeconds (900 -> 60) is taken; only the key the command set is the lab's own."""
    source, settings, scratch = (tmp_path / n for n in ("source.yaml", "settings.yaml", "scratch.yaml"))
    source.write_text("config:\n  kslab:installTimeoutSeconds: 900\n  kslab:kindWait: 5m\n  kslab:dryRun: false\n")
    assert sf.main(["compose", str(source), str(settings), str(scratch)]) == 0
    assert sf.main(["run", str(source), str(settings), str(scratch), "--", sys.executable, "-c", PULUMI_REWRITE,
                    str(scratch), "kslab:jwtSecret", "abc"]) == 0
    assert yaml.safe_load(scratch.read_text())["config"]["kslab:installTimeoutSeconds"] == "900", "as Pulumi does"
    assert yaml.safe_load(settings.read_text()) == {"config": {"kslab:jwtSecret": "abc"}}
    source.write_text(source.read_text().replace("900", "60"))
    assert sf.main(["compose", str(source), str(settings), str(scratch)]) == 0
    assert yaml.safe_load(scratch.read_text())["config"]["kslab:installTimeoutSeconds"] == 60


def test_a_setting_frozen_by_an_earlier_kslab_gives_way_to_the_stack_file(tmp_path):
    """A lab whose settings already hold the stack file's numbers as text (what earlier versions kept) and a value of
    the user's: the frozen copies are dropped at the next command, the user's own kept."""
    source = {"config": {"kslab:unjoinTimeoutSeconds": 300, "kslab:kindWait": "5m"}}
    held = {"encryptionsalt": "v1:x", "config": {"kslab:unjoinTimeoutSeconds": "300", "kslab:kindWait": "9m"}}
    scratch = sf.compose(source, held)
    assert sf.settings_of(scratch, source, held) == {"encryptionsalt": "v1:x", "config": {"kslab:kindWait": "9m"}}


def test_a_value_the_command_changes_is_kept_even_if_a_number():
    source = {"config": {"kslab:installTimeoutSeconds": 900}}
    scratch = {"config": {"kslab:installTimeoutSeconds": "1200"}}
    assert sf.settings_of(scratch, source, {}) == {"config": {"kslab:installTimeoutSeconds": "1200"}}
    assert sf.pulumi_form({"a": [1, True, 2.0, "x"]}) == {"a": ["1", "true", "2", "x"]}

def test_a_broken_stack_file_is_said_without_a_traceback(tmp_path, capsys):
    source = tmp_path / "source.yaml"
    source.write_text("config: [unclosed\n")
    assert sf.main(["compose", str(source), str(tmp_path / "s.yaml"), str(tmp_path / "x.yaml")]) == 2
    assert "cannot prepare the stack's settings" in capsys.readouterr().err


@pytest.mark.parametrize("config, kind", [("5", "the number 5"), ("[kslab:clusters, x]", "a list"),
                                          ("clusters", "a string")])
@pytest.mark.parametrize("which", ["source", "settings"])
def test_a_config_that_is_not_a_mapping_is_named_without_a_traceback(tmp_path, capsys, config, kind, which):
    """`config: 5` or a list in the stack file (or the lab's own settings): the file, the field and the fix (#25
    item 12)."""
    files = {"source": tmp_path / "source.yaml", "settings": tmp_path / "s.yaml"}
    files["source"].write_text("config:\n  kslab:clusters: [{name: host}]\n")
    files[which].write_text(f"config: {config}\n")
    assert sf.main(["compose", str(files["source"]), str(files["settings"]), str(tmp_path / "x.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kslab: cannot prepare the stack's settings: {files[which]}: `config:` must be a mapping "
                          f"of settings"), err
    assert f"but YAML read {kind}" in err and "Fix: indent each setting under `config:`" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("config", ["5", "[kslab:clusters]"])
def test_the_read_only_commands_name_a_config_that_is_not_a_mapping(tmp_path, capsys, config):
    """make images/status read the stack file themselves: the same mistake, the same words (#25 item 12)."""
    from kslab.cli.stack_spec import load_spec_or_say_why
    (tmp_path / "Pulumi.yaml").write_text("name: kslab\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.t.yaml").write_text(f"config: {config}\n")
    assert load_spec_or_say_why(str(tmp_path), "t") is None
    err = capsys.readouterr().err
    assert "kslab: the stack file of t cannot be read: its `config:` must be a mapping of settings" in err, err
    assert "Fix: indent each setting under `config:`" in err


def _fresh_clone(tmp_path) -> str:
    """This checkout's tracked files as they are now, committed in a new repository: what a fresh clone holds."""
    clone = str(tmp_path / "clone")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for rel in filter(None, files.stdout.split("\0")):
        if os.path.lexists(os.path.join(ROOT, rel)):
            os.makedirs(os.path.dirname(os.path.join(clone, rel)), exist_ok=True)
            shutil.copy2(os.path.join(ROOT, rel), os.path.join(clone, rel), follow_symlinks=False)
    for stack_file in glob.glob(os.path.join(clone, "stacks", "Pulumi.*.yaml")):  # as committed, with no salt
        with open(stack_file) as fh:
            text = sf.without_salt(fh.read())
        with open(stack_file, "w") as fh:
            fh.write(text)
    git = ["git", "-c", "user.name=kslab-test", "-c", "user.email=test@kslab.invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "fresh"]):
        subprocess.run(git + args, cwd=clone, check=True, capture_output=True)
    os.symlink(os.path.join(ROOT, "venv"), os.path.join(clone, "venv"))
    with open(os.path.join(clone, ".git", "info", "exclude"), "a") as fh:
        fh.write("/venv\n")  # a link to this checkout's virtualenv (.gitignore's venv/ names a folder)
    for made_from in ("requirements.txt", "pyproject.toml"):  # the linked venv is up to date for make
        os.utime(os.path.join(clone, made_from), (0, 0))
    return clone


def _porcelain(clone) -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.engine
def test_the_readme_commands_leave_the_clone_clean(tmp_path):
    """`make up` (stopped at the image check here, or anywhere Docker or kind is missing), `make preview`,
    `make status` and `make destroy` of a shipped stack write no tracked file; the salt is the lab's own."""
    require_pulumi()
    clone = _fresh_clone(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(PULUMI_HOME=str(tmp_path / "pulumi-home"), PULUMI_SKIP_UPDATE_CHECK="true")
    shipped = open(os.path.join(clone, "stacks", "Pulumi.host-member.yaml")).read()
    for target, args in (("up", "--yes"), ("preview", ""), ("status", ""), ("destroy", "--yes")):
        proc = subprocess.run(["make", target, "STACK=host-member", f"ARGS={args}"], cwd=clone, env=env,
                              capture_output=True, text=True, timeout=600)
        out = proc.stdout + proc.stderr
        assert "Traceback" not in out, out[-3000:]
        if target == "up":
            # refused before any cluster: by the image check (no registry of ours is reachable), and by the
            # preflight too wherever Docker or kind is missing
            assert proc.returncode != 0 and ("image check failed" in out or "preflight failed" in out), out[-3000:]
        assert _porcelain(clone) == "", f"make {target} wrote a tracked file:\n{_porcelain(clone)}\n{out[-2000:]}"
    assert open(os.path.join(clone, "stacks", "Pulumi.host-member.yaml")).read() == shipped
    own = yaml.safe_load(open(os.path.join(clone, ".kslab", "stacks", "Pulumi.host-member.yaml")))
    assert own["encryptionsalt"].startswith("v1:")


@pytest.mark.engine
def test_a_lab_of_the_old_layout_keeps_its_secrets(tmp_path):
    """A stack made by plain `pulumi` in the checkout (salt and a secret in the tracked stack file): the salt moves
    out once, the secret still decrypts, and the stack file keeps the user's own line only."""
    require_pulumi()
    clone = _fresh_clone(tmp_path)
    env = {**os.environ, "PULUMI_HOME": str(tmp_path / "pulumi-home"), "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
           "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}", "PULUMI_SKIP_UPDATE_CHECK": "true"}
    os.makedirs(tmp_path / "state")
    for args in (["stack", "select", "--create", "standalone"],
                 ["config", "set", "--secret", "kslab:jwtSecret", "the-old-secret", "--stack", "standalone"]):
        subprocess.run(["pulumi", *args], cwd=clone, env=env, check=True, capture_output=True, timeout=120)
    stack_file = os.path.join(clone, "stacks", "Pulumi.standalone.yaml")
    before = open(stack_file).read()
    assert "encryptionsalt:" in before and "kslab:jwtSecret:" in before
    lab_sh = os.path.join(clone, "tools", "lab.sh")
    got = subprocess.run([lab_sh, "config", "standalone", "get", "kslab:jwtSecret"], cwd=clone, env=env,
                         capture_output=True, text=True, timeout=120)
    assert got.returncode == 0 and got.stdout.strip() == "the-old-secret", got.stderr[-2000:]
    assert "moved the encryption salt of this lab" in got.stderr
    # Only the salt line left the file (Pulumi's own rewrite of it, from the old layout, is the user's to undo).
    assert open(stack_file).read() == sf.without_salt(before) != before
    again = subprocess.run([lab_sh, "config", "standalone", "get", "kslab:jwtSecret"], cwd=clone, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.stdout.strip() == "the-old-secret" and "moved" not in again.stderr


def test_a_virtualenv_from_before_the_package_is_named_with_its_fix(tmp_path):
    """A checkout updated over a virtualenv made before the kslab package: tools/lab.sh says to run `make venv`
    before anything runs (the policy pack would fail to import kslab)."""
    clone = _fresh_clone(tmp_path)
    os.remove(os.path.join(clone, "venv"))
    os.makedirs(os.path.join(clone, "venv", "bin"))
    stale = os.path.join(clone, "venv", "bin", "python")
    with open(stale, "w") as fh:  # the interpreter the virtualenv was made from: no kslab installed in it
        fh.write(f'#!/bin/sh\nexec {os.path.join(sys.base_prefix, "bin", "python3")} "$@"\n')
    os.chmod(stale, 0o755)
    proc = subprocess.run([os.path.join(clone, "tools", "lab.sh"), "preview", "standalone"], cwd=clone,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "run 'make venv'" in proc.stderr and "Traceback" not in proc.stderr
    assert not os.path.exists(os.path.join(clone, ".kslab", "state")), "nothing ran"


@pytest.mark.engine
def test_lab_sh_takes_the_engines_plugins_from_a_home_of_its_own(tmp_path):
    """With kslab's engine and no PULUMI_HOME of yours, tools/lab.sh runs in .kslab/pulumi-home, whose plugins are
    the engine cache's installed ones: no "using ... from $PATH" warning, and nothing written into ~/.pulumi."""
    require_pulumi()
    if not os.environ.get("KSLAB_ENGINE_PLUGIN_HOME"):
        pytest.skip("SKIPPED: only kslab's own engine build (tools/engine/build.sh) comes with installed plugins")
    clone = _fresh_clone(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(HOME=str(home), PULUMI_SKIP_UPDATE_CHECK="true")
    proc = subprocess.run([os.path.join(clone, "tools", "lab.sh"), "preview", "standalone"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "from $PATH" not in out, out[-3000:]
    plugins = os.path.join(clone, ".kslab", "pulumi-home", "plugins")
    assert os.path.realpath(plugins) == os.path.realpath(os.path.join(os.environ["KSLAB_ENGINE_PLUGIN_HOME"],
                                                                      "plugins"))
    assert not os.path.exists(home / ".pulumi" / "plugins")
