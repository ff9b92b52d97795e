"""The shared lab registry on a real Docker engine, with the real registry binary (#25 item 9): every container may
pull, only kslab may push, nothing may delete; a volume kslab did not make is refused; an earlier kslab's open
container is replaced with its images kept; a push endpoint whose password kslab lost is made anew."""
import base64
import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest

from kslab.model.image_sources import LAB_REGISTRY_LABEL, LabRegistry
from kslab.steps import crane, lab_registry, registry_auth
from kslab.steps.errors import RegistryError
from tests.support.registry import SourceRegistry, free_port, remove_lab_registry, require_registry_tools

pytestmark = [pytest.mark.kind]  # the Docker tier: a real engine runs the registry's containers

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _require_docker() -> None:
    require_registry_tools()
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.fail("no Docker engine answers: run the tests through `make test` (tools/docker/docker.sh start)",
                    pytrace=False)


def _http(method: str, url: str, auth: tuple[str, str] | None = None, body: bytes | None = None,
          headers: dict | None = None) -> int:
    headers = dict(headers or {})
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    try:
        with OPENER.open(urllib.request.Request(url, data=body, method=method, headers=headers), timeout=10) as r:
            return int(r.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _ip(container: str) -> str:
    state = lab_registry.container_state(LabRegistry(), container) or {}
    return next(n["IPAddress"] for n in state["NetworkSettings"]["Networks"].values() if n.get("IPAddress"))


def _crane(*args: str, docker_config: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME")}
    if docker_config:
        env["DOCKER_CONFIG"] = docker_config
    return subprocess.run(["crane", *args], capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """kslab's private state (the push password) in the test's own folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path


@pytest.fixture
def registry(home):
    _require_docker()
    lab = LabRegistry("kt-access-registry", free_port())
    assert lab_registry.container_state(lab) is None, "a lab registry of a crashed run is left"
    yield lab
    remove_lab_registry(lab)


@pytest.fixture
def stand_in(tmp_path):
    source = SourceRegistry(str(tmp_path / "source"))
    ref = f"{source.address}/kubesphere/ks-console:v3.4.1"
    source.push_stand_in(ref)
    yield ref
    source.close()


def test_every_container_may_pull_only_kslab_may_push_and_nothing_deletes(registry, stand_in, tmp_path):
    assert "created" in lab_registry.ensure_running(registry)
    credentials = registry_auth.push_credentials(registry)
    auth = credentials[registry.local]
    assert _http("GET", f"http://{registry.local}/v2/") == 401, "the push endpoint asks for kslab's password"
    assert _http("GET", f"http://{registry.local}/v2/", auth) == 200
    own = f"{registry.local}/labs/kt-a/kubesphere/ks-console:v3.4.1"
    with tempfile.TemporaryDirectory() as anonymous:
        refused = _crane("copy", stand_in, own, docker_config=anonymous)
    assert refused.returncode != 0 and "401" in refused.stderr + refused.stdout, refused.stderr[-1000:]
    with tempfile.TemporaryDirectory() as config:
        crane.write_docker_config(config, credentials)
        copied = _crane("copy", stand_in, own, docker_config=config)
        assert copied.returncode == 0, copied.stderr[-1000:]
    digest = subprocess.run(["crane", "digest", stand_in], capture_output=True, text=True, check=True).stdout.strip()

    pull = f"{_ip(registry.name)}:5000"
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json, "
                        "application/vnd.oci.image.manifest.v1+json"}
    manifest = f"http://{pull}/v2/labs/kt-a/kubesphere/ks-console/manifests/v3.4.1"
    assert _http("GET", manifest, headers=accept) == 200, "any container pulls from the pull endpoint, no login"
    pushed = _crane("copy", "--insecure", stand_in, f"{pull}/labs/kt-a/kubesphere/evil:1")
    assert pushed.returncode != 0, "the pull endpoint takes no push"
    assert _http("POST", f"http://{pull}/v2/labs/kt-a/kubesphere/evil/blobs/uploads/") in (405, 503), \
        "no upload starts at the pull endpoint"
    by_digest = f"/v2/labs/kt-a/kubesphere/ks-console/manifests/{digest}"
    assert _http("DELETE", f"http://{pull}{by_digest}") != 202
    assert _http("DELETE", f"http://{registry.local}{by_digest}", auth) == 405, "delete is off at the push endpoint"
    assert _http("GET", f"http://{_ip(registry.push_container)}:5000/v2/") == 401, \
        "the push endpoint asks for the password whichever address reaches it"
    assert _http("GET", manifest, headers=accept) == 200, "the image is still there"
    state = lab_registry.container_state(registry)
    assert state["HostConfig"]["PortBindings"] in (None, {}), "the pull endpoint publishes no port"
    assert any(m["Destination"] == lab_registry.DATA_DIR and not m["RW"] for m in state["Mounts"]), \
        "the pull endpoint mounts the data read-only"
    password_file = os.path.join(tmp_path, "state", "kslab", "lab-registry", f"{registry.name}.password")
    assert oct(os.stat(password_file).st_mode & 0o777) == "0o600"


def test_a_volume_kslab_did_not_make_is_refused_and_nothing_is_created(home):
    _require_docker()
    lab = LabRegistry("kt-foreign-registry", free_port())
    made = subprocess.run(["docker", "volume", "create", lab.volume], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    try:
        with pytest.raises(RegistryError, match=f"a Docker volume named '{lab.volume}' exists and is not kslab's"):
            lab_registry.ensure_running(lab)
        assert lab_registry.container_state(lab) is None
        assert lab_registry.container_state(lab, lab.push_container) is None
        inspect = subprocess.run(["docker", "volume", "inspect", lab.volume], capture_output=True, text=True)
        assert inspect.returncode == 0 and not (json.loads(inspect.stdout)[0].get("Labels") or {}), "left as it was"
    finally:
        subprocess.run(["docker", "volume", "rm", lab.volume], capture_output=True)


def test_an_earlier_open_container_is_replaced_and_its_images_kept(registry, stand_in):
    """The single container of an earlier kslab (no login, delete on) gives way to the two endpoints; the volume and
    what it holds stay."""
    lab_registry.ensure_running(registry)
    with tempfile.TemporaryDirectory() as config:
        crane.write_docker_config(config, registry_auth.push_credentials(registry))
        assert _crane("copy", stand_in, f"{registry.local}/labs/kt-a/kubesphere/ks-console:v3.4.1",
                      docker_config=config).returncode == 0
    for name in (registry.name, registry.push_container):
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=True)
    image = lab_registry.ensure_image()
    old = subprocess.run(["docker", "run", "-d", "--name", registry.name, "--label", f"{LAB_REGISTRY_LABEL}=container",
                          "-p", f"127.0.0.1:{registry.host_port}:5000", "-v",
                          f"{registry.volume}:{lab_registry.DATA_DIR}", image, lab_registry.PULL_CONFIG],
                         capture_output=True, text=True)
    assert old.returncode == 0, old.stderr
    done = lab_registry.ensure_running(registry)
    assert "pull endpoint created" in done and "push endpoint created" in done
    assert lab_registry.role_of(lab_registry.container_state(registry)) == lab_registry.PULL_ROLE
    auth = registry_auth.push_credentials(registry)[registry.local]
    assert _http("GET", f"http://{registry.local}/v2/labs/kt-a/kubesphere/ks-console/manifests/v3.4.1", auth,
                 headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"}) == 200


def test_a_push_endpoint_whose_password_is_lost_is_made_anew(registry, tmp_path):
    lab_registry.ensure_running(registry)
    before = lab_registry.container_state(registry, registry.push_container)["Id"]
    os.remove(os.path.join(tmp_path, "state", "kslab", "lab-registry", f"{registry.name}.password"))
    assert "push endpoint created" in lab_registry.ensure_running(registry)
    assert lab_registry.container_state(registry, registry.push_container)["Id"] != before
    auth = registry_auth.push_credentials(registry)[registry.local]
    assert _http("GET", f"http://{registry.local}/v2/", auth) == 200
