"""`make registry ARGS="list|size|remove"`: the lab registry every lab of this machine shares.

- list: which lab uses which image, by digest (each lab's own repositories, labs/<lab id>/...), then this machine's
  copies of what each source served (sources/<host>/...);
- size: the bytes its images take (each blob counted once, as the registry stores it once);
- remove --yes: delete its two containers and its data volume (only ones kslab made: they carry its label).

Exit status: 0; 1 when the registry is not running (list, size) or a removal failed; 2 on bad usage.
"""
from __future__ import annotations

import argparse
import base64
import json
import re
import sys
import urllib.error
import urllib.request

from kslab.cli.stack_spec import load_spec_or_say_why
from kslab.model.image_sources import LAB_REGISTRY_LABEL, LAB_REPOSITORIES, SOURCE_COPIES, LabRegistry
from kslab.steps.lab_registry import RegistryError, container_state, docker, is_running, stderr_text
from kslab.steps.registry_auth import push_credentials
from kslab.steps.registry_check import MANIFEST_ACCEPT

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
CATALOG_PAGE = 100  # distribution refuses pages above its maximum (1000) with a 400


def _get(lab: LabRegistry, path: str, accept: str | None = None) -> dict:
    return _get_page(lab, path, accept)[0]


def _get_page(lab: LabRegistry, path: str, accept: str | None = None) -> tuple[dict, str | None]:
    """A JSON answer and the path of its next page (the `Link: <...>; rel="next"` header of paginated lists)."""
    headers = {"Accept": accept} if accept else {}
    for username, password in push_credentials(lab).values():  # the push endpoint asks for kslab's password
        headers["Authorization"] = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    request = urllib.request.Request(f"http://{lab.local}{path}", headers=headers)
    with _OPENER.open(request, timeout=10) as response:
        link = response.headers.get("Link") or ""
        match = re.match(r'\s*<([^>]+)>\s*;\s*rel="next"', link)
        return json.loads(response.read()), match.group(1) if match else None


def _digest(lab: LabRegistry, repository: str, tag: str) -> str:
    headers = {"Accept": MANIFEST_ACCEPT}
    for username, password in push_credentials(lab).values():
        headers["Authorization"] = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    request = urllib.request.Request(f"http://{lab.local}/v2/{repository}/manifests/{tag}", method="HEAD",
                                     headers=headers)
    with _OPENER.open(request, timeout=10) as response:
        return str(response.headers.get("Docker-Content-Digest") or "?")


def by_lab(lab: LabRegistry) -> dict[str, list[tuple[str, str]]]:
    """Each lab's images (`labs/<lab id>/...`), this machine's source copies and anything else the registry holds
    (an earlier kslab's shared names): group -> [(image, digest)]."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for image in images(lab):
        repository, _, tag = image.rpartition(":")
        parts = repository.split("/")
        if parts[0] == LAB_REPOSITORIES and len(parts) > 2:
            group, name = f"lab {parts[1]}", "/".join(parts[2:])
        elif parts[0] == SOURCE_COPIES:
            group, name = "this machine's copies of the sources (fetched once, shared by digest)", "/".join(parts[1:])
        else:
            group, name = "left by an earlier kslab (no lab pulls these)", repository
        groups.setdefault(group, []).append((f"{name}:{tag}", _digest(lab, repository, tag)))
    return groups


def render_list(groups: dict[str, list[tuple[str, str]]]) -> str:
    lines = []
    for group in sorted(groups, key=lambda g: (not g.startswith("lab "), g)):
        lines.append(f"{group}:")
        width = max(len(image) for image, _ in groups[group])
        lines.extend(f"  {image:<{width}}  {digest}" for image, digest in groups[group])
    return "\n".join(lines)


def repositories(lab: LabRegistry) -> list[str]:
    found: list[str] = []
    path: str | None = f"/v2/_catalog?n={CATALOG_PAGE}"
    while path:
        page, path = _get_page(lab, path)
        found.extend(page.get("repositories") or [])
    return sorted(found)


def images(lab: LabRegistry) -> list[str]:
    """repository:tag of everything the registry holds (the catalog, then each repository's tags)."""
    held = []
    for repository in repositories(lab):
        for tag in sorted(_get(lab, f"/v2/{repository}/tags/list").get("tags") or []):
            held.append(f"{repository}:{tag}")
    return held


def stored_bytes(lab: LabRegistry) -> tuple[int, int]:
    """(bytes of the distinct blobs every image refers to, number of those blobs)."""
    blobs: dict[str, int] = {}

    def walk(repository: str, reference: str) -> None:
        manifest = _get(lab, f"/v2/{repository}/manifests/{reference}", MANIFEST_ACCEPT)
        for child in manifest.get("manifests") or []:  # an index: each platform's manifest
            walk(repository, child["digest"])
        for blob in [manifest.get("config") or {}, *(manifest.get("layers") or [])]:
            if blob.get("digest"):
                blobs[blob["digest"]] = int(blob.get("size") or 0)

    for image in images(lab):
        repository, _, tag = image.rpartition(":")
        walk(repository, tag)
    return sum(blobs.values()), len(blobs)


def status_line(lab: LabRegistry) -> str:
    """One line for `make status`: where the registry is and what it holds, or why it is not there."""
    state, push = container_state(lab), container_state(lab, lab.push_container)
    if state is None and push is None:
        return f"lab registry '{lab.name}': not created yet (the next up creates it)"
    if not is_running(state) or not is_running(push):
        return (f"lab registry '{lab.name}': stopped (the next up starts it; or `docker start {lab.name} "
                f"{lab.push_container}`)")
    try:
        size, _ = stored_bytes(lab)
        labs = {i.split("/")[1] for i in images(lab) if i.startswith(f"{LAB_REPOSITORIES}/")}
        return (f"lab registry '{lab.name}': running ({lab.in_network} on kind's network, read-only; kslab pushes "
                f"at {lab.local}), {len(images(lab))} images, {len(labs)} labs, {size / 1e6:.1f} MB")
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"lab registry '{lab.name}': running, but {lab.local} does not answer ({error})"


def remove(lab: LabRegistry) -> list[str]:
    """Delete both containers and the volume, if kslab made them; what was removed."""
    removed = []
    for name in (lab.name, lab.push_container):
        state = container_state(lab, name)
        if state is None:
            continue
        if LAB_REGISTRY_LABEL not in ((state.get("Config") or {}).get("Labels") or {}):
            raise RegistryError(f"container '{name}' is not a kslab lab registry; left alone")
        proc = docker("rm", "-f", state["Id"])
        if proc.returncode != 0:
            raise RegistryError(f"`docker rm -f {name}` failed: {stderr_text(proc)}")
        removed.append(f"container {name}")
    volume = docker("volume", "inspect", lab.volume)
    if volume.returncode == 0:
        labels = json.loads(volume.stdout)[0].get("Labels") or {}
        if LAB_REGISTRY_LABEL not in labels:
            raise RegistryError(f"volume '{lab.volume}' is not a kslab lab registry's; left alone")
        proc = docker("volume", "rm", lab.volume)
        if proc.returncode != 0:
            raise RegistryError(f"`docker volume rm {lab.volume}` failed: {stderr_text(proc)}")
        removed.append(f"volume {lab.volume}")
    return removed


def lab_registry_of(project_dir: str, stack: str | None) -> LabRegistry | None:
    """The stack's lab registry (kslab:labRegistry), the machine's default one without a stack, or None when the
    stack file cannot be read (the reason is printed)."""
    if not stack:
        return LabRegistry()
    spec = load_spec_or_say_why(project_dir, stack)
    if spec is None:
        return None
    return spec.image_sources.lab if spec.image_sources is not None else LabRegistry()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kslab registry", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("list", "size", "status", "remove"))
    parser.add_argument("--stack", default="")
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--yes", action="store_true", help="remove: really delete the registry and its images")
    args = parser.parse_args(argv)
    lab = lab_registry_of(args.project_dir, args.stack)
    if lab is None:
        return 2
    try:
        if args.action == "status":
            print(status_line(lab))
            return 0
        if args.action == "remove":
            if not args.yes:
                print(f"would delete the lab registry '{lab.name}' and its volume {lab.volume} with every image "
                      "in it; a lab copies its images again on its next `make up STACK=<name> ARGS=--refresh`. "
                      "Add --yes to do it.")
                return 1
            removed = remove(lab)
            print("removed " + ", ".join(removed) if removed else f"no lab registry '{lab.name}' here")
            return 0
        if not is_running(container_state(lab, lab.push_container)):
            print(status_line(lab), file=sys.stderr)
            return 1
        if args.action == "list":
            groups = by_lab(lab)
            print(render_list(groups) if groups else f"lab registry '{lab.name}' is empty")
        else:
            size, blobs = stored_bytes(lab)
            print(f"{size} bytes ({size / 1e6:.1f} MB) in {blobs} blobs, {len(images(lab))} images")
        return 0
    except RegistryError as error:
        print(f"kslab: {error}", file=sys.stderr)
        return 1
    except (urllib.error.URLError, OSError, ValueError) as error:
        print(f"kslab: the lab registry at {lab.local} did not answer: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
