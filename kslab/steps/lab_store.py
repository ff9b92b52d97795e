"""One lab's images in the machine's shared lab registry: resolved by the lab's own stack, kept apart from every
other lab's, and fetched from a source at most once per machine.

The registry holds two kinds of repositories (kslab/model/image_sources.py):
- `labs/<lab id>/<namespace>/<name>:<tag>`: what one lab's nodes pull. Only that lab's up writes there, so an
  override, an image archive or another set of sources of one stack never reaches another stack's nodes.
- `sources/<host>/<repository>`: this machine's copy of what a source served, tagged twice: by the source's digest
  (`sha256-<hex>`, exact) and by the source's tag (the copy fetched last: used only when that source cannot be
  reached, so a lab comes up offline with what the same source served before).

Each image is resolved the way the stack says (its override, else its sources in order, each asked for the manifest's
digest with a HEAD): the first source that has it wins. Its bytes are fetched into `sources/...` unless this machine
already holds that digest from that source; the lab's own repository then gets it by a copy inside the registry,
where crane mounts the blobs instead of uploading them again. Images of your own (`docker:` overrides) and archived
ones go straight into the lab's own repositories.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from kslab.model.image_sources import LAB_REPOSITORIES, LabRegistry, source_copy_repository
from kslab.steps import crane, registry_check
from kslab.steps.registry_check import FOUND, UNREACHABLE, Answer, Checker

FROM_SOURCE, FROM_MACHINE_COPY, FROM_ARCHIVE, FROM_DOCKER = "source", "machine copy", "archive", "docker"


@dataclass(frozen=True)
class Resolved:
    """Where one image of the lab comes from."""
    path: str  # upstream's namespace/name:tag: the image's name under the lab's root
    how: str  # FROM_SOURCE, FROM_MACHINE_COPY, FROM_ARCHIVE or FROM_DOCKER
    source: str  # the source reference, archive:member or docker:<image>
    digest: str = ""  # the source's digest (FROM_SOURCE), when it said it
    asked: tuple[tuple[str, Answer], ...] = field(default=())  # every candidate asked, in order


def copy_tag(digest: str) -> str:
    """The tag of a machine copy by its source's digest: `sha256-<hex>` (a tag allows no ':'; at most 128 chars)."""
    tag = digest.replace(":", "-")
    return tag if re.fullmatch(r"[\w][\w.-]{0,127}", tag) else ""


def source_tag(ref: str) -> str:
    """The tag a source reference names ("" for one by digest)."""
    last = ref.rsplit("/", 1)[-1]
    return "" if "@" in ref or ":" not in last else last.rsplit(":", 1)[1]


class LabStore:
    """One lab's view of the lab registry, through kslab's push endpoint."""

    def __init__(self, lab: LabRegistry, lab_id: str, credentials: dict[str, tuple[str, str]]):
        self.lab, self.lab_id = lab, lab_id
        self.checker = Checker(attempts=1, credentials=credentials)

    def own(self, path: str) -> str:
        """The lab's own reference of an image, as this machine reaches it."""
        return f"{self.lab.local}/{LAB_REPOSITORIES}/{self.lab_id}/{path}"

    def machine_copy(self, source_ref: str, tag: str) -> str:
        return f"{self.lab.local}/{source_copy_repository(source_ref)}:{tag}"

    def digest(self, ref: str) -> str:
        """The digest the registry holds under `ref`, "" when it holds nothing there."""
        answer = self.checker.ask(ref)
        return (answer.digest or "?") if answer.state == FOUND else ""


def resolve(wanted: dict[str, list[str]], checker: Checker, store: LabStore | None,
            concurrency: int = registry_check.CONCURRENCY) -> dict[str, Resolved]:
    """Each image (upstream's path -> its candidates in order) resolved: the first candidate that has it, or, for a
    candidate that cannot be reached, this machine's copy of what it served last. An image nothing has comes back
    with `how` empty and every answer in `asked`."""

    def one(path: str) -> Resolved:
        asked: list[tuple[str, Answer]] = []
        for ref in wanted[path]:
            answer = checker.ask(ref)
            asked.append((ref, answer))
            if answer.state == FOUND:
                return Resolved(path, FROM_SOURCE, ref, answer.digest, tuple(asked))
            tag = source_tag(ref)
            if answer.state == UNREACHABLE and store is not None and tag and store.digest(
                    store.machine_copy(ref, tag)):
                return Resolved(path, FROM_MACHINE_COPY, ref, "", tuple(asked))
        return Resolved(path, "", "", "", tuple(asked))

    paths = list(wanted)
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(paths) or 1))) as pool:
        return dict(zip(paths, pool.map(one, paths), strict=True))


def as_asked(found: dict[str, Resolved]) -> dict[str, list[tuple[str, Answer]]]:
    """What every candidate of each image answered, as registry_check.report_sources takes it (an image stood in for
    by this machine's copy counts as found there)."""
    asked: dict[str, list[tuple[str, Answer]]] = {}
    for path, item in found.items():
        asked[path] = list(item.asked)
        if item.how == FROM_MACHINE_COPY:
            asked[path].append((item.source, Answer(FOUND, "this machine's copy")))
    return asked


class Placer:
    """Puts each resolved image under the lab's own root, fetching from a source only what this machine lacks."""

    def __init__(self, store: LabStore, docker_config: str | None, log: Callable[[str], None]):
        self.store, self.docker_config, self.log = store, docker_config, log
        self.counts = {"fetched": 0, "linked": 0, "unchanged": 0, "pushed": 0}
        self._lock = threading.Lock()  # images are placed side by side

    def _count(self, what: str) -> None:
        with self._lock:
            self.counts[what] += 1

    def _copy(self, source: str, destination: str) -> None:
        crane.copy(source, destination, self.docker_config)

    def _link(self, copy_ref: str, own: str) -> None:
        """The machine copy into the lab's own repository, unless it already holds that very manifest."""
        held, wanted = self.store.digest(own), self.store.digest(copy_ref)
        if held and held == wanted and held != "?":
            self._count("unchanged")
            return
        self._copy(copy_ref, own)  # inside the registry: blobs are mounted, not uploaded
        self._count("linked")

    def from_source(self, item: Resolved) -> None:
        store, own = self.store, self.store.own(item.path)
        exact_tag, tag = copy_tag(item.digest), source_tag(item.source)
        exact = store.machine_copy(item.source, exact_tag) if exact_tag else ""
        if not exact or not store.digest(exact):
            pinned = f"{item.source.rsplit(':', 1)[0] if tag else item.source.split('@')[0]}@{item.digest}" \
                if item.digest else item.source
            target = exact or store.machine_copy(item.source, tag)
            self._copy(pinned, target)
            self._count("fetched")
            self.log(f"fetched {item.source} ({item.digest or 'no digest given'}) into this machine's copies")
            if exact and tag:
                self._copy(exact, store.machine_copy(item.source, tag))  # the copy an offline up falls back to
        self._link(exact or store.machine_copy(item.source, tag), own)

    def from_machine_copy(self, item: Resolved) -> None:
        self.log(f"{item.source} cannot be reached: {item.path} comes from this machine's copy of what it served "
                 "last")
        self._link(self.store.machine_copy(item.source, source_tag(item.source)), self.store.own(item.path))

    def place(self, item: Resolved) -> None:
        """Put one resolved image under the lab's own root."""
        if item.how == FROM_SOURCE:
            self.from_source(item)
        elif item.how == FROM_MACHINE_COPY:
            self.from_machine_copy(item)
