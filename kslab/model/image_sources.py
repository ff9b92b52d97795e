"""Where a lab's images come from, and the lab registry every kind cluster pulls them from. Pure.

With `kslab:imageSources` set, kslab copies each planned image once from the first source that has it into
one registry per machine (a container on kind's Docker network, kslab/steps/lab_registry.py), and every
kind cluster pulls from there: its cc's `local_registry` names that registry (ks-installer's own rule,
roles/download/defaults/main.yml `base_repo`) and its nodes' containerd reaches it over plain HTTP (a
`hosts.toml`, as kind's "Local Registry" guide sets one up). Existing clusters cannot reach kind's network:
they keep `kslab:registry`/`namespaceOverride`/`zone` and pull from there.

A source is a registry prefix:
- `host[:port]` keeps each image's own namespace: `harbor.corp` -> harbor.corp/kubesphere/ks-apiserver:v3.4.1;
- `host[:port]/path` replaces it, like ks-installer's `namespace_override`: `docker.io/prom` ->
  docker.io/prom/prometheus:v2.39.1, and docker.io/prom/ks-apiserver:v3.4.1 (which is not there, so the next
  source is asked).
`kslab:imageOverrides` names one image's own source: `{"kubesphere/ks-controller-manager": "me.local/kcm:dev"}`
(a key may carry a tag to override one tag only; a value without a tag keeps the planned one).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from kslab.model import contract, images
from kslab.model.fields import Problem
from kslab.model.settings import LAB, LAB_REGISTRY, read

# One lab registry per machine, by default (kslab/model/settings.py declares both): the container, its data volume,
# and where this machine reaches it.
DEFAULT_LAB_REGISTRY_NAME: str = LAB_REGISTRY["name"].default
DEFAULT_LAB_REGISTRY_PORT: int = LAB_REGISTRY["hostPort"].default
LAB_REGISTRY_CONTAINER_PORT = 5000  # distribution's default listen port, inside the container
LAB_REGISTRY_LABEL = "io.kslab.lab-registry"  # on the container and its volume: what `make registry` may touch
KIND_NETWORK = "kind"  # the Docker network kind puts every node on (kind: pkg/cluster/internal/providers/docker)
CONTAINERD_CERTS_DIR = "/etc/containerd/certs.d"

_PREFIX = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::\d{1,5})?(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*$")
_NAME = re.compile(r"^[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?$")
_CONTAINER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class LabRegistry:
    """The machine's lab registry: one data volume served by two containers. `name` is the pull endpoint every kind
    node names (on kind's network, read-only: nothing can push or delete there); `<name>-push` is kslab's own
    endpoint, published on this machine's loopback only and locked with a password only kslab holds."""
    name: str = DEFAULT_LAB_REGISTRY_NAME
    host_port: int = DEFAULT_LAB_REGISTRY_PORT

    @property
    def in_network(self) -> str:
        """The registry as every kind node names it: the pull endpoint's name on kind's network."""
        return f"{self.name}:{LAB_REGISTRY_CONTAINER_PORT}"

    @property
    def local(self) -> str:
        """The push endpoint as this machine reaches it (its port published on loopback only)."""
        return f"127.0.0.1:{self.host_port}"

    @property
    def push_container(self) -> str:
        return f"{self.name}-push"

    @property
    def volume(self) -> str:
        return f"{self.name}-data"

    def lab_root(self, lab_id: str) -> str:
        """Where one lab's images live, as its nodes name them: `<registry>/labs/<lab id>` (ks-installer's
        local_registry may carry a path: roles/download/defaults/main.yml renders `base_repo` as
        `{{ local_registry }}/`, at v3.2.1 and v3.4.1)."""
        return f"{self.in_network}/{LAB_REPOSITORIES}/{lab_id}"

    def as_env(self) -> str:
        return json.dumps({"name": self.name, "hostPort": self.host_port})

    @classmethod
    def from_env(cls, text: str) -> LabRegistry:
        doc = json.loads(text)
        return cls(doc["name"], int(doc["hostPort"]))

    def hosts_toml(self) -> str:
        """containerd's per-registry host config (docs/hosts.md): plain HTTP, pull and resolve only."""
        return (f'server = "http://{self.in_network}"\n\n'
                f'[host."http://{self.in_network}"]\n  capabilities = ["pull", "resolve"]\n')


# The lab registry's repositories: each lab's own (what its nodes pull, written only by that lab's up), and this
# machine's copies of what each source served (filled once per machine, read by every lab that resolves the same
# source image, and copied into a lab's own repositories by cross-repository blob mounts).
LAB_REPOSITORIES = "labs"
SOURCE_COPIES = "sources"


def source_copy_repository(source_ref: str) -> str:
    """The repository of this machine's copy of a source image: `sources/<host>/<repository>`, the host's ':'
    written '-' (a repository path component allows no ':'). Pure."""
    registry, _, rest = source_ref.partition("/")
    repository = re.split(r"[@]", rest, maxsplit=1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    host = re.sub(r"[^a-z0-9.-]+", "-", registry.lower()).strip("-.")
    return f"{SOURCE_COPIES}/{host}/{repository.lower()}"


# containerd 1.6's CRI plugin reads per-registry host configs from here (config format v2).
CONTAINERD_PATCH = ('[plugins."io.containerd.grpc.v1.cri".registry]\n'
                    f'  config_path = "{CONTAINERD_CERTS_DIR}"\n')


DOCKER_PREFIX = "docker:"  # an override from this machine's Docker (an image you built), not a registry


@dataclass(frozen=True)
class ImageSources:
    prefixes: tuple[str, ...]
    overrides: tuple[tuple[str, str], ...] = ()  # (key, ref), in the stack file's order
    lab: LabRegistry = field(default_factory=LabRegistry)
    archives: tuple[str, ...] = ()  # image archives (make images-save), as the stack file names them
    # The lab's identity on this machine (contract.lab_id): its own repositories in the lab registry.
    lab_id: str = field(default_factory=lambda: contract.lab_id(""))

    @property
    def root(self) -> str:
        """Where this lab's images live in the lab registry, as its nodes name them."""
        return self.lab.lab_root(self.lab_id)

    @property
    def naming(self) -> images.Naming:
        """ks-installer's naming for a kind cluster of the lab: every image under the lab's own repositories."""
        return images.Naming(local_registry=self.root)

    def upstream_path(self, ref: str) -> str:
        """`namespace/name:tag` of one of this lab's images: its name upstream and under the lab's root."""
        prefix = f"{self.root}/"
        if not ref.startswith(prefix):
            raise ValueError(f"{ref} is not an image of this lab in the lab registry ({self.root})")
        return ref[len(prefix):]

    def override_for(self, path: str) -> str | None:
        """The override of `namespace/name:tag`, if any: a key with the tag wins over one without."""
        repository, _, tag = path.rpartition(":")
        table = dict(self.overrides)
        ref = table.get(path) or table.get(repository)
        if ref is None:
            return None
        return ref if _has_tag(ref.removeprefix(DOCKER_PREFIX)) else f"{ref}:{tag}"

    def candidates(self, path: str) -> list[str]:
        """Where to look for `namespace/name:tag` (upstream's name), in order: its override alone, else each source."""
        override = self.override_for(path)
        if override is not None:
            return [override]
        namespace, _, rest = path.partition("/")
        return [f"{p}/{rest}" if "/" in p else f"{p}/{path}" for p in self.prefixes]


def _has_tag(ref: str) -> bool:
    last = ref.rsplit("/", 1)[-1]
    return ":" in last or "@" in ref


Found = list[Problem]  # every problem found, at once


def _archives(problems: Found, raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        problems.append(Problem("kslab:imageArchives", raw, "must be a non-empty list of archive files",
                         "e.g. imageArchives: [~/kslab-images.tar] (made by make images-save)"))
        return ()
    found = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item.strip():
            problems.append(Problem(f"kslab:imageArchives[{i}]", item, "is not a file path",
                             "name a file make images-save wrote, e.g. ~/kslab-images.tar"))
        else:
            found.append(item)
    return tuple(found)


def parse_sources(raw_sources: object, raw_overrides: object, raw_registry: object,
                  raw_archives: object = None) -> tuple[ImageSources | None, Found]:
    """kslab:imageSources, kslab:imageOverrides, kslab:labRegistry and kslab:imageArchives, and every problem as
    (field, value, what is wrong, what to do). None when neither sources nor archives are set (the lab pulls as
    before)."""
    problems: Found = []
    archives = _archives(problems, raw_archives)
    if raw_sources is None and raw_archives is None:
        for key, value in (("kslab:imageOverrides", raw_overrides), ("kslab:labRegistry", raw_registry)):
            if value is not None:
                problems.append(Problem(key, value, "has no effect without kslab:imageSources or kslab:imageArchives",
                                 "set kslab:imageSources (README 'Where the images come from'), or remove it"))
        return None, problems
    prefixes = _prefixes(problems, raw_sources)
    overrides = _overrides(problems, raw_overrides)
    lab = _lab_registry(problems, raw_registry)
    return ImageSources(tuple(prefixes), tuple(overrides), lab, archives), problems


def _prefixes(problems: Found, raw: object) -> list[str]:
    prefixes: list[str] = []
    if raw is None:
        pass  # archives alone: a lab with no network
    elif not isinstance(raw, list) or not raw:
        problems.append(Problem("kslab:imageSources", raw, "must be a non-empty list of registry prefixes",
                         "e.g. imageSources: [harbor.corp/kubesphere, docker.io/prom]"))
    else:
        for i, item in enumerate(raw):
            text = item.rstrip("/") if isinstance(item, str) else item
            if not isinstance(text, str) or "://" in text or not _PREFIX.match(text):
                problems.append(Problem(f"kslab:imageSources[{i}]", item,
                                 "is not a registry prefix host[:port][/namespace] (no scheme, lower-case path)",
                                 "use e.g. harbor.corp, harbor.corp/kubesphere or 127.0.0.1:5000/kubespheredev"))
            elif (wrong := _host_problem(text)) is not None:
                problems.append(Problem(f"kslab:imageSources[{i}]", item, *wrong))
            elif text in prefixes:
                problems.append(Problem(f"kslab:imageSources[{i}]", item, "is listed twice", "list each source once"))
            else:
                prefixes.append(text)
    return prefixes


def _host_problem(source: str) -> tuple[str, str] | None:
    """What is wrong with the registry host a source (or a credentials host) starts with, and the fix; None when
    it is one. A first component is a registry host only with a '.' or a ':' or as `localhost` (distribution's
    rule, reference/normalize.go splitDockerDomain, v2.8.3); anything else is a Docker Hub namespace."""
    name, _, port = source.split("/", 1)[0].partition(":")
    if port and not 1 <= int(port) <= 65535:
        return (f"has the port {port}, outside 1 to 65535", f"write the registry's port, e.g. {name}:5000")
    if "." not in name and not port and name != "localhost":
        return (f"starts with {name!r}, which is not a registry host (no '.', no ':port', not localhost), so every "
                "image would be pulled from Docker Hub", f"write the registry host, e.g. {name}.example.com:5000, "
                f"or docker.io/{source} if Docker Hub is meant")
    return None


def _overrides(problems: Found, raw: object) -> list[tuple[str, str]]:
    overrides: list[tuple[str, str]] = []
    if raw is None:
        return overrides
    if not isinstance(raw, dict):
        problems.append(Problem("kslab:imageOverrides", raw,
                         "must be a mapping of namespace/name[:tag] to an image reference",
                         'e.g. imageOverrides: {"kubesphere/ks-controller-manager": "me.local/kcm:dev"}'))
        return overrides
    for key, ref in raw.items():
        if not isinstance(key, str) or not _NAME.match(key) or "/" not in key:
            problems.append(Problem(f"kslab:imageOverrides[{key}]", key,
                             "is not an image's upstream name namespace/name[:tag]",
                             "use a name `make images` prints, e.g. kubesphere/ks-apiserver"))
        elif (not isinstance(ref, str) or "://" in ref
              or not re.match(r"^[A-Za-z0-9][A-Za-z0-9./_:@-]*$", ref.removeprefix(DOCKER_PREFIX))):
            problems.append(Problem(f"kslab:imageOverrides[{key}]", ref, "is not an image reference",
                             "use e.g. me.local:5000/ks-controller-manager:dev, or docker:kcm:dev for an "
                             "image in this machine's Docker"))
        else:
            overrides.append((key, ref))
    return overrides


def _lab_registry(problems: Found, raw: object) -> LabRegistry:
    lab = LabRegistry()
    if raw is None:
        return lab
    if not isinstance(raw, dict) or set(raw) - set(LAB_REGISTRY):
        problems.append(Problem("kslab:labRegistry", raw, "must be a mapping with name and/or hostPort",
                                f"e.g. labRegistry: {{name: {DEFAULT_LAB_REGISTRY_NAME}, hostPort: "
                                f"{DEFAULT_LAB_REGISTRY_PORT}}}"))
        return lab
    name = raw.get("name", lab.name)
    if not isinstance(name, str) or not _CONTAINER_NAME.match(name):
        problems.append(Problem("kslab:labRegistry.name", name, "is not a container name (lower-case, digits, "
                                "'.', '_', '-')", f"use e.g. {DEFAULT_LAB_REGISTRY_NAME}"))
        name = lab.name
    port = read(problems, "kslab:labRegistry.hostPort", LAB_REGISTRY["hostPort"],
                raw.get("hostPort", lab.host_port))
    return LabRegistry(name, lab.host_port if not isinstance(port, int) else port)


CREDENTIALS_KEY = LAB["registryCredentials"].key


def source_hosts(sources: ImageSources | None) -> tuple[str, ...]:
    """The registry hosts kslab asks with credentials, as the registry client matches them (the host as written):
    each source's, and each override's that names a registry."""
    if sources is None:
        return ()
    refs = [f"{p}/x" for p in sources.prefixes] + [r for _, r in sources.overrides if not r.startswith(DOCKER_PREFIX)]
    return tuple(dict.fromkeys(images.canonical_ref(r).split("/", 1)[0] for r in refs))


def _unmatched_host(host: str, hosts: tuple[str, ...]) -> tuple[str, str]:
    """The problem of a credentials host no source has: credentials go only to the host exactly as a source writes
    it (registry_check.Checker and crane's docker config look them up by that text), so a host that differs only in
    case would silently be sent nothing."""
    what = "matches no host of kslab:imageSources or kslab:imageOverrides, so these credentials would never be sent"
    if not hosts:
        return what, "set kslab:imageSources (README 'Where the images come from'), or remove these credentials"
    same = [h for h in hosts if h.lower() == host.lower()]
    if same:
        return (what + " (hosts are compared as written)", f"write the host as the source does: {same[0]}")
    return what, "name one of the sources' hosts: " + ", ".join(hosts)


def parse_credentials(text: str | None, is_secret: bool,
                      hosts: tuple[str, ...] | None = None) -> tuple[str | None, Found]:
    """kslab:registryCredentials: a secret JSON mapping of registry host to {username, password}. The value is
    never put into a problem; the normalised JSON is returned for the lab-images step (a secret there too).
    `hosts` (source_hosts), when given: every credentials host must be one of them."""
    field_name, shown_value = f"kslab:{CREDENTIALS_KEY}", "(secret)"
    if text is None:
        return None, []
    # The value from a file (or stdin), never on the command line: tools/lab.sh hands it to pulumi on its stdin.
    fix = (f"write {{\"harbor.corp\": {{\"username\": \"...\", \"password\": \"...\"}}}} into a file of your own "
           f"(chmod 600), then: tools/lab.sh config <stack> set --secret kslab:{CREDENTIALS_KEY} --from-file <file> "
           "(or --from-stdin; README 'Where the images come from')")
    if not is_secret:
        return None, [Problem(field_name, shown_value, "is stored in plain text in the stack settings", fix)]
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not doc:
        return None, [Problem(field_name, shown_value, "is not a JSON mapping of registry host to {username, "
                              "password}", fix)]
    problems: Found = []
    normal = {}
    for host, entry in doc.items():
        if not isinstance(host, str) or "/" in host or not _PREFIX.match(host):
            problems.append(Problem(f"{field_name}[{host}]", shown_value, "is not a registry host[:port]", fix))
        elif hosts is not None and host not in hosts:
            problems.append(Problem(f"{field_name}[{host}]", shown_value, *_unmatched_host(host, hosts)))
        elif (not isinstance(entry, dict) or set(entry) != {"username", "password"}
              or not all(isinstance(v, str) and v for v in entry.values())):
            problems.append(Problem(f"{field_name}[{host}]", shown_value, "must have a non-empty username and password "
                             "and nothing else", fix))
        else:
            normal[host] = {"username": entry["username"], "password": entry["password"]}
    return (json.dumps(normal) if not problems else None), problems
