"""Image archives: every planned image in one file, for a lab on a machine with no network.

An archive is a tar of kslab's own layout, made of well-known parts: `kslab-images.json` (which image is in which
member) and, per image, the docker-style tarball `crane pull` writes (this machine's platform only). Loading
pushes a member into the lab registry with `crane push`. Nothing here speaks the registry protocol itself.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import tempfile

from kslab.steps.lab_registry import RegistryError, crane, crane_platform

INDEX = "kslab-images.json"
FORMAT = 1


def save(images: dict[str, str], out: str, docker_config: str | None = None, progress=print) -> int:
    """Write every image (`namespace/name:tag` -> where to fetch it) into the archive `out` (via a temp file and
    a rename, so a failed save leaves no half archive); its size in bytes."""
    directory = os.path.dirname(os.path.abspath(out))
    with tempfile.TemporaryDirectory(prefix="kslab-save-", dir=directory) as scratch:
        held: dict[str, dict[str, str]] = {}
        index = {"format": FORMAT, "platform": crane_platform(), "images": held}
        for n, (path, source) in enumerate(sorted(images.items())):
            member = f"images/{n:03d}.tar"
            os.makedirs(os.path.join(scratch, "images"), exist_ok=True)
            crane(f"saving {source}", "pull", "--platform", crane_platform(), source, os.path.join(scratch, member),
                  docker_config=docker_config)
            held[path] = {"member": member, "from": source}
            progress(f"saved {path} (from {source})")
        with open(os.path.join(scratch, INDEX), "w") as fh:
            json.dump(index, fh, indent=1)
        partial = os.path.join(scratch, "archive.tar")
        with tarfile.open(partial, "w") as tar:
            tar.add(os.path.join(scratch, INDEX), arcname=INDEX)  # first, so reading the index reads little
            for entry in held.values():
                tar.add(os.path.join(scratch, entry["member"]), arcname=entry["member"])
        os.replace(partial, out)
    return os.path.getsize(out)


def read_index(archive: str) -> dict[str, str]:
    """`namespace/name:tag` -> member of an archive; RegistryError when it is not one of kslab's."""
    try:
        with tarfile.open(archive) as tar:
            member = tar.next()
            if member is None or member.name != INDEX:
                raise RegistryError(f"{archive} is not a kslab image archive (no {INDEX} first); make one with "
                                    "`make images-save`")
            content = tar.extractfile(member)
            if content is None:
                raise RegistryError(f"{archive} is not a kslab image archive ({INDEX} is not a file)")
            doc = json.load(content)
    except (OSError, tarfile.TarError, ValueError) as error:
        raise RegistryError(f"cannot read the image archive {archive}: {error}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("images"), dict):
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise RegistryError(f"{archive} has an index kslab does not know (format {found!r})")
    return {path: entry["member"] for path, entry in doc["images"].items()}


def load(archive: str, member: str, destination: str) -> None:
    """Push one archived image into the lab registry as `destination`."""
    with tempfile.TemporaryDirectory(prefix="kslab-load-") as scratch:
        try:
            with tarfile.open(archive) as tar:
                source = tar.extractfile(member)
                if source is None:
                    raise RegistryError(f"{archive} has no member {member}")
                target = os.path.join(scratch, "image.tar")
                with open(target, "wb") as fh:
                    shutil.copyfileobj(source, fh)
        except (OSError, tarfile.TarError, KeyError) as error:
            raise RegistryError(f"cannot read {member} of the image archive {archive}: {error}") from None
        crane(f"loading {member} of {archive}", "push", target, destination)
