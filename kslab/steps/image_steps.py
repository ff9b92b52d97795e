"""The image steps (`python -m kslab.steps <step>`, kslab/steps/dispatch.py): every planned image asked of its
registry before anything is created, and the lab registry filled with the kind clusters' images (and its
refresh)."""
from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from kslab.model import contract as names
from kslab.model import requests
from kslab.model.requests import LabImage
from kslab.steps import common
from kslab.steps.common import fail, log


def step_image_check() -> None:
    """Every planned image, asked of its registry (a manifest HEAD), before any cluster or object exists."""
    from kslab.steps import registry_check  # the HTTP client loads only for this step
    wanted = common.request(requests.ImageCheck).images
    started = time.monotonic()
    answers = registry_check.check(list(wanted))
    refusal = registry_check.report(answers, wanted)
    if refusal:
        fail("image check failed: " + refusal)
    log(f"image check: all {len(answers)} planned images found in {time.monotonic() - started:.1f}s")
    print(json.dumps({"images": len(answers), "registries": sorted({registry_check.ImageRef.parse(r).registry
                                                                   for r in answers})}))


PLACE_CONCURRENCY = 4  # images put into the lab's repositories at once


def _before_anything(wanted: dict[str, LabImage], archive_files: list[str]) -> tuple[dict[str, tuple], dict[str, str]]:
    """What needs no network and no registry, checked first: every archive read and checked in full, and every image
    of your own present in this machine's Docker. (path -> (archive index, path) it loads from, path -> docker
    image)."""
    from kslab.model.image_sources import DOCKER_PREFIX
    from kslab.steps import archives, crane
    in_archive: dict[str, tuple] = {}
    for archive in archive_files:
        index = archives.verify(archive)
        for path in wanted:
            if path in index.images and path not in in_archive and not wanted[path].override:
                in_archive[path] = (index, path)
    from_docker = {path: wanted[path].candidates[0].removeprefix(DOCKER_PREFIX) for path in wanted
                   if wanted[path].candidates and wanted[path].candidates[0].startswith(DOCKER_PREFIX)}
    for path, image in from_docker.items():
        if not crane.docker_has(image):
            fail(f"image sources: {path} is overridden with {DOCKER_PREFIX}{image}, which this machine's Docker does "
                 "not have. Fix: build or pull it (docker images), or change kslab:imageOverrides")
    return in_archive, from_docker


def _fill_lab_registry(lab, lab_id: str, wanted: dict[str, LabImage], archive_files: list[str],
                       credentials: dict[str, tuple[str, str]]) -> dict:
    """The lab-images step's work, under the machine's lab registry lock; what each image became (for the output)."""
    from kslab.steps import archives, crane, lab_registry, lab_store, registry_auth, registry_check, scratch
    in_archive, from_docker = _before_anything(wanted, archive_files)
    running = lab_registry.is_running(lab_registry.container_state(lab))
    store = lab_store.LabStore(lab, lab_id, registry_auth.push_credentials(lab))
    ask = {path: wanted[path].candidates for path in wanted if path not in in_archive and path not in from_docker}
    found = lab_store.resolve(ask, registry_check.Checker(credentials=credentials), store if running else None)
    refusal = registry_check.report_sources(lab_store.as_asked(found), {p: wanted[p].clusters for p in wanted},
                                            archive_files)
    if refusal:
        fail("image sources: " + refusal)
    log(f"lab registry '{lab.name}' at {lab.local}: {lab_registry.ensure_running(lab)}")
    store = lab_store.LabStore(lab, lab_id, registry_auth.push_credentials(lab))
    digests: dict[str, str] = {}
    with scratch.private_dir("auth") as auth_dir:
        docker_config = crane.write_docker_config(auth_dir, {**credentials, **registry_auth.push_credentials(lab)})
        placer = lab_store.Placer(store, docker_config, log)
        for path, (index, image) in in_archive.items():
            archives.load_image(index, image, store.own(path), docker_config)
            placer.counts["pushed"] += 1
            log(f"loaded {path} from the archive {index.archive}")
        for path, image in from_docker.items():
            crane.push_from_docker(image, store.own(path), docker_config)
            placer.counts["pushed"] += 1
            log(f"pushed docker:{image} from this machine's Docker into the lab's {path}")
        with ThreadPoolExecutor(max_workers=PLACE_CONCURRENCY) as pool:  # crane copies wait on I/O, not the CPU
            list(pool.map(placer.place, found.values()))
        for path in wanted:
            digests[path] = store.digest(store.own(path))
    sources = {p: f"{i.how}:{i.source}" for p, i in found.items()} | {
        p: f"archive:{index.archive}" for p, (index, _) in in_archive.items()} | {
        p: f"docker:{image}" for p, image in from_docker.items()}
    return {"counts": placer.counts, "digests": digests, "from": sources}


def step_lab_images() -> None:
    """Every image of the lab's kind clusters into the lab's own repositories of the lab registry, exactly as this
    stack resolves it (kslab/steps/lab_store.py): an override, else the archives, else the first source that has it.
    What this machine already fetched from the same source with the same digest is not fetched again; a source that
    cannot be reached is stood in for by this machine's copy of what it served last. Every image is found, and every
    archive checked, before anything is copied or created: a refusal lists each one nothing has."""
    from kslab.steps import lab_registry
    from kslab.steps.errors import RegistryError
    asked = common.request(requests.LabImages)
    lab, wanted, archive_files = asked.registry, asked.images, asked.archives or []
    lab_id = asked.lab_id
    if lab_id is None:
        fail(f"internal: step lab-images: {names.ENV_LAB_ID} is not set")
    credentials = requests.LabImages.credential_pairs(asked.credentials)
    started = time.monotonic()
    try:
        with lab_registry.machine_lock(lab, log):
            done = _fill_lab_registry(lab, lab_id, wanted, archive_files, credentials)
    except RegistryError as error:
        fail(f"lab registry: {error}")
    counts = done["counts"]
    log(f"lab registry: {len(wanted)} images for lab {lab_id}: {counts['fetched']} fetched from the sources, "
        f"{counts['pushed']} pushed from archives or Docker, {counts['linked']} linked into the lab's own "
        f"repositories, {counts['unchanged']} already there, in {time.monotonic() - started:.1f}s")
    print(json.dumps({"registry": lab.local, "lab": lab_id, "images": len(wanted), **done}))


def step_lab_images_read() -> None:
    """Refresh: the lab images step counts as gone (and the next up fills the lab's repositories again) when the lab
    registry is not there, the lab's repositories lack an image, or an image of your own is to be pushed again (it
    may be rebuilt)."""
    from kslab.steps import lab_registry, lab_store, registry_auth
    from kslab.steps.errors import RegistryError
    asked = common.request(requests.LabImages)
    lab, wanted, lab_id = asked.registry, asked.images, asked.lab_id
    try:
        running = lab_registry.is_running(lab_registry.container_state(lab)) and lab_registry.is_running(
            lab_registry.container_state(lab, lab.push_container))
    except RegistryError as error:
        fail(f"lab registry: {error}")
    if not lab_id or not running or any(entry.override for entry in wanted.values()):
        sys.exit(names.GONE_EXIT)  # a step of an earlier kslab (no lab of its own) is filled again too
    store = lab_store.LabStore(lab, lab_id, registry_auth.push_credentials(lab))
    digests = {path: store.digest(store.own(path)) for path in wanted}
    if not all(digests.values()):
        sys.exit(names.GONE_EXIT)
    print(json.dumps({"registry": lab.local, "lab": lab_id, "images": len(wanted), "counts": {}, "digests": digests,
                      "from": {}}))
