"""A stack's settings outside the repository: `tools/lab.sh` never lets Pulumi write a tracked stack file.

Pulumi writes into the file of the stack it runs: the passphrase's `encryptionsalt` when the stack is created,
and whatever `pulumi config set` sets. So every command runs in a scratch project (`.kslab/projects/<stack>`)
whose stack file is made anew each time from two parts:
- the stack file you edit (`stacks/Pulumi.<stack>.yaml`, or a test stack's), read as it is now;
- your lab's own settings (`.kslab/stacks/Pulumi.<stack>.yaml`): what Pulumi wrote there (the salt, values set
  with `tools/lab.sh config <stack> set ...`), which win over the stack file.
After a command that may write settings, they are taken back from the scratch file. A salt found in a stack
file you edit (what `make up` wrote there before) is moved out of it once, by removing just that line.

    python -m kslab.cli.stack_files compose <source> <settings> <scratch>
    python -m kslab.cli.stack_files keep <source> <settings> <scratch>
    python -m kslab.cli.stack_files run <source> <settings> <scratch> -- <command...>   (then keep)
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import sys

import yaml

from kslab.model.fields import yaml_kind

SALT_KEY = "encryptionsalt"
_SALT_LINE = re.compile(rf"^{SALT_KEY}:.*\n?", re.M)


def without_salt(text: str) -> str:
    """A stack file's text without an `encryptionsalt:` line, the rest as it is. Pure."""
    return _SALT_LINE.sub("", text, count=1)


def _load(path: str) -> dict:
    try:
        with open(path) as fh:
            doc = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        return {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path} is not a YAML mapping. Fix: write it as `config:` followed by the settings, "
                         "as stacks/Pulumi.kind-standalone.yaml does")
    config = doc.get("config")
    if config is not None and not isinstance(config, dict):
        kind = "a string" if isinstance(config, str) else yaml_kind(config)
        raise ValueError(f"{path}: `config:` must be a mapping of settings (`kslab:clusters: [...]` and so on), "
                         f"but YAML read {kind}. Fix: indent each setting under `config:`, "
                         "as stacks/Pulumi.kind-standalone.yaml does")
    return doc


def _write(path: str, doc: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.kslab-{os.getpid()}"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
    os.replace(tmp, path)


def compose(source: dict, settings: dict) -> dict:
    """The scratch stack file: the stack file's config with the lab's own settings over it. Pure."""
    config = dict(source.get("config") or {})
    config.update(settings.get("config") or {})
    doc = {k: v for k, v in source.items() if k != "config"}
    doc.update({k: v for k, v in settings.items() if k != "config"})
    doc["config"] = config
    return doc


def pulumi_form(value):
    """A value as Pulumi writes it back into a stack file: every scalar as its text (`900` becomes `'900'`, `true`
    becomes `'true'`), mappings and lists item by item. Two values are the same setting when these are equal. Pure."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return {k: pulumi_form(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pulumi_form(v) for v in value]
    return value


def settings_of(scratch: dict, source: dict, settings: dict | None = None) -> dict:
    """The lab's own settings after a command ran on the scratch file composed from `source` and `settings`: those
    it held before, and each value the command changed (compared in Pulumi's form: Pulumi rewrites every number
    of the file it writes as text, which is no change). A value nobody set with `tools/lab.sh config` never
    shadows the stack file, and one equal to the stack file's is dropped. Pure."""
    settings = settings or {}
    source_config, held = source.get("config") or {}, settings.get("config") or {}
    before = compose(source, settings)["config"]
    own = {k: v for k, v in scratch.items() if k != "config" and source.get(k) != v}
    config = {}
    for key, value in (scratch.get("config") or {}).items():
        if key not in before or pulumi_form(value) != pulumi_form(before[key]):
            config[key] = value  # set or changed by the command
        elif key in held and (key not in source_config
                              or pulumi_form(held[key]) != pulumi_form(source_config[key])):
            config[key] = held[key]  # the lab's own, from before
    if config:
        own["config"] = config
    return own


def move_salt_out(source_path: str, settings_path: str) -> str | None:
    """A salt an earlier `make up` wrote into the stack file you edit goes to the lab's settings, once: only the
    `encryptionsalt:` line is removed from that file, the rest stays as it is. Returns what was done."""
    with open(source_path) as fh:
        text = fh.read()
    match = _SALT_LINE.search(text)
    if not match:
        return None
    settings = _load(settings_path)
    salt = yaml.safe_load(match.group(0))[SALT_KEY]
    if settings.get(SALT_KEY) not in (None, salt):
        return (f"{source_path} holds an encryption salt that differs from the lab's own ({settings_path}); "
                "kept the lab's and left the stack file as it is")
    settings[SALT_KEY] = salt
    _write(settings_path, settings)
    # Through a temp file and a rename: a kill can never leave your stack file half-written.
    tmp = f"{source_path}.kslab-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(without_salt(text))
    os.chmod(tmp, os.stat(source_path).st_mode & 0o7777)
    os.replace(tmp, source_path)
    return (f"moved the encryption salt of this lab from {source_path} to {settings_path} (once; the stack file "
            "is yours again: `git diff` it, and `git checkout` it if you made no edits of your own)")


@contextlib.contextmanager
def _locked(settings_path: str):
    """One command at a time per stack between making the scratch file and keeping what Pulumi wrote there."""
    os.makedirs(os.path.dirname(settings_path) or ".", exist_ok=True)
    with open(os.open(f"{settings_path}.lock", os.O_WRONLY | os.O_CREAT, 0o600)) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _compose(source_path: str, settings_path: str, scratch_path: str) -> None:
    note = move_salt_out(source_path, settings_path)
    if note:
        print(f"kslab: {note}", file=sys.stderr)
    source = _load(source_path)
    if not os.path.exists(settings_path):
        settings = {}
        if os.path.exists(scratch_path):
            # A lab whose scratch file was its only record (test stacks before .kslab/stacks): adopt what Pulumi
            # wrote there beside the config (the salt), once; its config was a copy of an older stack file.
            settings = {k: v for k, v in _load(scratch_path).items() if k != "config"}
        _write(settings_path, settings)  # from now on the settings file exists: nothing is adopted again
    _write(scratch_path, compose(source, _load(settings_path)))


def _keep(source_path: str, settings_path: str, scratch_path: str) -> None:
    _write(settings_path, settings_of(_load(scratch_path), _load(source_path), _load(settings_path)))


def _main(argv: list[str]) -> int:
    command = argv[5:] if len(argv) > 5 and argv[4] == "--" else None
    valid = (argv[:1] in (["compose"], ["keep"]) and len(argv) == 4) or (argv[:1] == ["run"] and command)
    if not valid:
        print(__doc__.rsplit("\n\n", 1)[-1], file=sys.stderr)
        return 2
    action, source_path, settings_path, scratch_path = argv[:4]
    if action == "compose":
        compose_files(source_path, settings_path, scratch_path)
        return 0
    if action == "keep":
        with _locked(settings_path):
            _keep(source_path, settings_path, scratch_path)
        return 0
    # run: a command that may write the scratch file (pulumi stack select --create, pulumi config), then keep
    return run_then_keep(source_path, settings_path, scratch_path, command or [])  # `valid`: run has a command


def compose_files(source_path: str, settings_path: str, scratch_path: str) -> None:
    """The scratch stack file made anew from the stack file and the lab's settings (under the settings lock)."""
    with _locked(settings_path):
        _compose(source_path, settings_path, scratch_path)


def run_then_keep(source_path: str, settings_path: str, scratch_path: str, command: list[str], **popen) -> int:
    """Run a command that may write the scratch file, then keep what it wrote in the settings file; its status.
    `popen`: subprocess.run's stdin/stdout/cwd."""
    with _locked(settings_path):
        status = subprocess.run(command, **popen).returncode
        _keep(source_path, settings_path, scratch_path)
        return status


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(sys.argv[1:] if argv is None else argv)
    except PREPARE_ERRORS as exc:
        say_cannot_prepare(exc)
        return 2


PREPARE_ERRORS = (OSError, ValueError, yaml.YAMLError)


def say_cannot_prepare(exc: Exception) -> None:
    print(f"kslab: cannot prepare the stack's settings: {str(exc).splitlines()[0][:300]}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
