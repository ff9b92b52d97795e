"""Image archives: every planned image in one file, for a lab on a machine with no network.

An archive is a tar of kslab's own layout, made of well-known parts: `kslab-images.json` (which image is in which
member, with the member's sha256 and size, and the platform) and, per image, the docker-style tarball `crane pull`
writes (this machine's platform only). Loading pushes a member into the lab registry with `crane push`. Nothing
here speaks the registry protocol itself.

An archive is trusted only once it is read in full: `verify` checks the index, every member it names, the platform
and every digest, before the lab registry or anything else is created; `load` checks the digest of what it extracts
again (the file may change in between). An archive written before digests were recorded (format 1) is refused with
its fix: save it again.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO

from kslab.steps.crane import crane, crane_platform
from kslab.steps.lab_registry import RegistryError

INDEX = "kslab-images.json"
FORMAT = 2  # 1: no digests or sizes (refused: save it again)
# No image kslab plans comes near this; a bigger member is a broken or hostile archive, not an image.
MAX_MEMBER_BYTES = 16 * 2**30
MAX_INDEX_BYTES = 4 * 2**20
SAVE_AGAIN = "Fix: save it again with `make images-save STACK=<name> OUT=<file>` on a machine that reaches the sources"
_MEMBER = re.compile(r"^images/[A-Za-z0-9][A-Za-z0-9._-]*\.tar$")
_IMAGE = re.compile(r"^[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)+:[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ArchivedImage:
    member: str  # images/NNN.tar
    digest: str  # sha256:<hex> of the member file, recorded at save
    size: int  # bytes of the member file, recorded at save


@dataclass(frozen=True)
class ArchiveIndex:
    archive: str  # the archive's path, as opened
    platform: str  # e.g. linux/amd64
    images: Mapping[str, ArchivedImage]  # `namespace/name:tag` -> its member


def _refuse(archive: str, what: str, fix: str = SAVE_AGAIN, image: str | None = None) -> RegistryError:
    about = f" (image {image})" if image else ""
    return RegistryError(f"the image archive {archive}{about} {what}. {fix}")


def _why(error: Exception) -> str:
    if isinstance(error, tarfile.ReadError):
        return "it is not a tar file, or it is damaged"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error).splitlines()[0][:200]


def _read_doc(archive: str, tar: tarfile.TarFile) -> object:
    first = tar.next()
    if first is None or first.name != INDEX:
        raise _refuse(archive, f"is not a kslab image archive (no {INDEX} first)",
                      "Fix: name a file `make images-save` wrote")
    content = tar.extractfile(first) if first.isfile() and first.size <= MAX_INDEX_BYTES else None
    if content is None:
        raise _refuse(archive, f"has an index {INDEX} that is not a file of at most {MAX_INDEX_BYTES} bytes")
    try:
        return json.load(content)
    except ValueError as error:
        raise _refuse(archive, f"has an index that is not JSON ({error})") from None


def _entry(archive: str, image: object, entry: object) -> ArchivedImage:
    if not isinstance(image, str) or not _IMAGE.match(image):
        raise _refuse(archive, f"names {str(image)[:80]!r}, which is not an image namespace/name:tag")
    if not isinstance(entry, dict):
        raise _refuse(archive, f"has an index entry that is {type(entry).__name__}, not a mapping", image=image)
    member, digest, size = entry.get("member"), entry.get("digest"), entry.get("size")
    if not isinstance(member, str):
        found = "no member" if member is None else f"a member of type {type(member).__name__}"
        raise _refuse(archive, f"has {found} in its index entry", image=image)
    if not _MEMBER.match(member):
        raise _refuse(archive, f"names the member {member[:80]!r}, which is not a file under images/ (the index and "
                      "anything else are never loaded)", image=image)
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise _refuse(archive, "records no sha256 digest of its member (an archive saved before kslab recorded "
                      "digests, or an edited index)", image=image)
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= MAX_MEMBER_BYTES:
        raise _refuse(archive, f"records the size {str(size)[:30]}, not a size from 1 byte to {MAX_MEMBER_BYTES} "
                      "bytes", image=image)
    return ArchivedImage(member, digest, size)


def index_of(archive: str) -> ArchiveIndex:
    """The archive's index, each entry checked (its image, member, digest, size) and its platform compared with
    this machine's; the members themselves are not read (`verify` does; `make images` shows this index).
    RegistryError naming the archive, the image and what is wrong, with the fix."""
    try:
        with tarfile.open(archive) as tar:
            doc = _read_doc(archive, tar)
    except (OSError, tarfile.TarError) as error:
        raise _refuse(archive, f"cannot be read ({_why(error)})", "Fix: name a file `make images-save` wrote") from None
    if not isinstance(doc, dict) or doc.get("format") not in (1, FORMAT) or not isinstance(doc.get("images"), dict):
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise _refuse(archive, f"has an index kslab does not know (format {str(found)[:20]!r})")
    if doc["format"] == 1:
        raise _refuse(archive, "was saved by an older kslab, which recorded no digests to check it by")
    if doc.get("platform") != crane_platform():
        raise _refuse(archive, f"holds images for {str(doc.get('platform'))[:40]!r}, and this machine runs "
                      f"{crane_platform()}", f"Fix: save it on a {crane_platform()} machine")
    images = {image: _entry(archive, image, entry) for image, entry in doc["images"].items()}
    members = [entry.member for entry in images.values()]
    if len(set(members)) != len(members):
        twice = next(m for m in members if members.count(m) > 1)
        raise _refuse(archive, f"names the member {twice} for more than one image")
    return ArchiveIndex(archive, doc["platform"], images)


def _sha256(source: IO[bytes], bound: int, sink: IO[bytes] | None = None) -> tuple[str, int]:
    """The sha256 and the length of a stream, read up to one byte past `bound` (and copied into `sink`)."""
    digest, length = hashlib.sha256(), 0
    while length <= bound and (chunk := source.read(min(_CHUNK, bound + 1 - length))):
        digest.update(chunk)
        length += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return f"sha256:{digest.hexdigest()}", length


def _missing(index: ArchiveIndex, image: str) -> RegistryError:
    return _refuse(index.archive, f"has no member {index.images[image].member}, which its index names", image=image)


def _check_member(index: ArchiveIndex, image: str, member: tarfile.TarInfo,
                  tar: tarfile.TarFile, sink: IO[bytes] | None = None) -> None:
    entry = index.images[image]
    if not member.isfile():
        raise _refuse(index.archive, f"has a member {entry.member} that is not a plain file", image=image)
    if member.size != entry.size:
        raise _refuse(index.archive, f"has a member {entry.member} of {member.size} bytes, and its index records "
                      f"{entry.size}", image=image)
    source = tar.extractfile(member)
    if source is None:
        raise _refuse(index.archive, f"has a member {entry.member} that cannot be read", image=image)
    digest, length = _sha256(source, entry.size, sink)
    if length != entry.size or digest != entry.digest:
        raise _refuse(index.archive, f"has a member {entry.member} whose content is not what was saved "
                      f"({digest[:19]}..., {length} bytes; saved {entry.digest[:19]}..., {entry.size} bytes)",
                      image=image)


def verify(archive: str) -> ArchiveIndex:
    """The archive read and checked in full: its index (read_index), and every member it names present once, a
    plain file of the recorded size, with the recorded sha256. RegistryError naming the archive, the image and
    what is wrong, with the fix; nothing is written anywhere."""
    index = index_of(archive)
    by_member = {entry.member: image for image, entry in index.images.items()}
    seen: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.name in seen:
                    raise _refuse(archive, f"holds {member.name} twice", image=by_member.get(member.name))
                seen[member.name] = member
                if member.name in by_member:
                    _check_member(index, by_member[member.name], member, tar)
    except (OSError, tarfile.TarError) as error:
        raise _refuse(archive, f"cannot be read in full ({_why(error)})") from None
    for name, image in by_member.items():
        if name not in seen:
            raise _missing(index, image)
    return index


def check_out(out: str) -> str:
    """The folder the archive `out` will be written in; RegistryError with the fix when it cannot be."""
    directory = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(directory):
        raise RegistryError(f"cannot write {out}: the folder {directory} does not exist. Fix: create it (mkdir -p "
                            f"{directory}), or name a file in a folder that exists")
    if os.path.isdir(out):
        raise RegistryError(f"cannot write {out}: it is a folder. Fix: name a file, e.g. {out.rstrip('/')}/lab.tar")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise RegistryError(f"cannot write {out}: the folder {directory} is not writable by you. Fix: name a file "
                            "in a folder of yours")
    return directory


def save(images: dict[str, str], out: str, docker_config: str | None = None,
         progress: Callable[[str], None] = print) -> int:
    """Write every image (`namespace/name:tag` -> where to fetch it) into the archive `out` (via a temp file and
    a rename, so a failed save leaves no half archive); its size in bytes."""
    directory = check_out(out)
    with tempfile.TemporaryDirectory(prefix="kslab-save-", dir=directory) as scratch:
        held: dict[str, dict[str, object]] = {}
        os.makedirs(os.path.join(scratch, "images"))
        for n, (path, source) in enumerate(sorted(images.items())):
            member = f"images/{n:03d}.tar"
            crane(f"saving {source}", "pull", "--platform", crane_platform(), source, os.path.join(scratch, member),
                  docker_config=docker_config)
            with open(os.path.join(scratch, member), "rb") as fh:
                digest, size = _sha256(fh, MAX_MEMBER_BYTES)
            if size > MAX_MEMBER_BYTES:
                raise RegistryError(f"{source} is larger than {MAX_MEMBER_BYTES} bytes, which kslab does not archive")
            held[path] = {"member": member, "digest": digest, "size": size, "from": source}
            progress(f"saved {path} (from {source})")
        with open(os.path.join(scratch, INDEX), "w") as fh:
            json.dump({"format": FORMAT, "platform": crane_platform(), "images": held}, fh, indent=1)
        partial = os.path.join(scratch, "archive.tar")
        with tarfile.open(partial, "w") as tar:
            tar.add(os.path.join(scratch, INDEX), arcname=INDEX)  # first, so reading the index reads little
            for entry in held.values():
                tar.add(os.path.join(scratch, str(entry["member"])), arcname=str(entry["member"]))
        os.replace(partial, out)
    return os.path.getsize(out)


def load_image(index: ArchiveIndex, image: str, destination: str, docker_config: str | None = None) -> None:
    """Push one image of a verified archive into the lab registry as `destination`: its member is extracted (no
    more than its recorded size) and its digest checked again before `crane push`."""
    if image not in index.images:
        raise _refuse(index.archive, "does not hold this image", "Fix: load it from a source or another archive",
                      image=image)
    with tempfile.TemporaryDirectory(prefix="kslab-load-") as scratch:
        target = os.path.join(scratch, "image.tar")
        try:
            with tarfile.open(index.archive) as tar, open(target, "wb") as sink:
                member = next((m for m in tar if m.name == index.images[image].member), None)
                if member is None:
                    raise _missing(index, image)
                _check_member(index, image, member, tar, sink)
        except (OSError, tarfile.TarError) as error:
            raise _refuse(index.archive, f"cannot be read ({_why(error)})", image=image) from None
        crane(f"loading {image} from {index.archive}", "push", target, destination, docker_config=docker_config)
