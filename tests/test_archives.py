"""Image archives (make images-save, kslab:imageArchives): an archive is read and checked in full (its index, every
member, the platform, every digest) before anything is created, and every refusal names the archive, the image,
what is wrong and the fix, never a Python exception. crane is played here: save and load are checked by what they
hand it; the real crane is the engine tier's (tests/test_image_check_engine.py)."""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile

import pytest

from kslab.steps import archives
from kslab.steps.lab_registry import RegistryError

PLATFORM = "linux/amd64"
IMAGES = {"kubesphere/ks-apiserver:v3.4.1": b"apiserver layers", "kubesphere/ks-console:v3.4.1": b"console layers",
          "prom/prometheus:v2.39.1": b"prometheus layers"}


@pytest.fixture(autouse=True)
def _this_machine(monkeypatch):
    monkeypatch.setattr(archives, "crane_platform", lambda: PLATFORM)


def _sha(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _index(images: dict[str, bytes] = IMAGES) -> dict:
    return {"format": archives.FORMAT, "platform": PLATFORM, "images": {
        image: {"member": f"images/{n:03d}.tar", "digest": _sha(data), "size": len(data), "from": f"h.corp/{image}"}
        for n, (image, data) in enumerate(sorted(images.items()))}}


def _write(path, index: object, members: dict[str, bytes], index_first: bool = True) -> str:
    def add(tar, name, data):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with tarfile.open(path, "w") as tar:
        if index_first:
            add(tar, archives.INDEX, json.dumps(index).encode())
        for name, data in members.items():
            add(tar, name, data)
        if not index_first:
            add(tar, archives.INDEX, json.dumps(index).encode())
    return str(path)


def _archive(tmp_path, change=None, members: dict[str, bytes] | None = None) -> str:
    index = _index()
    if members is None:
        members = {index["images"][image]["member"]: data for image, data in IMAGES.items()}
    if change:
        change(index, members)
    return _write(tmp_path / "lab.tar", index, members)


def test_a_sound_archive_is_verified_with_each_images_member_digest_and_size(tmp_path):
    index = archives.verify(_archive(tmp_path))
    assert index.platform == PLATFORM
    assert dict(index.images) == {image: archives.ArchivedImage(f"images/{n:03d}.tar", _sha(data), len(data))
                                  for n, (image, data) in enumerate(sorted(IMAGES.items()))}


def _entry(image):
    return lambda index, members: index["images"][image]


CONSOLE = "kubesphere/ks-console:v3.4.1"


def _set(field, value, image=CONSOLE):
    return lambda index, members: index["images"][image].__setitem__(field, value)


def _drop_member(image=CONSOLE):
    return lambda index, members: members.pop(index["images"][image]["member"])


# (id, change of a sound archive, what the refusal says, the image it names (None: the archive as a whole))
BROKEN = [
    ("string-entry", lambda i, m: i["images"].__setitem__(CONSOLE, "images/001.tar"), "is str, not a mapping", CONSOLE),
    ("no-member", lambda i, m: i["images"][CONSOLE].pop("member"), "has no member in its index entry", CONSOLE),
    ("int-member", _set("member", 1), "has a member of type int", CONSOLE),
    ("list-member", _set("member", ["images/001.tar"]), "has a member of type list", CONSOLE),
    ("member-is-the-index", _set("member", archives.INDEX), "not a file under images/", CONSOLE),
    ("member-outside-images", _set("member", "../etc/passwd.tar"), "not a file under images/", CONSOLE),
    ("member-in-another-folder", _set("member", "other/001.tar"), "not a file under images/", CONSOLE),
    ("member-named-twice", _set("member", "images/000.tar"), "names the member images/000.tar for more than one",
     None),
    ("member-missing", _drop_member(), "has no member images/001.tar, which its index names", CONSOLE),
    ("member-not-a-file", lambda i, m: None, "is not a plain file", CONSOLE),  # see _as_folder below
    ("other-platform", lambda i, m: i.__setitem__("platform", "linux/s390x"),
     "holds images for 'linux/s390x', and this machine runs linux/amd64", None),
    ("no-platform", lambda i, m: i.pop("platform"), "holds images for 'None'", None),
    ("digest-mismatch", lambda i, m: m.__setitem__("images/001.tar", b"console layerz"),
     "whose content is not what was saved", CONSOLE),
    ("no-digest", lambda i, m: i["images"][CONSOLE].pop("digest"), "records no sha256 digest", CONSOLE),
    ("size-absurd", _set("size", 2**60), "not a size from 1 byte to", CONSOLE),
    ("size-not-a-number", _set("size", "14"), "not a size from 1 byte to", CONSOLE),
    ("member-larger-than-recorded", lambda i, m: m.__setitem__("images/001.tar", b"console layers" + b"x" * 4096),
     "of 4110 bytes, and its index records 14", CONSOLE),
    ("image-not-a-name", lambda i, m: i["images"].__setitem__("Not An Image", i["images"].pop(CONSOLE)),
     "names 'Not An Image', which is not an image namespace/name:tag", None),
    ("images-a-list", lambda i, m: i.__setitem__("images", []), "has an index kslab does not know", None),
    ("saved-before-digests", lambda i, m: i.__setitem__("format", 1), "was saved by an older kslab", None),
]


@pytest.mark.parametrize("change, says, image", [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_a_broken_archive_is_refused_naming_the_archive_the_image_and_the_fix(tmp_path, change, says, image):
    archive = _archive(tmp_path, change)
    if "not a plain file" in says:
        _as_folder(archive, "images/001.tar")
    with pytest.raises(RegistryError) as info:
        archives.verify(archive)
    message = str(info.value)
    assert message.startswith(f"the image archive {archive}"), message
    assert says in message
    assert (f"(image {image})" in message) if image else "(image " not in message
    assert "Fix: " in message


def _as_folder(archive: str, name: str) -> None:
    """Rewrite the archive with `name` as a folder entry (a tar may hold anything)."""
    with tarfile.open(archive) as tar:
        entries = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar]
    with tarfile.open(archive, "w") as tar:
        for member, data in entries:
            if member.name == name:
                folder = tarfile.TarInfo(name)
                folder.type = tarfile.DIRTYPE
                tar.addfile(folder)
            else:
                tar.addfile(member, io.BytesIO(data) if data is not None else None)


def test_an_index_naming_a_missing_tarball_names_the_image_before_anything_is_read_further(tmp_path):
    """The new user's case: the index names images/002.tar, which is not in the archive."""
    archive = _archive(tmp_path, _drop_member("prom/prometheus:v2.39.1"))
    with pytest.raises(RegistryError, match=r"\(image prom/prometheus:v2\.39\.1\) has no member images/002\.tar"):
        archives.verify(archive)


@pytest.mark.parametrize("make, says", [
    (lambda p: p.write_bytes(b"not a tar at all"), "cannot be read"),
    (lambda p: _write(p, _index(), {"images/000.tar": b"x"}, index_first=False), f"no {archives.INDEX} first"),
    (lambda p: _write(p, ["not", "a", "mapping"], {}), "has an index kslab does not know (format 'list')"),
    (lambda p: p.mkdir(), "cannot be read"),
])
def test_a_file_that_is_not_an_archive_is_named(tmp_path, make, says):
    path = tmp_path / "lab.tar"
    make(path)
    with pytest.raises(RegistryError, match="Fix: ") as info:
        archives.verify(str(path))
    assert says in str(info.value) and str(path) in str(info.value)


def test_a_member_held_twice_is_refused(tmp_path):
    index = _index()
    members = {entry["member"]: IMAGES[image] for image, entry in index["images"].items()}
    path = _write(tmp_path / "lab.tar", index, members)
    with tarfile.open(path, "a") as tar:
        info = tarfile.TarInfo("images/001.tar")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"other"))
    with pytest.raises(RegistryError, match=r"holds images/001\.tar twice"):
        archives.verify(path)


@pytest.fixture
def crane(monkeypatch):
    """crane played: `pull` writes the image's bytes, `push` records what it was handed."""
    pushed: dict[str, bytes] = {}

    def play(what, command, *args, docker_config=None):
        if command == "pull":
            source, target = args[-2], args[-1]
            with open(target, "wb") as fh:
                fh.write(IMAGES[source.removeprefix("harbor.corp/")])
        else:
            with open(args[0], "rb") as fh:
                pushed[args[1]] = fh.read()
    monkeypatch.setattr(archives, "crane", play)
    return pushed


def test_save_records_each_members_digest_and_size_and_load_pushes_it_checked(tmp_path, crane):
    out = str(tmp_path / "lab.tar")
    archives.save({image: f"harbor.corp/{image}" for image in IMAGES}, out, progress=lambda line: None)
    index = archives.verify(out)
    assert {image: (e.digest, e.size) for image, e in index.images.items()} == {
        image: (_sha(data), len(data)) for image, data in IMAGES.items()}
    archives.load_image(index, CONSOLE, f"127.0.0.1:5100/{CONSOLE}")
    assert crane == {f"127.0.0.1:5100/{CONSOLE}": IMAGES[CONSOLE]}


def test_load_checks_the_digest_again_and_pushes_nothing_changed_since(tmp_path, crane):
    archive = _archive(tmp_path)
    index = archives.verify(archive)
    _archive(tmp_path, lambda i, m: m.__setitem__("images/001.tar", b"console layerz"))  # replaced after the check
    with pytest.raises(RegistryError, match=r"\(image kubesphere/ks-console:v3\.4\.1\) has a member images/001\.tar "
                                            "whose content is not what was saved"):
        archives.load_image(index, CONSOLE, f"127.0.0.1:5100/{CONSOLE}")
    assert crane == {}


@pytest.mark.parametrize("out, says", [("no/such/dir/x.tar", "the folder {dir} does not exist"),
                                       ("", "it is a folder")])
def test_save_into_a_folder_that_is_not_there_names_it_and_writes_nothing(tmp_path, crane, out, says):
    target = str(tmp_path / out) if out else str(tmp_path)
    with pytest.raises(RegistryError) as info:
        archives.save({CONSOLE: f"harbor.corp/{CONSOLE}"}, target, progress=lambda line: None)
    assert says.format(dir=os.path.dirname(target)) in str(info.value) and "Fix: " in str(info.value)
    assert os.listdir(tmp_path) == []  # nothing written


def _project(tmp_path, config: str) -> str:
    (tmp_path / "Pulumi.yaml").write_text("name: kslab\nstackConfigDir: stacks\n")
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.t.yaml").write_text("config:\n  kslab:clusters: [{name: host}]\n" + config)
    return str(tmp_path)


def test_images_save_into_a_folder_that_is_not_there_is_said_before_any_source_is_asked(tmp_path, capsys,
                                                                                       monkeypatch):
    """make images-save OUT=/no/such/dir/x.tar (#25 item 12): the folder named, nothing asked, no traceback."""
    from kslab.cli import images as cli
    from kslab.steps import registry_check
    asked = []
    monkeypatch.setattr(registry_check, "locate", lambda wanted, **kw: asked.append(wanted) or {
        ref: [(candidates[0], registry_check.Answer(registry_check.FOUND, "played"))]
        for ref, candidates in wanted.items()})
    project = _project(tmp_path, "  kslab:imageSources: [harbor.corp]\n")
    out = str(tmp_path / "no" / "such" / "dir" / "x.tar")
    assert cli.main(["--stack", "t", "--project-dir", project, "--save", out]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"kslab: nothing was saved: cannot write {out}: the folder {os.path.dirname(out)} does not "
                          "exist. Fix: create it"), err
    assert asked == [] and not os.path.exists(tmp_path / "no")


def test_make_images_says_which_archive_fills_each_image(tmp_path, capsys):
    """With archives only, `make images` named no source at all; now each image's archive, and an archive it
    cannot read is a line of its own (#25 item 10)."""
    from kslab.cli import images as cli
    held = {image: image.encode() for image in ("kubesphere/ks-installer:v3.4.1", "kubesphere/ks-apiserver:v3.4.1")}
    _write(tmp_path / "lab.tar", _index(held), {f"images/{n:03d}.tar": data
                                                for n, (_, data) in enumerate(sorted(held.items()))})
    (tmp_path / "broken.tar").write_bytes(b"not an archive")
    project = _project(tmp_path, "  kslab:imageArchives: [broken.tar, lab.tar]\n")
    assert cli.main(["--stack", "t", "--project-dir", project]) == 0
    out = capsys.readouterr().out
    assert ("each image resolved by this stack from the first of:\n  archive broken.tar: cannot be read: the image "
            "archive "
            f"{project}/broken.tar cannot be read (it is not a tar file, or it is damaged). Fix: name a file `make "
            "images-save` wrote\n  archive lab.tar: 2 images (linux/amd64)\n") in out
    lines = out.splitlines()
    said = {line.split()[0]: lines[n + 1].strip() for n, line in enumerate(lines)
            if line.startswith("  kslab-registry:5000/")}
    archived = {ref for ref in said if any(ref.endswith(f"/{image}") for image in held)}
    assert len(said) > 10 and len(archived) == len(held)
    assert {said[ref] for ref in archived} == {"from: the archive lab.tar"}
    assert {said[ref] for ref in said if ref not in archived} == {"from: nowhere: no source, and no archive holds it"}
