"""Every `kslab:*` setting, declared once: its key, its type and constraint, its default and what it means.

The lab's settings (LAB), one cluster's (CLUSTER), one join's (JOIN), one developer workspace's (DEV_WORKSPACE)
and the lab registry's (LAB_REGISTRY). The loader (spec.py and its readers) takes every key, default and range
from here; the known-key checks and their did-you-mean, the README's field list (tests/test_settings.py) and the
steps' defaults (`default_of`) come from the same declarations. Pure data plus `read`, which reads one scalar
value the way its kind says and records a Problem when it is wrong. Pulumi.yaml declares no config: the engine
makes a declared key without a default required, and a declared default would be a second copy.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kslab.model import tenants, versions
from kslab.model.contract import PolicyName
from kslab.model.fields import WRONG_TYPE, Problem, as_bool, as_int, as_text
from kslab.model.lab_rules import ROLES


@dataclass(frozen=True)
class Text:
    """A string; `example` is what a fix suggests writing instead."""
    example: str = ""


@dataclass(frozen=True)
class Flag:
    """true or false (the text 'true'/'false' too: Pulumi hands a top-level value over as text)."""


@dataclass(frozen=True)
class Whole:
    """A whole number from lo to hi (its text too)."""
    lo: int
    hi: int


@dataclass(frozen=True)
class Port:
    """A port number from lo to hi, written as a number."""
    lo: int
    hi: int


@dataclass(frozen=True)
class OneOf:
    """A string that must be one of `values`; `what` and `fix` say so, `policy` guards the same trap."""
    values: tuple[str, ...]
    example: str
    what: str
    fix: str
    policy: str | None = None


@dataclass(frozen=True)
class Duration:
    """kind's --wait: digits then s, m or h, from lo to hi seconds."""
    lo: int
    hi: int
    example: str


@dataclass(frozen=True)
class Items:
    """A list of `of` (plural)."""
    of: str


@dataclass(frozen=True)
class Table:
    """A mapping of `of`."""
    of: str


@dataclass(frozen=True)
class Secret:
    """A secret config key (pulumi config set --secret): never shown, never in plain text."""


Kind = Text | Flag | Whole | Port | OneOf | Duration | Items | Table | Secret


@dataclass(frozen=True)
class Setting:
    key: str
    kind: Kind
    default: Any
    description: str


def _declare(*settings: Setting) -> dict[str, Setting]:
    return {s.key: s for s in settings}


KIND_WAIT_SECONDS = (0, 3600)  # 0s is kind's own "do not wait"; bounded so a typo cannot wait for hours
_DURATION = re.compile(r"^(\d+)([smh])$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}

LAB = _declare(
    Setting("clusters", Items("clusters"), None, "The lab's clusters (at least one; per cluster below)"),
    Setting("joins", Items("joins"), None, "Which member joins which host (per join below)"),
    Setting("jwtSecretMode", OneOf(("shared", "copy"), "shared", "is not a jwtSecret mode",
                                   "use 'shared' (one secret for the whole stack) or 'copy' (members copy their "
                                   "host's)"),
            "shared", "shared: one jwtSecret for the whole stack; copy: each member copies its host's (seed notes)"),
    Setting("allowMultipleHosts", Flag(), False,
            "Opt in to joining one member to several hosts (unsupported upstream, kubesphere#6466)"),
    Setting("kubesphereVersion", Text(versions.DEFAULT_KUBESPHERE_VERSION), versions.DEFAULT_KUBESPHERE_VERSION,
            "Default KubeSphere release for clusters that do not set one"),
    Setting("nodeImage", Text(versions.DEFAULT_NODE_IMAGE), versions.DEFAULT_NODE_IMAGE,
            "Default kind node image for kind clusters that do not set one"),
    Setting("registry", Text("registry.local:5000"), "",
            "Where every cluster pulls KubeSphere's images: the cc's local_registry, named by ks-installer's "
            "rules (README 'Where the images come from')"),
    Setting("namespaceOverride", Text("kubesphere"), "",
            "ks-installer's namespace_override: the one namespace every image sits in on kslab:registry"),
    Setting("zone", OneOf(("", "cn"), "cn", "is not a zone ks-installer knows",
                          "leave it out, or use cn (images from registry.cn-beijing.aliyuncs.com/kubesphereio)"),
            "", "ks-installer's zone; cn pulls from registry.cn-beijing.aliyuncs.com/kubesphereio"),
    Setting("components", Table("component: true/false"), None, "Optional components every cluster enables"),
    Setting("kindWait", Duration(*KIND_WAIT_SECONDS, "5m"), "5m",
            "How long `kind create cluster --wait` waits for the control plane"),
    Setting("installTimeoutSeconds", Whole(10, 7200), 1800,
            "How long to wait for a KubeSphere install to report enabled"),
    Setting("joinTimeoutSeconds", Whole(5, 3600), 600, "How long to wait for a joined member to become Ready"),
    Setting("unjoinTimeoutSeconds", Whole(5, 3600), 300,
            "How long destroy waits for a Cluster object's finalizer before giving up"),
    Setting("validationMode", OneOf(("strict", "warn"), "strict", "is not a validation mode",
                                    "use strict (default) or warn (policy-guarded problems become warnings)"),
            "strict", "strict: every config problem stops the run; warn: problems a policy also guards become "
            "warnings (the policy pack judges)"),
    Setting("devWorkspaces", Items("workspaces"), None,
            "Cluster components run from source (per workspace below; README 'Develop KubeSphere against the lab')"),
    Setting("imageSources", Items("registry prefixes"), None,
            "Registry prefixes the lab registry is filled from, asked in order (README 'Where the images come "
            "from')"),
    Setting("imageOverrides", Table("namespace/name[:tag]: image reference"), None,
            "One image's own source, e.g. an image you built (docker:<ref>)"),
    Setting("labRegistry", Table("name, hostPort"), None, "The machine's lab registry (below)"),
    Setting("imageArchives", Items("archive files"), None,
            "Image archives (make images-save) the lab registry is filled from first"),
    Setting("users", Items("users"), None,
            "KubeSphere users the lab declares on its hosts (per user below; README 'Tenants')"),
    Setting("workspaces", Items("workspaces"), None,
            "KubeSphere workspaces, each placed on clusters of one host (per workspace below)"),
    Setting("projects", Items("projects"), None, "Projects: a namespace of a workspace on one cluster (below)"),
    Setting("jwtSecret", Secret(), None, "Your own jwtSecret for jwtSecretMode shared, else kslab makes one "
            "(`tools/lab.sh config <stack> set --secret kslab:jwtSecret ...`)"),
    Setting("registryCredentials", Secret(), None,
            "JSON mapping of registry host to {username, password}, from a file or stdin"),
)

CLUSTER = _declare(
    Setting("name", Text("member"), None, "DNS-1123 label of at most 40 characters (required)"),
    Setting("role", OneOf(ROLES, "host", "is not a KubeSphere cluster role", "use one of " + ", ".join(ROLES),
                          PolicyName.INVALID_ROLE), "none", "none, host or member"),
    Setting("backend", OneOf(("kind", "existing"), "kind", "is not a known backend",
                             "use 'kind' (kslab creates the cluster) or 'existing' (you give a kubeconfig)"),
            "kind", "kind: kslab creates it; existing: you give its kubeconfig"),
    Setting("nodeImage", Text(versions.DEFAULT_NODE_IMAGE), None, "kind: the node image (default kslab:nodeImage)"),
    Setting("kubernetesVersion", Text("v1.26.13"), None, "existing: its Kubernetes version (required)"),
    Setting("kubesphereVersion", Text(versions.DEFAULT_KUBESPHERE_VERSION), None,
            "Its KubeSphere release (default kslab:kubesphereVersion)"),
    Setting("hostClusterName", Text(), None, "host: the name it calls itself (default its name)"),
    Setting("consoleHostPort", Whole(1024, 65535), 30880,
            "kind: this machine's port of its console (default 30880 + its index)"),
    Setting("consolePort", Whole(30000, 32767), 30880, "The console's node port"),
    Setting("podSubnet", Text(), None, "kind: its pod network CIDR"),
    Setting("serviceSubnet", Text(), None, "kind: its service network CIDR"),
    Setting("components", Table("component: true/false"), None,
            "Optional components it enables, over kslab:components (" + ", ".join(versions.COMPONENT_MEMORY_MIB)
            + ")"),
    Setting("kubeconfigPath", Text("~/.kube/member.yaml"), None, "existing: its kubeconfig file"),
    Setting("kubeconfigSecret", Text("memberKubeconfig"), None,
            "existing: the secret config key holding its kubeconfig"),
    Setting("internalServer", Text("https://10.0.0.12:6443"), None,
            "existing: the API server address its hosts use"),
    Setting("consoleUrl", Text("https://console.example:30880"), None, "existing: its console's URL"),
    Setting("allowLoopbackJoin", Flag(), False, "existing: join it although its server is a loopback address"),
    Setting("loopbackReason", Text(), None, "Why a host reaches that loopback address (with allowLoopbackJoin)"),
    Setting("imageCheck", Flag(), True,
            "Ask the registries for every planned image before anything is created (README 'Where the images "
            "come from'); off for a cluster whose nodes reach a registry this machine cannot"),
)

JOIN = _declare(
    Setting("member", Text("member"), None, "The member cluster (role member)"),
    Setting("host", Text("host"), None, "The host cluster (role host)"),
)

DEV_COMPONENTS = ("ks-controller-manager", "ks-apiserver")
DEV_WORKSPACE = _declare(
    Setting("cluster", Text("host"), None, "The cluster whose component runs from source"),
    Setting("component", Text(DEV_COMPONENTS[0]), None, "One of " + ", ".join(DEV_COMPONENTS)),
    Setting("dir", Text("dev/kcm"), None, "Its folder, relative to the project or absolute"),
    Setting("keepFiles", Flag(), False, "Keep the folder's files on destroy"),
)

LAB_REGISTRY = _declare(
    Setting("name", Text("kslab-registry"), "kslab-registry",
            "Its pull endpoint's container name on kind's network (push endpoint: <name>-push)"),
    Setting("hostPort", Port(1024, 65535), 5100, "This machine's loopback port of its push endpoint"),
)

USER = _declare(
    Setting("name", Text("alice"), None, "The user's login name, a DNS-1123 label (required)"),
    Setting("email", Text("alice@example.com"), None, "Its email, unique in the lab (default <name>@kslab.local)"),
    Setting("globalRole", Text(tenants.DEFAULT_GLOBAL_ROLE), tenants.DEFAULT_GLOBAL_ROLE,
            "Its platform role, one of the release's GlobalRoles"),
    Setting("passwordSecret", Text("alicePassword"), None,
            "The secret config key holding its password (`tools/lab.sh config <stack> set --secret kslab:<key> "
            "--from-stdin`); absent: kslab makes one, given back by `make outputs ARGS=--show-secrets`"),
    Setting("hosts", Items("cluster names"), None,
            "The clusters it is declared on: hosts (default every host; a lab without hosts: every cluster)"),
)

WORKSPACE = _declare(
    Setting("name", Text("demo"), None, "The workspace's name, a DNS-1123 label (required)"),
    Setting("host", Text("host"), None, "The host it is declared on (default the lab's only host)"),
    Setting("manager", Text("alice"), None, "Its manager, a user declared on its host (required)"),
    Setting("clusters", Items("cluster names"), None,
            "The clusters it is placed on: its host and members joined to it (default its host)"),
    Setting("members", Items("{user, role}"), None, "Users given a workspace role (per member below)"),
)

WORKSPACE_MEMBER = _declare(
    Setting("user", Text("bob"), None, "A user declared on the workspace's host (required)"),
    Setting("role", OneOf(tenants.WORKSPACE_ROLES, tenants.DEFAULT_WORKSPACE_ROLE, "is not a workspace role",
                          "use one of " + ", ".join(tenants.WORKSPACE_ROLES)),
            tenants.DEFAULT_WORKSPACE_ROLE, "Its role in the workspace (" + ", ".join(tenants.WORKSPACE_ROLES) + ")"),
)

PROJECT = _declare(
    Setting("name", Text("demo-host"), None, "The project's namespace, a DNS-1123 label (required)"),
    Setting("workspace", Text("demo"), None, "The workspace it belongs to (required)"),
    Setting("cluster", Text("member"), None, "The cluster it is on, one of its workspace's (default the host)"),
)

SECTIONS = {"kslab": LAB, "clusters[]": CLUSTER, "joins[]": JOIN, "devWorkspaces[]": DEV_WORKSPACE,
            "labRegistry": LAB_REGISTRY, "users[]": USER, "workspaces[]": WORKSPACE,
            "workspaces[].members[]": WORKSPACE_MEMBER, "projects[]": PROJECT}


def default_of(section: dict[str, Setting], key: str) -> Any:
    """A setting's declared default (for code outside the loader that needs one, e.g. a step's fallback)."""
    return section[key].default


def read(problems: list[Problem], path: str, setting: Setting, value: Any, default: Any = WRONG_TYPE) -> Any:
    """`value` read as `setting` declares it: the declared default (or `default`) when absent, WRONG_TYPE for a value
    of the wrong YAML type; a value against the constraint is returned as it is, both with a Problem recorded."""
    kind = setting.kind
    fallback = setting.default if default is WRONG_TYPE else default
    if isinstance(kind, Flag):
        return as_bool(problems, path, value, fallback)
    if isinstance(kind, Whole):
        return as_int(problems, path, value, fallback, kind.lo, kind.hi)
    if isinstance(kind, Port):  # absent: the caller passes the default; an explicit null is no port
        if isinstance(value, bool) or not isinstance(value, int) or not kind.lo <= value <= kind.hi:
            problems.append(Problem(path, value, f"must be a port from {kind.lo} to {kind.hi}",
                                    f"use e.g. {setting.default}"))
            return WRONG_TYPE
        return value
    if not isinstance(kind, (Text, OneOf, Duration)):
        raise TypeError(f"{setting.key} is not a scalar setting")
    text = as_text(problems, path, value, fallback, example=kind.example)
    if text is WRONG_TYPE or text is None:
        return text
    if isinstance(kind, OneOf) and text not in kind.values:
        problems.append(Problem(path, text, kind.what, kind.fix, kind.policy))
    if isinstance(kind, Duration) and not _in_range(kind, text):
        problems.append(Problem(path, text, f"must be a duration from {kind.lo}s to {kind.hi // 60}m (digits, then "
                                "s, m or h; 0s: do not wait)", "use e.g. 5m or 300s"))
        return WRONG_TYPE
    return text


def _in_range(kind: Duration, text: str) -> bool:
    match = _DURATION.match(text)
    return match is not None and kind.lo <= int(match.group(1)) * _DURATION_UNITS[match.group(2)] <= kind.hi


def choices(setting: Setting) -> tuple[str, ...]:
    """The values a OneOf setting allows."""
    if not isinstance(setting.kind, OneOf):
        raise TypeError(f"{setting.key} is not a choice")
    return setting.kind.values


def valid(setting: Setting, value: Any) -> Any:
    """`value` when it is one the setting allows, else the declared default (after `read` reported it)."""
    kind = setting.kind
    if value is WRONG_TYPE or (isinstance(kind, OneOf) and value not in kind.values):
        return setting.default
    return value


def scalar_settings(section: dict[str, Setting]) -> dict[str, Setting]:
    """The settings of a section that hold one value (not a list, mapping or secret)."""
    return {k: s for k, s in section.items() if not isinstance(s.kind, (Items, Table, Secret))}


def text_keys(section: dict[str, Setting]) -> tuple[str, ...]:
    """The keys whose value is a string (Pulumi hands every top-level scalar over as text)."""
    return tuple(k for k, s in section.items() if isinstance(s.kind, (Text, OneOf, Duration)))


_SECTION_TITLES = {"kslab": "top level (`kslab:<field>`)", "clusters[]": "per cluster (`kslab:clusters[i].<field>`)",
                   "joins[]": "per join (`kslab:joins[i].<field>`)",
                   "devWorkspaces[]": "per developer workspace (`kslab:devWorkspaces[i].<field>`)",
                   "labRegistry": "the lab registry (`kslab:labRegistry.<field>`)",
                   "users[]": "per user (`kslab:users[i].<field>`)",
                   "workspaces[]": "per workspace (`kslab:workspaces[i].<field>`)",
                   "workspaces[].members[]": "per workspace member (`kslab:workspaces[i].members[j].<field>`)",
                   "projects[]": "per project (`kslab:projects[i].<field>`)"}


def _kind_text(kind: Kind) -> str:
    if isinstance(kind, OneOf):
        return " / ".join(f"`{v}`" if v else "`''`" for v in kind.values)
    if isinstance(kind, (Whole, Port)):
        return f"{'port' if isinstance(kind, Port) else 'number'} {kind.lo}-{kind.hi}"
    if isinstance(kind, Duration):
        return f"duration {kind.lo}s-{kind.hi // 60}m"
    if isinstance(kind, (Items, Table)):
        return f"{'list' if isinstance(kind, Items) else 'mapping'} of {kind.of}"
    return "string" if isinstance(kind, Text) else "true/false" if isinstance(kind, Flag) else "secret"


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if value != "" else "''"


def field_list() -> str:
    """The README's field list (section "Stacks"), made from the declarations (tests/test_settings.py holds them
    equal)."""
    lines: list[str] = []
    for section, settings in SECTIONS.items():
        lines += [f"{_SECTION_TITLES[section]}:", "", "| field | type | default | what |", "|---|---|---|---|"]
        for s in settings.values():
            default = "" if s.default is None else f"`{_default_text(s.default)}`"
            lines.append(f"| `{s.key}` | {_kind_text(s.kind)} | {default} | {s.description} |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"
