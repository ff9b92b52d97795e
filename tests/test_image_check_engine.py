"""The image check in `pulumi up`, on the real engine, against a source registry played on loopback (CNCF
distribution built here, stand-in images under the plan's names): a gap refuses the lab before any cluster
exists and names exactly that image and the registry's answer; with the gap filled the check passes."""
import json
import os
import re
import subprocess

import pytest
import yaml

from kslab.model import images
from tests.support.engine import make_project, policy_pack
from tests.support.registry import SourceRegistry, lab_images_counts, lab_registry_images, remove_lab_registry

pytestmark = pytest.mark.engine
STACK = "imgcheck"
CLUSTER = "kt-imgcheck"  # a kind cluster that must never be created


@pytest.fixture
def source(tmp_path):
    registry = SourceRegistry(str(tmp_path / "source"))
    yield registry
    registry.close()


def _write_stack(project, registry: str) -> None:
    doc = {"config": {"kslab:registry": registry, "kslab:kubesphereVersion": "v3.4.1",
                      "kslab:nodeImage": "kindest/node:v1.25.16",
                      "kslab:clusters": [{"name": CLUSTER, "role": "host", "consoleHostPort": 31899}]}}
    with open(os.path.join(project.dir, "stacks", f"Pulumi.{STACK}.yaml"), "w") as fh:
        yaml.safe_dump(doc, fh)


def _plan(registry: str) -> list[str]:
    return [i.ref for i in images.plan("v3.4.1", "host", "v1.25.16", images.Naming(registry))]


def _one_file_tar(body: bytes) -> bytes:
    import io
    import tarfile
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("own.txt")
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return buffer.getvalue()


def _kind_clusters() -> set[str]:
    try:
        out = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        return set()
    return set(out.stdout.split())


def test_a_missing_image_refuses_the_lab_before_any_cluster(tmp_path, source):
    plan = _plan(source.address)
    gap = f"{source.address}/kubesphere/tower:v0.2.1"
    for ref in plan:
        if ref != gap:
            source.push_stand_in(ref)
    source.mark()
    project = make_project(tmp_path)
    _write_stack(project, source.address)
    project.init(STACK)
    proc = project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK, "--policy-pack", policy_pack(),
                          timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "image check failed: 1 of 19 planned images cannot be found; no cluster was created" in out, out[-3000:]
    assert f"{gap} (for {CLUSTER}): {source.address} answered missing (404 MANIFEST_UNKNOWN)" in out
    assert "Traceback" not in out and "2025-07-31" not in out  # not Docker Hub's namespace: no withdrawal note
    # each problem once (#25 item 13): the error under the step, not again as progress under the stack
    # (Pulumi's progress lines repeat an error's first line; the list itself is in the diagnostics, once)
    assert out.count(f"{gap} (for {CLUSTER})") == 1, out
    assert "to kslab:imageSources (README 'Where the images come from')" in out
    resources = project.export(STACK)["deployment"].get("resources") or []
    assert not [r for r in resources if r["type"] == "kslab:steps:KindCluster"], "no kind step ran"
    assert CLUSTER not in _kind_clusters()
    # Asked with HEAD only; a GET only where the HEAD said 404 (to read the registry's error code).
    asked = source.manifest_requests()
    assert {m for m, _ in asked} <= {"HEAD", "GET"}
    assert [uri for m, uri in asked if m == "GET"] == ["/v2/kubesphere/tower/manifests/v0.2.1"]

    source.push_stand_in(gap)
    target = f"urn:pulumi:{STACK}::kslab::kslab:lab:Lab$kslab:steps:ImageCheck::image-check"
    project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK, "--target", target, timeout=600)
    # Only the check runs (the engine then stops at the cluster's provider, which is outside --target): it is
    # recorded as passed, with its result, and still no cluster exists.
    checks = [r for r in project.export(STACK)["deployment"].get("resources") or []
              if r["type"] == "kslab:steps:ImageCheck"]
    assert len(checks) == 1 and '"images": 19' in checks[0]["outputs"]["stdout"]
    assert CLUSTER not in _kind_clusters()


def test_docker_hub_kubesphere_is_refused_with_the_withdrawal(tmp_path):
    """The shipped host-member stack, no registry configured: refused at the image check, before any cluster,
    whatever Docker Hub answers (unreachable on a machine without the internet; 'denied' for kubesphere/*
    where it is reachable, while prom/* and the other upstreams may still be found)."""
    project = make_project(tmp_path)
    project.init("host-member")
    proc = project.pulumi("up", "--yes", "--skip-preview", "--stack", "host-member", "--policy-pack",
                          policy_pack(), timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(r"image check failed: 1[2-9] of 19 planned images cannot be found", out), out[-3000:]
    assert re.search(r"docker.io/kubesphere/ks-apiserver:v3.4.1 \(for host, member\): docker.io answered "
                     r"(unreachable|denied)", out), out[-3000:]
    assert "withdrew its open-source distribution on 2025-07-31 (kubesphere/kubesphere#6550)" in out
    # the fix names what the shipped stacks use, and the list shows once (#25 item 13)
    assert "Fix: add a registry that holds these images to kslab:imageSources (README 'Where the images come " \
        "from')" in out and "set kslab:registry to it (README" not in out
    # (Pulumi's progress lines repeat an error's first line; the list itself is in the diagnostics, once)
    assert out.count("docker.io/kubesphere/tower:v0.2.1 (for host)") == 1, out
    resources = project.export("host-member")["deployment"].get("resources") or []
    assert not [r for r in resources if r["type"] == "kslab:steps:KindCluster"]


def test_image_sources_refuse_a_gap_before_any_cluster_then_fill_the_lab_registry_once(tmp_path, source):
    """kslab:imageSources on the real engine: with one image in no source, the lab-images step refuses the lab
    naming it with each source's answer, before any cluster and before the lab registry exists; with the gap
    filled it creates the lab registry and copies every image once from the first source that has it."""
    from kslab.model.image_sources import LabRegistry
    from kslab.steps import lab_registry
    from tests.support.registry import free_port
    upstream = [i.ref for i in images.plan("v3.4.1", "host", "v1.25.16", images.Naming())]
    gap = "kubesphere/tower:v0.2.1"
    for path in upstream:
        if path != gap:
            source.push_stand_in(f"{source.address}/{path}")
    source.mark()
    registry = LabRegistry("kt-imgsrc-registry", free_port())
    project = make_project(tmp_path)
    doc = {"config": {"kslab:imageSources": [f"{source.address}/mirror", source.address],
                      "kslab:labRegistry": {"name": registry.name, "hostPort": registry.host_port},
                      "kslab:kubesphereVersion": "v3.4.1", "kslab:nodeImage": "kindest/node:v1.25.16",
                      "kslab:clusters": [{"name": CLUSTER, "role": "host", "consoleHostPort": 31899}]}}
    with open(os.path.join(project.dir, "stacks", f"Pulumi.{STACK}.yaml"), "w") as fh:
        yaml.safe_dump(doc, fh)
    project.init(STACK)
    try:
        proc = project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK, "--policy-pack", policy_pack(),
                              timeout=600)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "image sources: 1 of 19 planned images are in none of the image sources; no cluster was created" \
            in out, out[-3000:]
        assert f"{source.address}/mirror/tower:v0.2.1: missing (404 MANIFEST_UNKNOWN)" in out
        assert f"{source.address}/kubesphere/tower:v0.2.1: missing (404 MANIFEST_UNKNOWN)" in out
        assert "Traceback" not in out
        assert lab_registry.container_state(registry) is None, "no lab registry before every image is found"
        assert CLUSTER not in _kind_clusters()
        assert not [m for m, _ in source.manifest_requests() if m not in ("HEAD", "GET")]

        source.push_stand_in(f"{source.address}/{gap}")
        source.mark()
        target = f"urn:pulumi:{STACK}::kslab::kslab:lab:Lab$kslab:steps:LabImages::lab-images"
        filled = project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK, "--target", target, timeout=900)
        counts = lab_images_counts(filled.stdout + filled.stderr)
        assert (counts["fetched"], counts["linked"], counts["there"]) == (19, 19, 0), counts
        # (a GET under mirror/ is the check reading a 404's error code, not a copy); a copy fetches by digest
        copied = [uri for m, uri in source.manifest_requests() if m == "GET" and not uri.startswith("/v2/mirror/")]
        assert sorted(uri.split("/manifests/")[0] for uri in copied) == sorted(
            f"/v2/{p.rsplit(':', 1)[0]}" for p in upstream), \
            "each image copied once, from the second source (the first has none)"
        assert all("/manifests/sha256:" in uri for uri in copied), "copied by the digest the source answered"
        held = lab_registry_images(registry)
        mine = held[f"lab {counts['lab']}"]
        assert sorted(mine) == sorted(upstream), "the lab's own repositories hold every image"
        assert CLUSTER not in _kind_clusters()

        # An image of your own, from this machine's Docker, overrides the plan's entry, even one already held.
        own = "kslab-test/ks-controller-manager:dev"
        lab_registry.docker("import", "-c", "LABEL io.kslab.test=own-build", "-", own,
                             stdin=_one_file_tar(b"built here\n"))
        doc["config"]["kslab:imageOverrides"] = {"kubesphere/ks-controller-manager": f"docker:{own}"}
        with open(os.path.join(project.dir, "stacks", f"Pulumi.{STACK}.yaml"), "w") as fh:
            yaml.safe_dump(doc, fh)
        source.mark()
        proc = project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK, "--target", target, timeout=900)
        out = proc.stdout + proc.stderr
        counts = lab_images_counts(out)
        assert f"pushed docker:{own} from this machine's Docker" in out, out[-3000:]
        assert (counts["fetched"], counts["pushed"], counts["there"]) == (0, 1, 18), counts
        assert not [uri for m, uri in source.manifest_requests() if m == "GET" and not uri.startswith("/v2/mirror/")], \
            "nothing fetched again (a GET under mirror/ reads a 404's error code)"
        held = lab_registry_images(registry)
        kcm = "kubesphere/ks-controller-manager:v3.4.1"
        assert held[f"lab {counts['lab']}"][kcm] != mine[kcm], "the lab runs its own build now"
        copies = held["this machine's copies of the sources (fetched once, shared by digest)"]
        assert mine[kcm] in copies.values(), "the source's image is still this machine's copy, untouched"
    finally:
        lab_registry.docker("rmi", "kslab-test/ks-controller-manager:dev")
        remove_lab_registry(registry)


def test_an_archive_alone_fills_the_lab_registry_with_every_source_stopped(tmp_path, source):
    """make images-save writes every planned image into one file; a stack with only kslab:imageArchives then
    fills the lab registry from it, the source registry stopped (a lab with no network)."""
    import sys

    from kslab.model.image_sources import LabRegistry
    from kslab.steps import lab_registry
    from tests.support.registry import free_port
    upstream = [i.ref for i in images.plan("v3.4.1", "host", "v1.25.16", images.Naming())]
    for path in upstream:
        source.push_stand_in(f"{source.address}/{path}")
    registry = LabRegistry("kt-archive-registry", free_port())
    project = make_project(tmp_path)
    stack_file = os.path.join(project.dir, "stacks", f"Pulumi.{STACK}.yaml")
    doc = {"config": {"kslab:imageSources": [source.address],
                      "kslab:labRegistry": {"name": registry.name, "hostPort": registry.host_port},
                      "kslab:kubesphereVersion": "v3.4.1", "kslab:nodeImage": "kindest/node:v1.25.16",
                      "kslab:clusters": [{"name": CLUSTER, "role": "host", "consoleHostPort": 31899}]}}
    with open(stack_file, "w") as fh:
        yaml.safe_dump(doc, fh)
    archive = str(tmp_path / "lab-images.tar")
    saved = subprocess.run([sys.executable, "-m", "kslab.cli.images", "--stack", STACK, "--project-dir",
                            project.dir, "--save", archive], capture_output=True, text=True, timeout=900,
                           cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert saved.returncode == 0, saved.stderr[-3000:]
    assert f"wrote {archive}: 19 images" in saved.stdout
    source.close()
    del doc["config"]["kslab:imageSources"]
    doc["config"]["kslab:imageArchives"] = [archive]
    with open(stack_file, "w") as fh:
        yaml.safe_dump(doc, fh)
    project.init(STACK)
    try:
        target = f"urn:pulumi:{STACK}::kslab::kslab:lab:Lab$kslab:steps:LabImages::lab-images"
        parent = f"urn:pulumi:{STACK}::kslab::kslab:lab:Lab::lab"  # a first up: the component is made too
        # #25 item 10: an archive whose index names a tarball it lacks is refused before anything is created,
        # naming the archive and the image.
        broken = str(tmp_path / "broken.tar")
        _copy_archive_without(archive, broken, "images/002.tar")
        doc["config"]["kslab:imageArchives"] = [broken]
        with open(stack_file, "w") as fh:
            yaml.safe_dump(doc, fh)
        refused = project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK, "--target", parent, "--target",
                                 target, timeout=900)
        refused_out = refused.stdout + refused.stderr
        third = sorted(upstream)[2]
        assert refused.returncode != 0 and f"the image archive {broken} (image {third}) has no member " \
            "images/002.tar" in refused_out, refused_out[-3000:]
        assert "Traceback" not in refused_out
        assert lab_registry.container_state(registry) is None, "no lab registry before every archive is checked"
        doc["config"]["kslab:imageArchives"] = [archive]
        with open(stack_file, "w") as fh:
            yaml.safe_dump(doc, fh)
        proc = project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK, "--target", parent, "--target",
                              target, timeout=900)
        out = proc.stdout + proc.stderr
        counts = lab_images_counts(out)
        assert (counts["fetched"], counts["pushed"]) == (0, 19), counts
        assert sorted(lab_registry_images(registry)[f"lab {counts['lab']}"]) == sorted(upstream)
    finally:
        remove_lab_registry(registry)


def _copy_archive_without(archive: str, out: str, member: str) -> None:
    """The archive as it would be with one member lost (a copy cut short, a member deleted by hand)."""
    import tarfile
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        for info in src:
            if info.name != member:
                dst.addfile(info, src.extractfile(info) if info.isfile() else None)


def test_a_source_that_asks_for_a_login_gets_the_secret_credentials_and_nothing_shows_them(tmp_path):
    """kslab:registryCredentials, a Pulumi secret, opens a source that asks for a login (distribution's htpasswd
    auth): without it the lab is refused ('denied'), with it every image is copied; the password is in no output,
    not in the state (encrypted there) and not in the stack file."""
    from kslab.model.image_sources import LabRegistry
    from kslab.steps import lab_registry
    from tests.support.registry import free_port
    password = "kslab-test-Pa55word-not-to-be-seen"
    source = SourceRegistry(str(tmp_path / "source"), login=("robot", password))
    upstream = [i.ref for i in images.plan("v3.4.1", "host", "v1.25.16", images.Naming())]
    try:
        for path in upstream:
            source.push_stand_in(f"{source.address}/{path}")
        registry = LabRegistry("kt-login-registry", free_port())
        project = make_project(tmp_path)
        doc = {"config": {"kslab:imageSources": [source.address],
                          "kslab:labRegistry": {"name": registry.name, "hostPort": registry.host_port},
                          "kslab:kubesphereVersion": "v3.4.1", "kslab:nodeImage": "kindest/node:v1.25.16",
                          "kslab:clusters": [{"name": CLUSTER, "role": "host", "consoleHostPort": 31899}]}}
        stack_file = os.path.join(project.dir, "stacks", f"Pulumi.{STACK}.yaml")
        with open(stack_file, "w") as fh:
            yaml.safe_dump(doc, fh)
        project.init(STACK)
        parent = f"urn:pulumi:{STACK}::kslab::kslab:lab:Lab::lab"
        target = f"urn:pulumi:{STACK}::kslab::kslab:lab:Lab$kslab:steps:LabImages::lab-images"
        up = ("up", "--yes", "--skip-preview", "--stack", STACK, "--target", parent, "--target", target)
        refused = project.pulumi(*up, timeout=900)
        refused_out = refused.stdout + refused.stderr
        assert f"{source.address}/kubesphere/tower:v0.2.1: denied (401 UNAUTHORIZED)" in refused_out, \
            refused_out[-3000:]
        assert lab_registry.container_state(registry) is None
        credentials = json.dumps({source.address: {"username": "robot", "password": password}})
        project.pulumi("config", "set", "--secret", "kslab:registryCredentials", credentials, "--stack", STACK,
                       check=True)
        proc = project.pulumi(*up, timeout=900)
        out = proc.stdout + proc.stderr
        assert lab_images_counts(out)["fetched"] == 19, out[-3000:]
        state = open(os.path.join(project.state, ".pulumi", "stacks", "kslab", f"{STACK}.json")).read()
        for text, where in ((out, "the run's output"), (refused_out, "the refused run's output"),
                            (state, "the state"), (open(stack_file).read(), "the stack file")):
            assert password not in text, f"the password shows in {where}"
    finally:
        source.close()
        remove_lab_registry(LabRegistry("kt-login-registry", 1))


def test_a_token_realm_that_redirects_elsewhere_never_gets_the_credentials_there(tmp_path):
    """#25 item 3 on the real engine: a source that asks for a login, whose token realm redirects to a second
    loopback address (127.0.0.2). The realm, on the source's own address, gets the secret credentials; the other
    address gets the request with no Authorization header, hands out no token, and the lab is refused before
    anything exists: no lab registry container, no cluster."""
    from kslab.model.image_sources import LabRegistry
    from kslab.steps import lab_registry
    from tests.support.played_http import Played
    from tests.support.registry import free_port
    password = "kslab-test-Pa55word-for-the-realm-only"
    unauthorized = b'{"errors":[{"code":"UNAUTHORIZED"}]}'
    elsewhere = Played(lambda method, path, headers: (401, [], unauthorized), host="127.0.0.2")
    realm: list[str] = []

    def source_answer(method, path, headers):
        if path.startswith("/token"):
            return 307, [("Location", f"{elsewhere.url}{path}")], b""
        return 401, [("WWW-Authenticate", f'Bearer realm="{realm[0]}",service="played"')], unauthorized
    source = Played(source_answer)
    realm.append(f"{source.url}/token")
    registry = LabRegistry("kt-realm-registry", free_port())
    try:
        project = make_project(tmp_path)
        doc = {"config": {"kslab:imageSources": [source.address],
                          "kslab:labRegistry": {"name": registry.name, "hostPort": registry.host_port},
                          "kslab:kubesphereVersion": "v3.4.1", "kslab:nodeImage": "kindest/node:v1.25.16",
                          "kslab:clusters": [{"name": CLUSTER, "role": "host", "consoleHostPort": 31899}]}}
        with open(os.path.join(project.dir, "stacks", f"Pulumi.{STACK}.yaml"), "w") as fh:
            yaml.safe_dump(doc, fh)
        project.init(STACK)
        credentials = json.dumps({source.address: {"username": "robot", "password": password}})
        project.pulumi("config", "set", "--secret", "kslab:registryCredentials", "--stack", STACK, check=True,
                       input=credentials + "\n")
        proc = project.pulumi("up", "--yes", "--skip-preview", "--stack", STACK, "--policy-pack", policy_pack(),
                              timeout=600)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0
        assert "image sources: 19 of 19 planned images are in none of the image sources" in out, out[-3000:]
        assert f"{source.address}/kubesphere/tower:v0.2.1: denied (401 UNAUTHORIZED)" in out
        import base64
        basic = "Basic " + base64.b64encode(f"robot:{password}".encode()).decode()
        assert basic in {auth for _, path, auth in source.requests if path.startswith("/token")}, \
            "the realm on the source's own address got the credentials"
        assert elsewhere.requests, "the realm's redirect was followed"
        assert {auth for _, _, auth in elsewhere.requests} == {None}, "no Authorization header at 127.0.0.2"
        assert password not in out
        assert lab_registry.container_state(registry) is None, "no lab registry"
        resources = project.export(STACK)["deployment"].get("resources") or []
        assert not [r for r in resources if r["type"] == "kslab:steps:KindCluster"]
        assert CLUSTER not in _kind_clusters()
    finally:
        source.close()
        elsewhere.close()
        if lab_registry.container_state(registry) is not None:
            lab_registry.docker("rm", "-f", registry.name)
            lab_registry.docker("volume", "rm", registry.volume)
