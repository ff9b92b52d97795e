"""Two labs on one machine share the lab registry and keep to their own images (#25 item 2), on real kind.

Lab A (kind-standalone) takes every image from the played source. Lab B (kind-lab-b) overrides ks-installer with a
developer's build (another image of the same program, so its pod runs too). Each lab's installer pod runs the digest
its own stack resolves; the images both want, with the same digest, are fetched from the source once; B dropping its
override runs the source's image again without fetching anything.
"""
import os
import subprocess

import pytest
import yaml

from kslab.cli.registry import by_lab
from tests.support.kind import KindLab
from tests.support.played_sources import PlayedSources
from tests.support.registry import lab_images_counts

pytestmark = [pytest.mark.engine, pytest.mark.kind]

INSTALLER = "kubesphere/ks-installer:v3.4.1"


def _ok(proc, what):
    assert proc.returncode == 0, f"{what} failed:\n{(proc.stdout + proc.stderr)[-6000:]}"
    return proc.stdout + proc.stderr


def _installer_digest(sources, lab) -> str:
    pod = sources._installer_running(lab, lab.names[0])
    image_id = pod.status.container_statuses[0].image_id
    assert image_id.startswith(f"{sources.root(lab)}/kubesphere/ks-installer@sha256:"), image_id
    return image_id.rsplit("@", 1)[1]


def _digest(sources, ref: str) -> str:
    out = subprocess.run(["crane", "digest", "--insecure", ref], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_two_labs_run_their_own_images_and_share_what_is_the_same(tmp_path, monkeypatch):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    state = str(tmp_path / "state")  # one user's kslab state: the lab registry's push password, for both labs
    monkeypatch.setenv("XDG_STATE_HOME", state)
    a = KindLab(tmp_path / "a", "kind-standalone", state_home=state)
    b = KindLab(tmp_path / "b", "kind-lab-b", state_home=state)
    sources = PlayedSources(a, tmp_path)
    try:
        sources.point(b)
        dev = f"{sources.source.address}/dev/ks-installer:dev"
        sources.source.push_runnable(dev, sources.program)
        sources.source._crane("mutate", dev, "--label", "io.kslab.test=a-developers-build", "-t", dev)
        b.set_config("kslab:imageOverrides", {"kubesphere/ks-installer": dev})
        official = _digest(sources, f"{sources.source.address}/{INSTALLER}")
        own_build = _digest(sources, dev)
        assert official != own_build
        sources.source.mark()

        first = lab_images_counts(_ok(a.up(), "up of lab A"))
        assert first["fetched"] == len(sources.paths)
        second = lab_images_counts(_ok(b.up(), "up of lab B"))
        assert second["fetched"] == 1, "lab B fetches only its own build; the rest is this machine's copy"
        assert second["linked"] == len(sources.paths)
        pulls = sources.pulls()
        shared = {p.rsplit(":", 1)[0] for p in sources.paths}
        assert {r: pulls[r] for r in shared} == {r: 1 for r in shared}, \
            "each image both labs want, with the same digest, is fetched from the source once"
        assert pulls["dev/ks-installer"] == 1

        assert _installer_digest(sources, a) == official, "lab A runs the source's installer"
        assert _installer_digest(sources, b) == own_build, "lab B runs its developer's build"
        groups = {group: dict(items) for group, items in by_lab(sources.registry).items()}
        assert groups[f"lab {first['lab']}"][INSTALLER] == official
        assert groups[f"lab {second['lab']}"][INSTALLER] == own_build
        assert _installer_digest(sources, a) == official, "lab B's up changed nothing of lab A's"

        # B drops its override: the source's image again, linked from this machine's copy, nothing fetched.
        _drop(b, "kslab:imageOverrides")
        sources.source.mark()
        again = lab_images_counts(_ok(b.up(), "up of lab B without the override"))
        assert again["fetched"] == 0 and not sources.pulls(), sources.pulls()
        groups = {group: dict(items) for group, items in by_lab(sources.registry).items()}
        assert groups[f"lab {second['lab']}"][INSTALLER] == official
        _ok(a.destroy(), "destroy of lab A")
        _ok(b.destroy(), "destroy of lab B")
    finally:
        sources.close()
        a.close()
        b.close()


def _drop(lab, key: str) -> None:
    """Remove a setting from the lab's stack file, as a user deleting the line would."""
    lab.config.pop(key, None)
    path = os.path.join(lab.project.dir, "stacks", f"Pulumi.{lab.stack}.yaml")
    with open(path) as fh:
        doc = yaml.safe_load(fh)
    doc["config"].pop(key, None)
    with open(path, "w") as fh:
        yaml.safe_dump(doc, fh, sort_keys=False)
