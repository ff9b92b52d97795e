"""The image steps (`python -m kslab.steps <step>`, kslab/steps/programs.py): every planned image asked of its
registry before anything is created, and the lab registry filled with the kind clusters' images (and its
refresh)."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time

from kslab.model import contract as names
from kslab.steps.common import env, fail, log


def step_image_check() -> None:
    """Every planned image, asked of its registry (a manifest HEAD), before any cluster or object exists."""
    from kslab.steps import registry_check  # the HTTP client loads only for this step
    wanted: dict[str, list[str]] = json.loads(env(names.ENV_IMAGES))
    started = time.monotonic()
    answers = registry_check.check(list(wanted))
    refusal = registry_check.report(answers, wanted)
    if refusal:
        fail("image check failed: " + refusal)
    log(f"image check: all {len(answers)} planned images found in {time.monotonic() - started:.1f}s")
    print(json.dumps({"images": len(answers), "registries": sorted({registry_check.ImageRef.parse(r).registry
                                                                   for r in answers})}))


def _registry_auth() -> dict[str, tuple[str, str]]:
    doc = json.loads(os.environ.get(names.ENV_REGISTRY_AUTH) or "{}")
    return {host: (entry["username"], entry["password"]) for host, entry in doc.items()}


def _fill_lab_registry(lab, wanted: dict[str, dict], archive_files: list[str],
                       credentials: dict[str, tuple[str, str]]) -> tuple[set[str], dict[str, str]]:
    """The lab-images step's work, under the machine's lab registry lock: what was already held, what was copied."""
    from kslab.model.image_sources import DOCKER_PREFIX
    from kslab.steps import archives, lab_registry, registry_check
    state = lab_registry.container_state(lab)
    held: set[str] = set()
    if state is not None:
        log(f"lab registry '{lab.name}' at {lab.local}: {lab_registry.ensure_running(lab)}")
        present = registry_check.check([f"{lab.local}/{path}" for path in wanted])
        held = {path for path in wanted if present[f"{lab.local}/{path}"].state == registry_check.FOUND
                and not wanted[path].get("override")}
    missing = [path for path in wanted if path not in held]
    in_archive: dict[str, tuple[str, str]] = {}
    for archive in archive_files if missing else ():
        index = archives.read_index(archive)
        for path in missing:
            if path in index and path not in in_archive and not wanted[path].get("override"):
                in_archive[path] = (archive, index[path])
    from_docker = {path: wanted[path]["candidates"][0] for path in missing
                   if wanted[path]["candidates"] and wanted[path]["candidates"][0].startswith(DOCKER_PREFIX)}
    for path, ref in from_docker.items():
        if not lab_registry.docker_has(ref.removeprefix(DOCKER_PREFIX)):
            fail(f"image sources: {path} is overridden with {ref}, which this machine's Docker does not have. "
                 f"Fix: build or pull it (docker images), or change kslab:imageOverrides")
    ask = [path for path in missing if path not in in_archive and path not in from_docker]
    checker = registry_check.Checker(credentials=credentials)
    located = registry_check.locate({path: wanted[path]["candidates"] for path in ask}, checker=checker)
    refusal = registry_check.report_sources(located, {path: wanted[path]["clusters"] for path in wanted},
                                            archive_files)
    if refusal:
        fail("image sources: " + refusal)
    if state is None:
        log(f"lab registry '{lab.name}' at {lab.local}: {lab_registry.ensure_running(lab)}")
    copied: dict[str, str] = {}
    for path, (archive, member) in in_archive.items():
        archives.load(archive, member, f"{lab.local}/{path}")
        copied[path] = f"{archive}:{member}"
        log(f"loaded {path} from the archive {archive}")
    for path, ref in from_docker.items():
        lab_registry.push_from_docker(ref.removeprefix(DOCKER_PREFIX), f"{lab.local}/{path}")
        copied[path] = ref
        log(f"pushed {ref} from this machine's Docker into the lab registry as {path}")
    with tempfile.TemporaryDirectory(prefix="kslab-auth-") as auth_dir:
        docker_config = lab_registry.write_docker_config(auth_dir, credentials) if credentials else None
        for path in ask:
            source = registry_check.found_at(located[path])
            if source is None:  # report_sources refused every image no source holds
                fail(f"internal: no source for {path}")
            lab_registry.copy(source, f"{lab.local}/{path}", docker_config)
            copied[path] = source
            log(f"copied {source} into the lab registry as {path}")
    return held, copied


def step_lab_images() -> None:
    """Every image of the lab's kind clusters into the lab registry. What it already holds is asked of nobody (a
    re-up copies nothing, and works offline); an image overridden in the stack is always put in again (it is
    yours, and may have changed); the rest comes from the image archives, else from the first source that has it.
    Every image is found before anything is copied or created: a refusal lists each one nothing has."""
    from kslab.model.image_sources import LabRegistry
    from kslab.steps import lab_registry
    lab = LabRegistry.from_env(env(names.ENV_LAB_REGISTRY))
    wanted: dict[str, dict] = json.loads(env(names.ENV_LAB_IMAGES))
    archive_files: list[str] = json.loads(os.environ.get(names.ENV_LAB_ARCHIVES) or "[]")
    credentials = _registry_auth()
    started = time.monotonic()
    try:
        with lab_registry.machine_lock(lab, log):
            held, copied = _fill_lab_registry(lab, wanted, archive_files, credentials)
    except lab_registry.RegistryError as error:
        fail(f"lab registry: {error}")
    log(f"lab registry: {len(wanted)} images, {len(held)} already there, {len(copied)} copied, in "
        f"{time.monotonic() - started:.1f}s")
    print(json.dumps({"registry": lab.local, "images": len(wanted), "held": len(held), "copied": copied}))


def step_lab_images_read() -> None:
    """Refresh: the lab images step counts as gone (and the next up fills the registry again) when the lab
    registry is not there, lacks an image, or an image of your own is to be pushed again (it may be rebuilt)."""
    from kslab.model.image_sources import LabRegistry
    from kslab.steps import lab_registry, registry_check
    lab = LabRegistry.from_env(env(names.ENV_LAB_REGISTRY))
    wanted: dict[str, dict] = json.loads(env(names.ENV_LAB_IMAGES))
    try:
        state = lab_registry.container_state(lab)
    except lab_registry.RegistryError as error:
        fail(f"lab registry: {error}")
    if state is None or any(entry.get("override") for entry in wanted.values()):
        sys.exit(names.GONE_EXIT)
    if not (state.get("State") or {}).get("Running"):
        sys.exit(names.GONE_EXIT)
    present = registry_check.check([f"{lab.local}/{path}" for path in wanted],
                                   checker=registry_check.Checker(attempts=1))
    if any(answer.state != registry_check.FOUND for answer in present.values()):
        sys.exit(names.GONE_EXIT)
    print(json.dumps({"registry": lab.local, "images": len(wanted), "held": len(wanted), "copied": {}}))
