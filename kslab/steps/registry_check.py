"""Is every planned image there? A `HEAD` on each manifest through the registry HTTP API (distribution spec,
"Pulling manifests"), with the token flow registries use, bounded in time and in concurrency.

`HEAD` requests do not count against Docker Hub's pull limit (docs.docker.com, "Usage and limits": a pull is
a GET of a manifest). Only what can heal is retried (unreachable, 429, 5xx); every other answer is final.
The classification and the report are pure; `check` does the I/O.
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from kslab.model.images import DEFAULT_REGISTRY, canonical_ref

FOUND, MISSING, DENIED, UNREACHABLE, FAILED = "found", "missing", "denied", "unreachable", "failed"
# Every media type of an image or an index, so a registry answers for whichever the tag points at.
MANIFEST_ACCEPT = ", ".join((
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json"))
# Docker Hub's API host; the name `docker.io` is only an alias of the index.
DOCKER_HUB_API = "registry-1.docker.io"
WITHDRAWN_NAMESPACE = "docker.io/kubesphere/"
WITHDRAWAL_NOTE = (
    "KubeSphere's vendor withdrew its open-source distribution on 2025-07-31 (kubesphere/kubesphere#6550): the "
    "images under docker.io/kubesphere no longer pull (kubesphere/kubesphere#6543)")
ATTEMPTS = 3
REQUEST_TIMEOUT = 10.0
CONCURRENCY = 8
REDIRECTS = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 10  # urllib's own bound


@dataclass(frozen=True)
class ImageRef:
    registry: str  # as written, e.g. docker.io, harbor.corp, 127.0.0.1:5000
    repository: str  # e.g. kubesphere/ks-apiserver
    reference: str  # a tag or a digest

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        full = canonical_ref(ref)
        registry, rest = full.split("/", 1)
        if registry == DEFAULT_REGISTRY and "/" not in rest.split("@", 1)[0].rsplit(":", 1)[0]:
            rest = f"library/{rest}"  # Docker Hub's official images: docker.io/nginx is docker.io/library/nginx
        if "@" in rest:
            repository, reference = rest.split("@", 1)
        else:
            repository, _, reference = rest.rpartition(":")
            if not repository or "/" in reference:
                repository, reference = rest, "latest"
        return cls(registry, repository, reference)

    @property
    def base_url(self) -> str:
        host = DOCKER_HUB_API if self.registry == DEFAULT_REGISTRY else self.registry
        return f"{'http' if is_loopback(self.registry) else 'https'}://{host}"

    @property
    def manifest_url(self) -> str:
        return f"{self.base_url}/v2/{self.repository}/manifests/{self.reference}"


def is_loopback(registry: str) -> bool:
    """A registry on this machine's loopback speaks plain HTTP, as Docker and containerd assume for one."""
    host = urllib.parse.urlsplit(f"//{registry}").hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Answer:
    state: str  # FOUND, MISSING, DENIED, UNREACHABLE or FAILED
    detail: str  # what the registry said, e.g. "404 MANIFEST_UNKNOWN"
    digest: str = ""  # of a FOUND manifest, when the registry says it (the Docker-Content-Digest header)


def classify(status: int, body: bytes = b"") -> Answer:
    """A registry's final answer to a HEAD (or the GET a HEAD could not tell) as found, missing or denied."""
    codes = _error_codes(body)
    detail = f"{status} {codes}".strip()
    if 200 <= status < 300:
        return Answer(FOUND, str(status))
    if status == 404:
        return Answer(MISSING, detail)
    if status in (401, 403):
        return Answer(DENIED, detail)
    return Answer(FAILED, detail)


def _error_codes(body: bytes) -> str:
    try:
        errors = json.loads(body or b"{}").get("errors") or []
        return ", ".join(str(e.get("code")) for e in errors if isinstance(e, dict) and e.get("code"))
    except (ValueError, AttributeError):
        return ""


_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`WWW-Authenticate: Bearer realm="...",service="...",scope="..."` -> ("bearer", {...})."""
    scheme, _, params = (header or "").strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(params))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib's own handler copies every header, Authorization included, to wherever a redirect points; kslab
    follows redirects itself (`Checker._request`), so a 3xx comes back as the answer."""

    def redirect_request(self, req: urllib.request.Request, fp: object, code: int, msg: str, headers: object,
                         newurl: str) -> None:
        return None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or {"http": 80, "https": 443}.get(parts.scheme)


class Checker:
    """Asks registries for manifests; one token per registry, realm, service and scope, shared by the threads."""

    def __init__(self, timeout: float = REQUEST_TIMEOUT, attempts: int = ATTEMPTS, backoff: float = 1.0,
                 credentials: dict[str, tuple[str, str]] | None = None):
        self.timeout, self.attempts, self.backoff = timeout, attempts, backoff
        self.credentials = credentials or {}  # registry host as written -> (username, password); never logged
        self.tokens: dict[tuple[str, str, str, str], str] = {}  # (registry, realm, service, scope) -> token
        context = ssl.create_default_context()
        self.default = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context), _NoRedirect())
        self.direct = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPSHandler(context=context), _NoRedirect())

    def _request(self, url: str, method: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        """One request, its redirects followed here: the Authorization header (a source's credentials or a token
        minted with them) goes only where it was meant for, the scheme, host and port of `url`. A redirect
        anywhere else (another host or port, or from HTTPS down to HTTP) is followed without it, and it stays
        dropped for the rest of the chain, as Go's client (so crane and containerd) does for another host."""
        origin = _origin(url)
        for _ in range(MAX_REDIRECTS + 1):
            status, response_headers, body = self._send(url, method, headers)
            location = _header(response_headers, "Location")
            if status not in REDIRECTS or not location:
                if _origin(url) != origin:  # another host's challenge never names where credentials may go
                    response_headers = {k: v for k, v in response_headers.items()
                                        if k.lower() != "www-authenticate"}
                return status, response_headers, body
            url = urllib.parse.urljoin(url, location)
            if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                raise ValueError(f"redirected to {url.split('?')[0]}, which is not an HTTP(S) address")
            if _origin(url) != origin:
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        raise ValueError(f"more than {MAX_REDIRECTS} redirects")

    def _send(self, url: str, method: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(url, method=method, headers=headers)
        # A registry on this machine is asked directly, never through a proxy the environment names.
        opener = self.direct if is_loopback(urllib.parse.urlsplit(url).netloc) else self.default
        try:
            with opener.open(request, timeout=self.timeout) as response:
                return response.status, dict(response.headers), response.read() if method == "GET" else b""
        except urllib.error.HTTPError as error:
            body = error.read() if method == "GET" or error.code >= 400 else b""
            return error.code, dict(error.headers or {}), body

    def _basic(self, ref: ImageRef) -> dict[str, str]:
        """The Authorization header of the registry's credentials, if any (sent to its token endpoint or to a
        registry that asks for Basic)."""
        import base64
        pair = self.credentials.get(ref.registry)
        if not pair:
            return {}
        return {"Authorization": "Basic " + base64.b64encode(f"{pair[0]}:{pair[1]}".encode()).decode()}

    def _token(self, ref: ImageRef, params: dict[str, str]) -> str | Answer | None:
        """The bearer token the challenge asks for; an Answer when the token endpoint itself failed."""
        realm = params.get("realm", "")
        if not realm.startswith(("https://", "http://")):
            return None
        scope = params.get("scope") or f"repository:{ref.repository}:pull"
        # the registry is part of the key: a token minted with one registry's credentials never goes to another
        # registry that names the same realm, service and scope
        key = (ref.registry, realm, params.get("service", ""), scope)
        if key not in self.tokens:
            query = urllib.parse.urlencode({k: v for k, v in (("service", params.get("service")), ("scope", scope))
                                            if v})
            # credentials travel only over TLS, or to a registry on this machine
            secure = realm.startswith("https://") or is_loopback(urllib.parse.urlsplit(realm).netloc)
            status, _, body = self._request(f"{realm}?{query}", "GET", self._basic(ref) if secure else {})
            if status != 200:
                # the token endpoint's own answer: a 429 or 5xx there is retried like one of the registry's
                return classify(status, body) if status == 429 or status >= 500 else None
            doc = json.loads(body or b"{}")
            if not isinstance(doc, dict):
                raise ValueError("the token endpoint did not answer a JSON object")
            self.tokens[key] = str(doc.get("token") or doc.get("access_token") or "")
        return self.tokens[key] or None

    def _head(self, ref: ImageRef) -> Answer:
        headers = {"Accept": MANIFEST_ACCEPT}
        status, response_headers, body = self._request(ref.manifest_url, "HEAD", headers)
        if status == 401:
            scheme, params = parse_challenge(_header(response_headers, "WWW-Authenticate"))
            token = self._token(ref, params) if scheme == "bearer" else None
            if isinstance(token, Answer):
                return token
            if token or (scheme == "basic" and self._basic(ref)):
                headers.update({"Authorization": f"Bearer {token}"} if token else self._basic(ref))
                status, response_headers, body = self._request(ref.manifest_url, "HEAD", headers)
        if status in (401, 403, 404) and not body:
            # A HEAD answer has no body: ask once more with GET for the registry's error code (never on success,
            # so no pull is counted).
            status, response_headers, body = self._request(ref.manifest_url, "GET", headers)
        answer = classify(status, body)
        if answer.state == FOUND:  # the distribution spec's header for the manifest's digest ("Pulling manifests")
            return Answer(FOUND, str(status), _header(response_headers, "Docker-Content-Digest"))
        return answer

    def ask(self, ref: str) -> Answer:
        parsed = ImageRef.parse(ref)
        answer = Answer(UNREACHABLE, "not asked")
        for attempt in range(self.attempts):
            try:
                answer = self._head(parsed)
            except (urllib.error.URLError, TimeoutError, ConnectionError, ssl.SSLError, http.client.HTTPException,
                    OSError) as error:
                reason = getattr(error, "reason", error)
                answer = Answer(UNREACHABLE, f"{type(reason).__name__}: {reason}"[:200])
            except ValueError as error:  # a token endpoint that does not answer JSON
                answer = Answer(FAILED, f"bad answer: {error}"[:200])
            healable = answer.state == UNREACHABLE or answer.detail.startswith(("429", "5"))
            if not healable or attempt == self.attempts - 1:
                return answer
            time.sleep(self.backoff * (2 ** attempt))
        return answer


def _header(headers: dict[str, str], name: str) -> str:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), "")


def check(refs: list[str], concurrency: int = CONCURRENCY, checker: Checker | None = None) -> dict[str, Answer]:
    """Every reference's answer, asked `concurrency` at a time."""
    checker = checker or Checker()
    unique = list(dict.fromkeys(refs))
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(unique) or 1))) as pool:
        return dict(zip(unique, pool.map(checker.ask, unique), strict=True))


def report(answers: dict[str, Answer], clusters_of: dict[str, list[str]]) -> str | None:
    """The refusal for every image not found, or None when all were found. Pure."""
    missing = {ref: a for ref, a in answers.items() if a.state != FOUND}
    if not missing:
        return None
    lines = [f"{len(missing)} of {len(answers)} planned images cannot be found; no cluster was created:"]
    for ref, answer in missing.items():
        full = canonical_ref(ref)
        where = ImageRef.parse(ref).registry
        lines.append(f"  - {full} (for {', '.join(clusters_of.get(ref, [])) or 'the lab'}): {where} answered "
                     f"{answer.state} ({answer.detail})")
    if any(canonical_ref(ref).startswith(WITHDRAWN_NAMESPACE) for ref in missing):
        lines.append(f"  {WITHDRAWAL_NOTE}.")
    lines.append(
        "  Fix: add a registry that holds these images to kslab:imageSources (README 'Where the images come from'): "
        "kind clusters then pull them from the lab registry, which kslab fills from the sources. An existing "
        "cluster cannot reach kind's network: put its images in a registry it reaches, under the same names, and "
        "set kslab:registry to it; or, if its nodes reach a registry this machine cannot, set imageCheck: false "
        "on that cluster.")
    return "\n".join(lines)


def locate(candidates: dict[str, list[str]], concurrency: int = CONCURRENCY,
           checker: Checker | None = None) -> dict[str, list[tuple[str, Answer]]]:
    """For each image (upstream's `namespace/name:tag`), its candidates asked in order until one has it: every
    (candidate, answer) asked. The image is found when the last answer is FOUND."""
    checker = checker or Checker()

    def ask_in_order(path: str) -> list[tuple[str, Answer]]:
        asked = []
        for ref in candidates[path]:
            answer = checker.ask(ref)
            asked.append((ref, answer))
            if answer.state == FOUND:
                break
        return asked

    paths = list(candidates)
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(paths) or 1))) as pool:
        return dict(zip(paths, pool.map(ask_in_order, paths), strict=True))


def found_at(asked: list[tuple[str, Answer]]) -> str | None:
    return asked[-1][0] if asked and asked[-1][1].state == FOUND else None


def report_sources(located: dict[str, list[tuple[str, Answer]]], clusters_of: dict[str, list[str]],
                   archives: list[str] | tuple[str, ...] = ()) -> str | None:
    """The refusal for every image no source (and no archive) has, with what each source answered; None when all
    were found."""
    missing = {path: asked for path, asked in located.items() if found_at(asked) is None}
    if not missing:
        return None
    lines = [f"{len(missing)} of {len(located)} planned images are in none of the image sources; no cluster "
             "was created:"]
    withdrawn = False
    for path, asked in missing.items():
        lines.append(f"  - {path} (for {', '.join(clusters_of.get(path, [])) or 'the lab'}):")
        for archive in archives:
            lines.append(f"      {archive}: not in this archive")
        if not asked and not archives:
            lines.append("      no image source is set")
        for ref, answer in asked:
            lines.append(f"      {canonical_ref(ref)}: {answer.state} ({answer.detail})")
            withdrawn = withdrawn or canonical_ref(ref).startswith(WITHDRAWN_NAMESPACE)
    if withdrawn:
        lines.append(f"  {WITHDRAWAL_NOTE}.")
    lines.append(
        "  Fix: add a source that has them to kslab:imageSources (they are asked in order), name one image's own "
        "source in kslab:imageOverrides, or load them from an archive (README 'Where the images come from').")
    return "\n".join(lines)
