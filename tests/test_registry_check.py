"""The image check's registry client against a small registry played on loopback (the distribution API's
manifest HEAD, its errors, and the bearer-token challenge Docker Hub and Harbor use), and its report."""
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kslab.steps import registry_check as rc
from tests.support.played_http import Played


class PlayedRegistry:
    """Manifests by (repository, tag); a bearer challenge when `token` is set; scripted failures per path."""

    def __init__(self, manifests, token=None, failures=None, denied=(), token_status=200, token_body=None,
                 token_basic=None):
        self.manifests, self.token, self.failures = set(manifests), token, dict(failures or {})
        self.token_basic = token_basic  # the Basic Authorization header the token endpoint demands, if any
        self.denied, self.token_status, self.token_body = set(denied), token_status, token_body
        self.requests = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code, body=b"", headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)

            def _answer(self):
                outer.requests.append((self.command, self.path, self.headers.get("Authorization")))
                if self.path.startswith("/token"):
                    if outer.token_basic and self.headers.get("Authorization") != outer.token_basic:
                        return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}')
                    body = outer.token_body if outer.token_body is not None else json.dumps({"token": outer.token})
                    return self._send(outer.token_status, body.encode())
                scripted = outer.failures.get(self.path)
                if scripted:
                    return self._send(scripted.pop(0))
                _, _, repo_tag = self.path.partition("/v2/")
                denied = repo_tag.partition("/manifests/")[0] in outer.denied
                if outer.token and (denied or self.headers.get("Authorization") != f"Bearer {outer.token}"):
                    realm = f"http://127.0.0.1:{outer.port}/token"
                    return self._send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', [(
                        "WWW-Authenticate", f'Bearer realm="{realm}",service="played",scope="x"')])
                _, _, repo_tag = self.path.partition("/v2/")
                repo, _, tag = repo_tag.partition("/manifests/")
                if (repo, tag) in outer.manifests:
                    return self._send(200, b"{}", [("Docker-Content-Digest", "sha256:00")])
                return self._send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')

            do_HEAD = do_GET = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ref(self, repo_tag):
        return f"127.0.0.1:{self.port}/{repo_tag}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry():
    played = []

    def start(*args, **kw):
        played.append(PlayedRegistry(*args, **kw))
        return played[-1]
    yield start
    for r in played:
        r.close()


def fast_checker():
    return rc.Checker(timeout=2, attempts=3, backoff=0.01)


def test_found_image(registry):
    reg = registry({("kubesphere/ks-apiserver", "v3.4.1")})
    assert rc.check([reg.ref("kubesphere/ks-apiserver:v3.4.1")], checker=fast_checker())[
        reg.ref("kubesphere/ks-apiserver:v3.4.1")].state == rc.FOUND


def test_check_uses_head_only_when_found(registry):
    reg = registry({("prom/prometheus", "v2.39.1")})
    rc.check([reg.ref("prom/prometheus:v2.39.1")], checker=fast_checker())
    assert [m for m, _, _ in reg.requests] == ["HEAD"]


def test_missing_image_names_the_registry_error(registry):
    reg = registry(set())
    answer = fast_checker().ask(reg.ref("kubesphere/tower:v0.2.1"))
    assert (answer.state, answer.detail) == (rc.MISSING, "404 MANIFEST_UNKNOWN")


def test_bearer_challenge_is_followed(registry):
    reg = registry({("kubesphere/kubefed", "v0.8.1")}, token="t0k")
    assert fast_checker().ask(reg.ref("kubesphere/kubefed:v0.8.1")).state == rc.FOUND
    assert any(path.startswith("/token?") and "scope=x" in path for _, path, _ in reg.requests)


def test_one_token_per_scope_is_reused(registry):
    reg = registry({("a/b", "1")}, token="t0k")
    checker = fast_checker()
    checker.ask(reg.ref("a/b:1"))
    checker.ask(reg.ref("a/b:1"))
    assert sum(path.startswith("/token") for _, path, _ in reg.requests) == 1


def test_denied_after_the_token(registry):
    # what Docker Hub answers for a withdrawn repository: 401 even with the anonymous token it handed out
    reg = registry(set(), token="t0k", denied={"kubesphere/ks-console"})
    answer = fast_checker().ask(reg.ref("kubesphere/ks-console:v3.4.1"))
    assert (answer.state, answer.detail) == (rc.DENIED, "401 UNAUTHORIZED")
    assert any(auth == "Bearer t0k" for _, _, auth in reg.requests), "the token was used"


def test_a_failing_token_endpoint_is_retried_and_named(registry):
    reg = registry(set(), token="t0k", token_status=503)
    answer = fast_checker().ask(reg.ref("a/b:1"))
    assert answer.state == rc.FAILED and answer.detail.startswith("503")
    assert sum(path.startswith("/token") for _, path, _ in reg.requests) == 3


def test_a_token_answer_that_is_not_an_object_is_a_failure_not_a_traceback(registry):
    reg = registry(set(), token="t0k", token_body="[1, 2]")
    assert fast_checker().ask(reg.ref("a/b:1")).state == rc.FAILED


def test_a_server_that_speaks_no_http_is_unreachable_not_a_traceback():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def garbage():
            for _ in range(3):
                conn, _ = server.accept()
                conn.recv(1024)
                conn.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
                conn.close()
        threading.Thread(target=garbage, daemon=True).start()
        answer = fast_checker().ask(f"127.0.0.1:{server.getsockname()[1]}/a/b:1")
    assert answer.state == rc.UNREACHABLE and "BadStatusLine" in answer.detail


def test_docker_hub_official_images_live_under_library():
    assert rc.ImageRef.parse("docker.io/busybox:1.36").repository == "library/busybox"
    assert rc.ImageRef.parse("busybox:1.36").repository == "library/busybox"


def test_server_error_is_retried_until_it_heals(registry):
    reg = registry({("a/b", "1")}, failures={"/v2/a/b/manifests/1": [503, 502]})
    assert fast_checker().ask(reg.ref("a/b:1")).state == rc.FOUND
    assert len(reg.requests) == 3


def test_final_answers_are_not_retried(registry):
    reg = registry(set(), failures={"/v2/a/b/manifests/1": [400, 400, 400]})
    answer = fast_checker().ask(reg.ref("a/b:1"))
    assert answer.state == rc.FAILED and len([r for r in reg.requests if r[0] == "HEAD"]) == 1


def test_unreachable_registry():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        answer = fast_checker().ask(f"127.0.0.1:{port}/a/b:1")
    assert answer.state == rc.UNREACHABLE and "Connection" in answer.detail


def test_docker_hub_names_use_its_api_host():
    ref = rc.ImageRef.parse("kubesphere/ks-apiserver:v3.4.1")
    assert ref.manifest_url == "https://registry-1.docker.io/v2/kubesphere/ks-apiserver/manifests/v3.4.1"


def test_loopback_registries_speak_http():
    assert rc.ImageRef.parse("127.0.0.1:5000/a/b:1").base_url == "http://127.0.0.1:5000"
    assert rc.ImageRef.parse("harbor.corp/a/b:1").base_url == "https://harbor.corp"


def test_digest_references():
    ref = rc.ImageRef.parse("harbor.corp/a/b@sha256:" + "0" * 64)
    assert (ref.repository, ref.reference) == ("a/b", "sha256:" + "0" * 64)


def test_report_lists_every_missing_image_with_its_answer():
    text = rc.report({"prom/prometheus:v2.39.1": rc.Answer(rc.FOUND, "200"),
                      "reg:5000/kubesphere/tower:v0.2.1": rc.Answer(rc.MISSING, "404 MANIFEST_UNKNOWN"),
                      "reg:5000/kubesphere/kubefed:v0.8.1": rc.Answer(rc.UNREACHABLE, "ConnectionRefusedError")},
                     {"reg:5000/kubesphere/tower:v0.2.1": ["host"], "reg:5000/kubesphere/kubefed:v0.8.1": ["host"]})
    assert text.startswith("2 of 3 planned images cannot be found; no cluster was created:")
    assert "reg:5000/kubesphere/tower:v0.2.1 (for host): reg:5000 answered missing (404 MANIFEST_UNKNOWN)" in text
    assert "answered unreachable (ConnectionRefusedError)" in text and "prometheus" not in text


def test_report_cites_the_withdrawal_for_docker_hub_kubesphere():
    text = rc.report({"kubesphere/ks-apiserver:v3.4.1": rc.Answer(rc.DENIED, "401 UNAUTHORIZED")}, {})
    assert "2025-07-31" in text and "kubesphere/kubesphere#6550" in text


def test_the_report_fix_names_image_sources_and_keeps_the_existing_cluster_advice():
    """#25 item 13: the fix names kslab:imageSources (what the README and the shipped stacks use) and the README
    section; kslab:registry only for existing clusters, which cannot reach kind's network."""
    text = rc.report({"kubesphere/ks-apiserver:v3.4.1": rc.Answer(rc.DENIED, "401 UNAUTHORIZED")}, {})
    fix = text.splitlines()[-1]
    assert fix.startswith("  Fix: add a registry that holds these images to kslab:imageSources (README 'Where the "
                          "images come from')")
    assert "existing cluster cannot reach kind's network" in fix and "set kslab:registry to it" in fix
    assert "imageCheck: false" in fix


def test_report_cites_no_withdrawal_elsewhere():
    text = rc.report({"harbor.corp/kubesphere/ks-apiserver:v3.4.1": rc.Answer(rc.MISSING, "404")}, {})
    assert "2025-07-31" not in text


def test_report_is_none_when_everything_is_found():
    assert rc.report({"a/b:1": rc.Answer(rc.FOUND, "200")}, {}) is None


@pytest.fixture
def played():
    servers = []

    def start(answer, host="127.0.0.1"):
        servers.append(Played(answer, host))
        return servers[-1]
    yield start
    for server in servers:
        server.close()


UNAUTHORIZED = b'{"errors":[{"code":"UNAUTHORIZED"}]}'
BASIC = "Basic " + __import__("base64").b64encode(b"robot:s3cret-Pa55").decode()


def _bearer_registry(realm_of, token, manifest=lambda path: (200, [], b"{}")):
    """A registry that wants `Bearer <token>` from the realm `realm_of()` names, and answers `manifest(path)`."""
    def answer(method, path, headers):
        if headers.get("Authorization") != f"Bearer {token}":
            return 401, [("WWW-Authenticate", f'Bearer realm="{realm_of()}",service="played",scope="x"')], UNAUTHORIZED
        return manifest(path)
    return answer


def test_credentials_do_not_follow_a_token_realm_redirect_to_another_host(played):
    """#25 item 3: the realm gets the source's credentials; when it redirects to another address, that address
    gets no Authorization header (urllib would copy it there)."""
    elsewhere = played(lambda m, p, h: (200, [], json.dumps({"token": "minted-elsewhere"}).encode()),
                       host="127.0.0.2")
    registry = None

    def answer(method, path, headers):
        if path.startswith("/token"):
            return 307, [("Location", f"{elsewhere.url}{path}")], b""
        return _bearer_registry(lambda: f"{registry.url}/token", "minted-elsewhere")(method, path, headers)
    registry = played(answer)
    checker = rc.Checker(timeout=2, attempts=1, credentials={registry.address: ("robot", "s3cret-Pa55")})
    assert checker.ask(f"{registry.address}/a/b:1").state == rc.FOUND
    assert [auth for _, path, auth in registry.requests if path.startswith("/token")] == [BASIC], \
        "the realm on the registry's own host got the credentials"
    assert elsewhere.requests and [auth for _, _, auth in elsewhere.requests] == [None]


def test_a_token_does_not_follow_a_manifest_redirect_to_a_cdn_and_the_image_is_still_found(played):
    """#25 item 3: a registry that sends a manifest to a CDN still works; the CDN never sees the token."""
    cdn = played(lambda m, p, h: (200, [("Docker-Content-Digest", "sha256:00")], b"{}"), host="127.0.0.2")
    registry = None

    def answer(method, path, headers):
        if path.startswith("/token"):
            return 200, [], json.dumps({"token": "t0k"}).encode()
        return _bearer_registry(lambda: f"{registry.url}/token", "t0k",
                                lambda p: (307, [("Location", f"{cdn.url}/cdn{p}")], b""))(method, path, headers)
    registry = played(answer)
    checker = rc.Checker(timeout=2, attempts=1, credentials={registry.address: ("robot", "s3cret-Pa55")})
    assert checker.ask(f"{registry.address}/a/b:1").state == rc.FOUND
    assert cdn.requests == [("HEAD", "/cdn/v2/a/b/manifests/1", None)]
    assert ("HEAD", "/v2/a/b/manifests/1", "Bearer t0k") in registry.requests


def test_a_challenge_from_the_host_a_redirect_led_to_gets_no_credentials(played):
    """#25 item 3: a registry redirects the manifest to another host, which answers 401 naming a token realm of its
    own choosing: the source's credentials never go there; the image is refused as denied."""
    thief = played(lambda m, p, h: (200, [], json.dumps({"token": "stolen"}).encode()), host="127.0.0.2")
    other = played(lambda m, p, h: (401, [("WWW-Authenticate", f'Bearer realm="{thief.url}/token",service="x"')],
                                    UNAUTHORIZED), host="127.0.0.2")
    registry = played(lambda m, p, h: (307, [("Location", f"{other.url}{p}")], b""))
    checker = rc.Checker(timeout=2, attempts=1, credentials={registry.address: ("robot", "s3cret-Pa55")})
    assert checker.ask(f"{registry.address}/a/b:1").state == rc.DENIED
    assert thief.requests == [], "no token was asked of a realm another host named"
    assert {auth for _, _, auth in other.requests} == {None}


def test_a_redirect_on_the_same_host_keeps_the_token(played):
    registry = None

    def manifest(path):
        if path.endswith("/manifests/1"):
            return 302, [("Location", "/v2/a/b/manifests/sha256:00")], b""
        return 200, [], b"{}"

    def answer(method, path, headers):
        if path.startswith("/token"):
            return 200, [], json.dumps({"token": "t0k"}).encode()
        return _bearer_registry(lambda: f"{registry.url}/token", "t0k", manifest)(method, path, headers)
    registry = played(answer)
    assert rc.Checker(timeout=2, attempts=1).ask(f"{registry.address}/a/b:1").state == rc.FOUND
    assert ("HEAD", "/v2/a/b/manifests/sha256:00", "Bearer t0k") in registry.requests


def _scripted(checker, answers):
    """Checker._send played from a list of (status, headers); records (url, headers) of each request."""
    sent = []

    def send(url, method, headers):
        sent.append((url, dict(headers)))
        status, response_headers = answers.pop(0)
        return status, response_headers, b""
    checker._send = send
    return sent


def test_credentials_never_go_from_https_down_to_http_on_the_same_host():
    """#25 item 3: a redirect from HTTPS to plain HTTP, even on the same host, drops the header, and it stays
    dropped when a later redirect comes back."""
    checker = rc.Checker()
    sent = _scripted(checker, [(301, {"Location": "http://harbor.corp/v2/a/b/manifests/1"}),
                               (301, {"Location": "https://harbor.corp/v2/a/b/manifests/1"}), (200, {})])
    status, _, _ = checker._request("https://harbor.corp/v2/a/b/manifests/1", "HEAD",
                                    {"Authorization": "Basic c2VjcmV0", "Accept": "x"})
    assert status == 200
    assert [("Authorization" in h, h["Accept"]) for _, h in sent] == [(True, "x"), (False, "x"), (False, "x")]


def test_a_redirect_loop_or_a_non_http_target_is_a_failure_not_a_hang():
    checker = rc.Checker(attempts=1)
    _scripted(checker, [(302, {"Location": "/again"})] * 20)
    answer = checker.ask("harbor.corp/a/b:1")
    assert (answer.state, answer.detail) == (rc.FAILED, "bad answer: more than 10 redirects")
    checker = rc.Checker(attempts=1)
    _scripted(checker, [(302, {"Location": "file:///etc/passwd"})])
    answer = checker.ask("harbor.corp/a/b:1")
    assert answer.state == rc.FAILED and "not an HTTP(S) address" in answer.detail


def test_a_token_is_never_shared_between_registries_that_name_the_same_realm(played):
    """#25 item 4: two registries with one realm, service and scope; the token the realm minted with the first
    registry's credentials never reaches the second, which gets its own (anonymous) token."""
    realm = played(lambda m, p, h: (200, [], json.dumps(
        {"token": "first-robots" if h.get("Authorization") == BASIC else "anonymous"}).encode()))
    first = played(_bearer_registry(lambda: f"{realm.url}/token", "first-robots"))
    second = played(_bearer_registry(lambda: f"{realm.url}/token", "anonymous"))
    checker = rc.Checker(timeout=2, attempts=1, credentials={first.address: ("robot", "s3cret-Pa55")})
    assert checker.ask(f"{first.address}/a/b:1").state == rc.FOUND
    assert checker.ask(f"{second.address}/a/b:1").state == rc.FOUND
    assert "Bearer first-robots" not in {auth for _, _, auth in second.requests}
    assert [auth for _, _, auth in realm.requests] == [BASIC, None]
