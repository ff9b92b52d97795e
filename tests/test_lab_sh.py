"""tools/lab.sh with a stand-in `pulumi` first on PATH that records what it is given: a setting's value reaches
`pulumi config set` on its standard input, never on any process's command line (issue #25 item 5), and kslab's
own engine build is recognised wherever KSLAB_CACHE puts it (issue #25 item 15)."""
import json
import os
import subprocess
import sys
import uuid
from importlib.metadata import version

import pytest
import yaml

from tests.support.engine import require_pulumi
from tests.test_stack_files import _fresh_clone

# Records argv, the env vars tools/lab.sh sets for kslab's engine, and for `config set` the value read on stdin and
# every process whose command line holds that value (read from /proc while the wrapper and its children run).
FAKE_PULUMI = """#!{python}
import json, os, sys
record = {{"argv": sys.argv[1:], "cwd": os.getcwd(),
          "env": {{k: os.environ.get(k) for k in ("PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION", "PULUMI_HOME")}}}}
if "config" in sys.argv and "set" in sys.argv:
    value = sys.stdin.read()
    record["stdin"] = value
    hits = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{{pid}}/cmdline", "rb") as fh:
                cmdline = fh.read().decode(errors="replace")
        except OSError:
            continue
        if value.strip() and value.strip() in cmdline:
            hits.append(cmdline.replace("\\0", " "))
    record["argv_hits"] = hits
with open(os.environ["FAKE_PULUMI_LOG"], "a") as fh:
    fh.write(json.dumps(record) + "\\n")
"""


def _fake_pulumi(directory, log) -> None:
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "pulumi")
    with open(path, "w") as fh:
        fh.write(FAKE_PULUMI.format(python=sys.executable))
    os.chmod(path, 0o755)


def _records(log) -> list[dict]:
    with open(log) as fh:
        return [json.loads(line) for line in fh]


def _env(tmp_path, bin_dir, log) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "KSLAB_"))}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env['PATH']}", FAKE_PULUMI_LOG=str(log),
               PULUMI_CONFIG_PASSPHRASE="test-passphrase")
    return env


@pytest.mark.parametrize("how", ["--from-file", "--from-stdin"])
def test_a_secret_reaches_pulumi_on_stdin_and_no_command_line(tmp_path, how):
    clone = _fresh_clone(tmp_path)
    log = tmp_path / "pulumi.log"
    _fake_pulumi(str(tmp_path / "bin"), log)
    password = f"pw-{uuid.uuid4().hex}"
    value = json.dumps({"harbor.corp": {"username": "robot", "password": password}}) + "\n"
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    (elsewhere / "creds.json").write_text(value)
    args = ["--from-file", "creds.json"] if how == "--from-file" else ["--from-stdin"]
    env = _env(tmp_path, tmp_path / "bin", log)
    proc = subprocess.run([os.path.join(clone, "tools", "lab.sh"), "config", "standalone", "set", "--secret",
                           "kslab:registryCredentials", *args], cwd=elsewhere, env=env,
                          input=value if how == "--from-stdin" else None, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    config_set = [r for r in _records(log) if "set" in r["argv"]]
    assert len(config_set) == 1
    assert config_set[0]["argv"] == ["config", "--stack", "standalone", "set", "--secret", "kslab:registryCredentials"]
    assert config_set[0]["stdin"] == value
    assert config_set[0]["argv_hits"] == [], "no process had the value on its command line"
    assert all(password not in " ".join(r["argv"]) for r in _records(log))


@pytest.mark.parametrize("args, said", [
    (["set", "--secret", "kslab:registryCredentials", "{}", "--from-stdin"], "give the KEY alone"),
    (["get", "kslab:registryCredentials", "--from-stdin"], "go with 'set' only"),
    (["set", "--secret", "kslab:registryCredentials", "--from-file", "no-such.json"], "no such readable file"),
])
def test_a_value_source_used_wrongly_is_refused_before_pulumi_runs(tmp_path, args, said):
    clone = _fresh_clone(tmp_path)
    log = tmp_path / "pulumi.log"
    _fake_pulumi(str(tmp_path / "bin"), log)
    proc = subprocess.run([os.path.join(clone, "tools", "lab.sh"), "config", "standalone", *args], cwd=clone,
                          env=_env(tmp_path, tmp_path / "bin", log), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    assert not log.exists(), "pulumi never ran"


def test_kslabs_engine_is_recognised_under_any_cache_path(tmp_path):
    """KSLAB_CACHE=<somewhere>/xyz-cache: the engine's bin/ holds no `/kslab/engine/` in its path, yet the run gets
    the policy pack kslab's engine runs, no plugin downloads, and its own Pulumi home."""
    clone = _fresh_clone(tmp_path)
    log = tmp_path / "pulumi.log"
    engine = tmp_path / "xyz-cache" / "engine" / "pulumi-test"
    _fake_pulumi(str(engine / "bin"), log)
    (engine / ".complete").write_text("2026-01-01T00:00:00Z\n")  # what tools/engine/build.sh writes
    host = engine / "bin" / "pulumi-language-python-host"
    host.write_text("#!/bin/sh\nexit 1\n")
    host.chmod(0o755)
    plugins = engine / "plugin-home" / "plugins" / f"resource-kubernetes-v{version('pulumi_kubernetes')}"
    plugins.mkdir(parents=True)
    env = _env(tmp_path, engine / "bin", log)
    env.update(KSLAB_CACHE=str(tmp_path / "xyz-cache"), KSLAB_ENGINE_PLUGIN_HOME=str(engine / "plugin-home"))
    proc = subprocess.run([os.path.join(clone, "tools", "lab.sh"), "preview", "standalone"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    preview = [r for r in _records(log) if r["argv"][:1] == ["preview"]]
    assert len(preview) == 1
    argv = preview[0]["argv"]
    assert argv[argv.index("--policy-pack") + 1] == "policies/analyzer"
    assert preview[0]["env"] == {"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
                                 "PULUMI_HOME": os.path.join(clone, ".kslab", "pulumi-home")}


def test_another_pulumi_gets_the_plain_pack(tmp_path):
    clone = _fresh_clone(tmp_path)
    log = tmp_path / "pulumi.log"
    _fake_pulumi(str(tmp_path / "bin"), log)
    proc = subprocess.run([os.path.join(clone, "tools", "lab.sh"), "preview", "standalone"], cwd=clone,
                          env=_env(tmp_path, tmp_path / "bin", log), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    preview = [r for r in _records(log) if r["argv"][:1] == ["preview"]][0]
    assert preview["argv"][preview["argv"].index("--policy-pack") + 1] == "policies"
    assert preview["env"]["PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"] is None


@pytest.mark.engine
def test_a_secret_from_a_file_is_kept_encrypted_by_the_real_engine(tmp_path):
    """The real `pulumi config set` (behind a shim that records its argv) takes the value from stdin: the lab's
    settings hold it as a secret, never in clear, and `config get` gives it back."""
    real = require_pulumi()
    clone = _fresh_clone(tmp_path)
    shim = tmp_path / "bin" / "pulumi"
    shim.parent.mkdir()
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {tmp_path / "argv.log"}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    password = f"pw-{uuid.uuid4().hex}"
    value = json.dumps({"harbor.corp": {"username": "robot", "password": password}})
    (tmp_path / "creds.json").write_text(value + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")}
    env.update(PATH=f"{shim.parent}{os.pathsep}{env['PATH']}", PULUMI_HOME=str(tmp_path / "pulumi-home"),
               PULUMI_SKIP_UPDATE_CHECK="true")
    lab_sh = os.path.join(clone, "tools", "lab.sh")
    done = subprocess.run([lab_sh, "config", "standalone", "set", "--secret", "kslab:registryCredentials",
                           "--from-file", str(tmp_path / "creds.json")], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    settings = open(os.path.join(clone, ".kslab", "stacks", "Pulumi.standalone.yaml")).read()
    assert password not in settings
    assert "secure" in yaml.safe_load(settings)["config"]["kslab:registryCredentials"]
    got = subprocess.run([lab_sh, "config", "standalone", "get", "kslab:registryCredentials"], cwd=clone, env=env,
                         capture_output=True, text=True, timeout=300)
    assert got.stdout.strip() == value, got.stderr[-2000:]
    assert password not in (tmp_path / "argv.log").read_text()


def test_the_credentials_fix_never_puts_the_value_on_a_command_line():
    from kslab.model import image_sources
    _, problems = image_sources.parse_credentials(json.dumps({"harbor.corp": {"username": "u", "password": "p"}}),
                                                  is_secret=False)
    fix = problems[0][3]
    assert "tools/lab.sh config <stack> set --secret kslab:registryCredentials --from-file <file>" in fix
    assert "--from-stdin" in fix and "'{" not in fix, "the JSON is written into a file, not given as an argument"
