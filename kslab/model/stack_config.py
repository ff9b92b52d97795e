"""Reading the `kslab:*` stack config into the raw mapping `spec.parse_lab` validates."""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Protocol

import yaml

from kslab.model import image_sources, lab_rules, tenants
from kslab.model import kubeconfig as kc
from kslab.model.fields import yaml_kind
from kslab.model.settings import LAB
from kslab.model.spec import JWT_SECRET_KEY, STRING_KEYS, STRUCTURED_KEYS, LabSpec, Problem, parse_lab_problems, settle


class ConfigValues(Protocol):
    """What read_raw needs of a config: pulumi.Config, or a stack file read without the engine."""

    def get(self, key: str) -> str | None: ...


def read_raw(config: ConfigValues) -> dict[str, Any]:
    """Every `kslab:*` setting as YAML gave it. Pulumi hands a non-string value over as JSON text
    (a list, a mapping, a number such as `1.20` read as 1.2), so a string setting that decodes to
    anything but a string is passed on as that value, and validation names its type."""
    raw: dict[str, Any] = {}
    for key in STRUCTURED_KEYS + STRING_KEYS:
        text = config.get(key)
        if text is None:
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # a bare string; validation names the field if it should not be one
        if key in STRING_KEYS and not isinstance(value, (list, dict)):
            # Pulumi hands a top-level scalar over as text whether YAML read a number or a string, so only a
            # list or a mapping is known to be wrong here; validation names the rest.
            value = text
        raw[key] = value
    return raw


def _stack_file_config(project_dir: str, stack: str) -> dict[str, Any]:
    """The `config:` mapping of the stack's file, in the project's stackConfigDir. OSError or yaml.YAMLError when
    it cannot be read."""
    with open(os.path.join(project_dir, "Pulumi.yaml")) as fh:
        config_dir = (yaml.safe_load(fh) or {}).get("stackConfigDir") or "."
    with open(os.path.join(project_dir, config_dir, f"Pulumi.{stack}.yaml")) as fh:
        doc = yaml.safe_load(fh) or {}
    config = doc.get("config") if isinstance(doc, dict) else doc
    if config is not None and not isinstance(config, dict):
        kind = "a string" if isinstance(config, str) else yaml_kind(config)
        raise yaml.YAMLError(f"its `config:` must be a mapping of settings, but YAML read {kind}. Fix: indent "
                             "each setting under `config:`, as stacks/Pulumi.kind-standalone.yaml does")
    return config or {}


def _kslab_keys(config: dict[str, Any]) -> list[str]:
    return [k.split(":", 1)[1] for k in config if isinstance(k, str) and k.startswith("kslab:")]


def stack_config_keys(project_dir: str, stack: str) -> list[str] | None:
    """The `kslab:*` keys the stack's file sets (without the namespace), or None if there is no such file."""
    try:
        return _kslab_keys(_stack_file_config(project_dir, stack))
    except (OSError, yaml.YAMLError):
        return None


class _StackFileConfig:
    """A stack file's `kslab:*` values handed over as Pulumi hands them to the program (text; JSON for lists,
    mappings, numbers and booleans), so read_raw reads both the same way. Encrypted values are left out."""

    def __init__(self, config: dict[str, Any]):
        self.values = {k.split(":", 1)[1]: v for k, v in config.items()
                       if isinstance(k, str) and k.startswith("kslab:")}

    def get(self, key: str) -> str | None:
        value = self.values.get(key)
        if value is None or (isinstance(value, dict) and set(value) == {"secure"}):
            return None
        return value if isinstance(value, str) else json.dumps(value)


def read_stack_file(project_dir: str, stack: str) -> tuple[dict[str, Any], list[str]]:
    """The raw `kslab:*` settings and keys of a stack file, read once and without the Pulumi engine (for
    `make status` and `make graph`, which work before any `up`). FileNotFoundError when there is no such file."""
    config = _stack_file_config(project_dir, stack)
    return read_raw(_StackFileConfig(config)), _kslab_keys(config)


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def load_lab_values(config: ConfigValues, project_dir: str, stack: str | None, stack_dir: str | None = None, *,
                    credentials_are_secret: bool, is_secret: Callable[[str], bool] = lambda key: True,
                    passwords: dict[str, str] | None = None) -> tuple[LabSpec, dict[str, str], str | None]:
    """The validated lab, each existing cluster's kubeconfig and the image sources' credentials, in memory only
    (the program makes both Pulumi secrets: components/config.py). `passwords`, when given, is filled with each
    user's password from its passwordSecret key (`is_secret(key)` says whether the stack keeps it encrypted).
    Every problem of the settings and of every
    kubeconfig is raised together in one LabConfigError, before anything is registered. `stack_dir` is the Pulumi
    project the stack file is read from (default: `project_dir`)."""
    keys = stack_config_keys(stack_dir or project_dir, stack) if stack else None
    # Decrypted in memory only, to check it is usable; never shown.
    lab, problems = parse_lab_problems(read_raw(config), keys, jwt_secret=config.get(JWT_SECRET_KEY))
    kubeconfigs, kubeconfig_problems = read_existing_kubeconfigs(config, project_dir, lab)
    credentials, credential_problems = image_sources.parse_credentials(
        config.get(image_sources.CREDENTIALS_KEY), credentials_are_secret,
        image_sources.source_hosts(lab.image_sources))
    found_passwords, password_problems = read_user_passwords(config, lab, is_secret)
    if passwords is not None:
        passwords.update(found_passwords)
    problems = (problems + kubeconfig_problems + credential_problems + password_problems
                + archive_file_problems(lab, project_dir))
    settled = settle(lab, problems)
    return (settled.of_stack(stack) if stack else settled), kubeconfigs, credentials


def read_user_passwords(config: ConfigValues, lab: LabSpec,
                        is_secret: Callable[[str], bool]) -> tuple[dict[str, str], list[Problem]]:
    """Each user's password from its passwordSecret key, in memory only, and every problem with one: not set, not a
    secret, against the rule of a host's release (tenants.password_problems), or a weak one for a platform-admin
    (the policy kslab-weak-admin-password guards the same). A value is never shown."""
    found: dict[str, str] = {}
    problems: list[Problem] = []
    # keys that hold something else: a setting of kslab's, or a cluster's kubeconfig
    taken = set(LAB) | {c.kubeconfig_secret for c in lab.clusters if c.kubeconfig_secret}
    for i, user in enumerate(lab.users):
        key = user.password_secret
        if key is None:
            continue
        # The key is never shown: a password pasted where its key's name belongs would be.
        field = f"kslab:users[{i}].passwordSecret"
        fix = "tools/lab.sh config <stack> set --secret kslab:<its passwordSecret> --from-stdin"
        if key in taken:
            problems.append(Problem(field, key, "names a config key that holds something else (a kslab setting or a "
                                    "cluster's kubeconfig)", "name a key of its own, e.g. <user>Password"))
            continue
        value = config.get(key)  # decrypted in memory only; never shown
        if value is None:
            problems.append(Problem(field, key, "names a config key that is not set", fix))
            continue
        if not is_secret(key):
            problems.append(Problem(field, key, "names a config key that is plain text in the stack file",
                                    "set it again as a secret: " + fix))
            continue
        for version in sorted({lab.cluster(h).kubesphere_version for h in user.hosts}):
            wrong = tenants.password_problems(value, version)
            if wrong:
                problems.append(Problem(field, key, f"holds a password KubeSphere {version} refuses: it needs "
                                        + ", ".join(wrong), f"set one of {tenants.password_rule(version)}: " + fix))
        weak = lab_rules.weak_admin_password(user.name, user.global_role, tenants.is_weak(value))
        if weak is not None:
            problems.append(Problem(field, key, "holds a weak or default password for a platform-admin (anyone who "
                                    "reaches the console owns every cluster of the lab)",
                                    "set a strong one, or leave passwordSecret out and kslab makes one", weak.policy))
        found[user.name] = value
    return found, problems


def archive_file_problems(lab: LabSpec, project_dir: str) -> list[Problem]:
    """Each kslab:imageArchives entry that is not a file, found where the lab-images step will open it (relative
    to the project, ~ expanded: components/lab.py)."""
    problems = []
    for i, name in enumerate(lab.image_sources.archives if lab.image_sources else ()):
        path = os.path.join(project_dir, os.path.expanduser(name))
        fix = "name a file `make images-save STACK=<name> OUT=<file>` wrote (relative to the project, or ~/...)"
        if os.path.isdir(path):
            problems.append(Problem(f"kslab:imageArchives[{i}]", name, f"is a folder ({path})", fix))
        elif not os.path.isfile(path):
            problems.append(Problem(f"kslab:imageArchives[{i}]", name, f"is not a file ({path} does not exist)",
                                    fix))
    return problems


def read_existing_kubeconfigs(config: ConfigValues, project_dir: str,
                              lab: LabSpec) -> tuple[dict[str, str], list[Problem]]:
    """Each existing cluster's kubeconfig, self-contained (kubeconfig.flatten), in memory only, and every
    problem with any of them. A joined member's kubeconfig, as its hosts will use it (with internalServer),
    is also checked the way the join checks it."""
    members = {j.member for j in lab.joins}
    problems: list[Problem] = []
    found: dict[str, str] = {}
    fix = "use the kubeconfig `kubectl config view --flatten --raw --minify` prints"
    for cluster in (c for c in lab.clusters if not c.is_kind):
        if cluster.kubeconfig_secret:
            field, value = f"kslab:clusters[{cluster.name}].kubeconfigSecret", cluster.kubeconfig_secret
            text = config.get(cluster.kubeconfig_secret)  # decrypted in memory only; never shown
            base_dir = None
            if text is None:
                problems.append(Problem(field, value, f"names config key kslab:{value}, which is not set",
                                        f"pulumi config set --secret {value} \"$(cat kubeconfig)\""))
                continue
        elif cluster.kubeconfig_path:
            field, value = f"kslab:clusters[{cluster.name}].kubeconfigPath", cluster.kubeconfig_path
            path = os.path.join(project_dir, os.path.expanduser(os.path.expandvars(cluster.kubeconfig_path)))
            base_dir = os.path.dirname(path)
            try:
                text = _read_bytes(path).decode()
            except UnicodeDecodeError:
                problems.append(Problem(field, value, "is not a text file (not UTF-8)",
                                        "point it at the cluster's kubeconfig"))
                continue
            except ValueError:  # e.g. a NUL byte in the path
                problems.append(Problem(field, value, "is not a usable file path",
                                        "point it at the cluster's kubeconfig file"))
                continue
            except IsADirectoryError:
                problems.append(Problem(field, value, "is a directory", "point it at the cluster's kubeconfig file"))
                continue
            except OSError as exc:
                problems.append(Problem(field, value, f"cannot be read ({exc.strerror})",
                                        "point it at the cluster's kubeconfig file"))
                continue
        else:
            continue  # no source at all: parse_lab reported it
        try:
            kc.server_of(text)
            text = kc.flatten(text, base_dir, _read_bytes, joinable=cluster.name in members)
        except kc.KubeconfigError as exc:
            problems.append(Problem(field, value, str(exc), fix))
            continue
        if cluster.name in members:
            internal = kc.rewrite_server(text, cluster.internal_server) if cluster.internal_server else text
            for message, policy in kc.join_findings(internal, cluster.allow_loopback_join):
                problems.append(Problem(field, value, f"cannot be joined: {message}",
                                        "set internalServer to an address the hosts reach, or " + fix
                                        if policy == kc.LOOPBACK_POLICY else fix, policy))
        found[cluster.name] = text
    return found, problems
