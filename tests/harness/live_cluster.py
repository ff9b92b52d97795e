"""An API-server-only Kubernetes cluster (etcd + kube-apiserver) for live tests.

The binaries come from ``tools/kube/build.sh`` (built from their Go modules into a cache outside the
repository). A cluster stores and serves objects for real, but nothing reconciles them: there is no
kubelet, scheduler or controller-manager. See tools/kube/README.md for what that implies.

    bin_dir = find_bin_dir()
    with LiveCluster("host", tmp_path / "host", bin_dir) as c:
        c.kubeconfig_path            # CA-verified kubeconfig, context "kslab-host"
        c.request("GET", "/version")

Every process writes its log to ``<workdir>/<program>.log`` and is recorded in ``<workdir>/pids``
(``<program> <pid> <start-time>`` per line), so that ``kill_recorded(workdir)`` -- or, from the
repository root, ``python -m tests.harness.live_cluster down <workdir>`` -- can clean up after a
crashed test run. ``python -m tests.harness.live_cluster up <name> <workdir>`` starts one and leaves it.

Only loopback addresses (127.0.0.0/8) are accepted; nothing listens elsewhere.
"""

from __future__ import annotations

import atexit
import base64
import datetime as _dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "LiveCluster",
    "LiveClusterError",
    "find_bin_dir",
    "kill_recorded",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "kube" / "build.sh"

ETCD = "etcd"
APISERVER = "kube-apiserver"
REQUIRED_BINARIES = (ETCD, APISERVER)

SERVICE_CIDR = "10.96.0.0/12"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

BOOTSTRAP_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease", "default")

# Admission plugins that cannot work without controllers: ServiceAccount admission rejects every Pod
# whose service account (normally made by kube-controller-manager) does not exist.
DISABLED_ADMISSION_PLUGINS = ("ServiceAccount",)


class LiveClusterError(RuntimeError):
    """A live cluster could not be built, started or stopped."""


PathLike = str | os.PathLike


# ---------------------------------------------------------------------------------------------------
# binaries


def find_bin_dir(build: bool = False, timeout: float | None = None) -> Path:
    """Return the directory holding kube-apiserver and etcd built by tools/kube/build.sh.

    ``$KSLAB_KUBE_BIN_DIR`` overrides the lookup. Otherwise ``build.sh --check`` reports the cache
    directory if the binaries are built (it takes milliseconds and never compiles). With
    ``build=True`` the script builds what is missing instead (a cold build takes 10-30 minutes;
    the default ``timeout`` is then an hour). Raises LiveClusterError with instructions if nothing
    usable exists.
    """
    if timeout is None:
        timeout = 3600.0 if build else 120.0
    override = os.environ.get("KSLAB_KUBE_BIN_DIR")
    if override:
        return _check_bin_dir(Path(override), "KSLAB_KUBE_BIN_DIR")
    if not BUILD_SCRIPT.is_file():
        raise LiveClusterError(f"{BUILD_SCRIPT} not found")
    args = ["bash", str(BUILD_SCRIPT)] + ([] if build else ["--check"])
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise LiveClusterError(f"{' '.join(args)} did not finish within {timeout:.0f} s") from e
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise LiveClusterError(
            "kube-apiserver/etcd binaries are not available "
            f"({' '.join(args)} exited {proc.returncode}).\n"
            "Build them with: tools/kube/build.sh   (cold build: 15-30 min; then milliseconds)\n"
            + _tail_text(proc.stderr, 15)
        )
    last = lines[-1]
    prefix, suffix = 'export PATH="', ':$PATH"'
    if not (last.startswith(prefix) and last.endswith(suffix)):
        raise LiveClusterError(f"unexpected last line from {BUILD_SCRIPT}: {last!r}")
    return _check_bin_dir(Path(last[len(prefix) : -len(suffix)]), str(BUILD_SCRIPT))


def _check_bin_dir(bin_dir: Path, source: str) -> Path:
    missing = [b for b in REQUIRED_BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise LiveClusterError(f"{bin_dir} (from {source}) lacks executable {', '.join(missing)}")
    return bin_dir


# ---------------------------------------------------------------------------------------------------
# PKI


def _new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class _PKI:
    """A throwaway CA and the leaf certificates a one-node etcd + kube-apiserver needs."""

    def __init__(self, cluster_name: str, days: int = 30):
        self.cluster_name = cluster_name
        self.days = days
        self.ca_key = _new_ec_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"kslab-{cluster_name}-ca")])
        now = _dt.datetime.now(_dt.UTC)
        self.ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(hours=1))
            .not_valid_after(now + _dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.ca_key.public_key()), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )

    def issue(
        self,
        common_name: str,
        *,
        organizations: Iterable[str] = (),
        dns: Iterable[str] = (),
        ips: Iterable[str] = (),
        server: bool = False,
        client: bool = False,
    ) -> tuple[bytes, bytes]:
        """Return (cert PEM, key PEM) signed by the CA."""
        key = _new_ec_key()
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        now = _dt.datetime.now(_dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attrs))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _dt.timedelta(hours=1))
            .not_valid_after(now + _dt.timedelta(days=self.days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=False,
                    data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                    encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()), critical=False
            )
        )
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys(dns)]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(ips)]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        return _cert_pem(cert), _key_pem(key)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------
# processes and the pid file

_PORT_LOCK = threading.Lock()
_HANDED_OUT_PORTS: set = set()


def _free_port(address: str) -> int:
    """A currently free TCP port on `address`, never the same one twice in this process."""
    with _PORT_LOCK:
        for _ in range(100):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((address, 0))
                port = s.getsockname()[1]
            if port not in _HANDED_OUT_PORTS:
                _HANDED_OUT_PORTS.add(port)
                return port
    raise LiveClusterError(f"no free port found on {address}")


def _proc_start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat: tells a live process from a recycled pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start_time: str | None = None) -> bool:
    st = _proc_start_time(pid)
    if st is None:
        return False
    try:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # zombie: already dead, only waiting to be reaped
    except OSError:
        return False
    return start_time is None or st == start_time


def _terminate_pid(pid: int, start_time: str | None, timeout: float, popen=None) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL. Only signals the recorded process."""
    if popen is not None:
        if popen.poll() is not None:
            return
        popen.terminate()
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(10)
        return
    if not _alive(pid, start_time):
        _reap(pid)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid, start_time):
            _reap(pid)
            return
        time.sleep(0.05)
    if _alive(pid, start_time):
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _alive(pid, start_time):
            time.sleep(0.05)
    _reap(pid)


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Collect the exit status if `pid` is our own (detached) child, so no zombie is left.

    A dying multi-threaded process can show state Z for its main thread before the last thread has
    gone; it is only reapable after that, hence the short loop.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # not our child (or already reaped): its parent, or init, reaps it
        if done or time.monotonic() > deadline:
            return
        time.sleep(0.02)


def _read_pidfile(workdir: Path) -> list[tuple[str, int, str | None]]:
    path = Path(workdir) / "pids"
    out: list[tuple[str, int, str | None]] = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return out
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            out.append((parts[0], int(parts[1]), parts[2] if len(parts) > 2 else None))
    return out


def kill_recorded(workdir: PathLike, timeout: float = 10.0) -> list[str]:
    """Stop every process recorded in ``<workdir>/pids`` that is still the same process.

    For cleaning up after a test run that died without calling stop(). Returns what was stopped.
    """
    workdir = Path(workdir)
    stopped = []
    # apiserver before etcd, like stop()
    for name, pid, st in sorted(_read_pidfile(workdir), key=lambda r: r[0] == ETCD):
        if _alive(pid, st):
            try:
                _terminate_pid(pid, st, timeout)
            except ProcessLookupError:
                pass
            stopped.append(f"{name}[{pid}]")
    try:
        (workdir / "pids").unlink()
    except FileNotFoundError:
        pass
    return stopped


# Clusters with running processes; stopped at interpreter exit unless detach()ed, so an aborted test
# session does not leave servers behind (a SIGKILLed one still can: see kill_recorded).
_RUNNING: set[LiveCluster] = set()


@atexit.register
def _stop_all_at_exit() -> None:
    for c in list(_RUNNING):
        try:
            c.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def _tail(path: Path, lines: int = 30) -> str:
    try:
        data = path.read_bytes()[-64 * 1024 :].decode("utf-8", "replace")
    except OSError as e:
        return f"  ({path}: {e})"
    return _tail_text(data, lines, header=f"--- last lines of {path} ---")


def _tail_text(text: str, lines: int, header: str = "") -> str:
    body = "\n".join("  " + line for line in text.rstrip().splitlines()[-lines:])
    return f"{header}\n{body}" if header else body


# ---------------------------------------------------------------------------------------------------
# the cluster


class LiveCluster:
    """One etcd + one kube-apiserver on loopback, with their own CA, in ``workdir``.

    Files in workdir: ``kubeconfig``, ``pki/``, ``etcd-data/``, ``etcd.log``, ``kube-apiserver.log``,
    ``pids``. The API server uses RBAC; the kubeconfig's user is in ``system:masters``.
    """

    def __init__(
        self,
        name: str,
        workdir: PathLike,
        bin_dir: PathLike,
        address: str = "127.0.0.1",
        *,
        ready_timeout: float = 90.0,
        stop_timeout: float = 15.0,
        extra_apiserver_args: Iterable[str] = (),
    ):
        if not name or not all(c.isalnum() or c in "-." for c in name):
            raise ValueError(f"cluster name must be alphanumeric, '-' or '.': {name!r}")
        ip = ipaddress.ip_address(address)
        if not (ip.version == 4 and ip in ipaddress.ip_network("127.0.0.0/8")):
            raise ValueError(f"address must be an IPv4 loopback address (127.0.0.0/8): {address!r}")
        self.name = name
        self.workdir = Path(workdir).resolve()
        self.bin_dir = Path(bin_dir).resolve()
        self.address = address
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.extra_apiserver_args = list(extra_apiserver_args)

        self.pki_dir = self.workdir / "pki"
        self.etcd_data_dir = self.workdir / "etcd-data"
        self.etcd_log = self.workdir / "etcd.log"
        self.apiserver_log = self.workdir / "kube-apiserver.log"
        self.pidfile = self.workdir / "pids"

        self.etcd_client_port: int | None = None
        self.etcd_peer_port: int | None = None
        self.port: int | None = None
        self._procs: dict[str, subprocess.Popen] = {}
        self._ssl_ctx: ssl.SSLContext | None = None
        self.startup_seconds: float | None = None

    # ----- public properties ----------------------------------------------------------------------

    @property
    def kubeconfig_path(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def context(self) -> str:
        return f"kslab-{self.name}"

    @property
    def server(self) -> str:
        if self.port is None:
            raise LiveClusterError(f"cluster {self.name!r} has not been started")
        return f"https://{self.address}:{self.port}"

    @property
    def etcd_endpoint(self) -> str:
        return f"https://{self.address}:{self.etcd_client_port}"

    @property
    def pids(self) -> dict[str, int]:
        """Pids of the processes that are running now, by program name."""
        return {n: p.pid for n, p in self._procs.items() if p.poll() is None}

    @property
    def ca_cert_path(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def admin_cert_path(self) -> Path:
        return self.pki_dir / "admin.crt"

    @property
    def admin_key_path(self) -> Path:
        return self.pki_dir / "admin.key"

    def __repr__(self) -> str:
        return f"LiveCluster(name={self.name!r}, server={self.server if self.port else None!r}, pids={self.pids})"

    # ----- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> LiveCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> LiveCluster:
        """Make fresh PKI and etcd data, start etcd then kube-apiserver, wait for /readyz, write kubeconfig."""
        if self._procs:
            raise LiveClusterError(f"cluster {self.name!r} is already started")
        _check_bin_dir(self.bin_dir, "bin_dir")
        t0 = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        kill_recorded(self.workdir)  # leftovers of a crashed run in the same workdir
        shutil.rmtree(self.etcd_data_dir, ignore_errors=True)
        for p in (self.kubeconfig_path, self.etcd_log, self.apiserver_log):
            p.unlink(missing_ok=True)

        self.etcd_client_port = _free_port(self.address)
        self.etcd_peer_port = _free_port(self.address)
        self.port = _free_port(self.address)
        self._write_pki()
        self._ssl_ctx = None
        _RUNNING.add(self)
        try:
            self._start_etcd()
            self._wait_etcd_healthy(time.monotonic() + self.ready_timeout)
            self._start_apiserver_process()
            self._wait_apiserver_ready(time.monotonic() + self.ready_timeout)
            self._write_kubeconfig()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self) -> None:
        """Stop kube-apiserver then etcd: SIGTERM, then SIGKILL after `stop_timeout` seconds."""
        for name in (APISERVER, ETCD):
            proc = self._procs.pop(name, None)
            if proc is not None:
                _terminate_pid(proc.pid, None, self.stop_timeout, popen=proc)
        self._write_pidfile()
        _RUNNING.discard(self)

    def detach(self) -> dict[str, int]:
        """Forget the processes and leave them running (they stay recorded in ``<workdir>/pids``).

        For handing a cluster to another process; stop it later with ``kill_recorded(workdir)``.
        Returns the pids that were left running.
        """
        pids = self.pids
        self._procs.clear()
        _RUNNING.discard(self)
        return pids

    def stop_apiserver(self) -> None:
        """Stop only kube-apiserver (the cluster becomes unreachable); etcd keeps the data."""
        proc = self._procs.pop(APISERVER, None)
        if proc is None:
            raise LiveClusterError(f"kube-apiserver of cluster {self.name!r} is not running")
        _terminate_pid(proc.pid, None, self.stop_timeout, popen=proc)
        self._write_pidfile()

    def start_apiserver(self) -> None:
        """Start kube-apiserver again on the same port with the same certificates; wait for /readyz."""
        if self.port is None or ETCD not in self._procs:
            raise LiveClusterError(f"cluster {self.name!r} is not started (etcd is not running)")
        if APISERVER in self._procs:
            raise LiveClusterError(f"kube-apiserver of cluster {self.name!r} is already running")
        try:
            self._start_apiserver_process()
            self._wait_apiserver_ready(time.monotonic() + self.ready_timeout)
        except BaseException:
            proc = self._procs.pop(APISERVER, None)
            if proc is not None:
                _terminate_pid(proc.pid, None, self.stop_timeout, popen=proc)
            self._write_pidfile()
            raise

    pause = stop_apiserver
    resume = start_apiserver

    # ----- talking to the API server --------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext:
        """TLS context that verifies the server with the cluster CA and presents the admin cert."""
        if self._ssl_ctx is None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_cert_path))
            ctx.load_cert_chain(str(self.admin_cert_path), str(self.admin_key_path))
            self._ssl_ctx = ctx
        return self._ssl_ctx

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> tuple[int, Any]:
        """One HTTPS request as the admin user. Returns (status, decoded JSON or text); never raises on
        HTTP error statuses, only on connection errors."""
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.server + path, data=data, method=method, headers=headers)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # never send loopback traffic to an HTTP(S)_PROXY
            urllib.request.HTTPSHandler(context=self.ssl_context()),
        )
        try:
            with opener.open(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        text = raw.decode("utf-8", "replace")
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def _write_pki(self) -> None:
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        pki = _PKI(self.name)
        _write(self.pki_dir / "ca.crt", _cert_pem(pki.ca_cert))
        _write(self.pki_dir / "ca.key", _key_pem(pki.ca_key), private=True)

        service_ip = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))
        loop_ips = [self.address, "127.0.0.1"]
        leaves = {
            "apiserver": pki.issue(
                "kube-apiserver",
                dns=[
                    "localhost",
                    "kubernetes",
                    "kubernetes.default",
                    "kubernetes.default.svc",
                    "kubernetes.default.svc.cluster.local",
                ],
                ips=loop_ips + [service_ip],
                server=True,
            ),
            "admin": pki.issue(f"kslab-{self.name}-admin", organizations=["system:masters"], client=True),
            "etcd-server": pki.issue(f"etcd-{self.name}", dns=["localhost"], ips=loop_ips, server=True, client=True),
            "etcd-peer": pki.issue(f"etcd-{self.name}", dns=["localhost"], ips=loop_ips, server=True, client=True),
            "apiserver-etcd-client": pki.issue("kube-apiserver-etcd-client", client=True),
        }
        for base, (cert, key) in leaves.items():
            _write(self.pki_dir / f"{base}.crt", cert)
            _write(self.pki_dir / f"{base}.key", key, private=True)

        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write(self.pki_dir / "sa.key", _key_pem(sa_key), private=True)
        _write(
            self.pki_dir / "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        for var in ("NO_PROXY", "no_proxy"):
            extra = f"{self.address},127.0.0.1,localhost"
            env[var] = f"{env[var]},{extra}" if env.get(var) else extra
        return env

    def _spawn(self, name: str, args: list[str], log: Path) -> None:
        with open(log, "ab") as logf:
            logf.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(args)}\n".encode())
            logf.flush()
            proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self._env(),
                start_new_session=True,  # a Ctrl-C in the test terminal does not reach it
            )
        self._procs[name] = proc
        self._write_pidfile()

    def _write_pidfile(self) -> None:
        lines = []
        for name, proc in self._procs.items():
            st = _proc_start_time(proc.pid)
            if st is not None and proc.poll() is None:
                lines.append(f"{name} {proc.pid} {st}\n")
        if lines:
            _write(self.pidfile, "".join(lines).encode())
        else:
            self.pidfile.unlink(missing_ok=True)

    def _start_etcd(self) -> None:
        p = self.pki_dir
        client_url = f"https://{self.address}:{self.etcd_client_port}"
        peer_url = f"https://{self.address}:{self.etcd_peer_port}"
        args = [
            str(self.bin_dir / ETCD),
            f"--name={self.name}",
            f"--data-dir={self.etcd_data_dir}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster={self.name}={peer_url}",
            "--initial-cluster-state=new",
            f"--initial-cluster-token=kslab-{self.name}",
            f"--cert-file={p / 'etcd-server.crt'}",
            f"--key-file={p / 'etcd-server.key'}",
            f"--trusted-ca-file={p / 'ca.crt'}",
            "--client-cert-auth=true",
            f"--peer-cert-file={p / 'etcd-peer.crt'}",
            f"--peer-key-file={p / 'etcd-peer.key'}",
            f"--peer-trusted-ca-file={p / 'ca.crt'}",
            "--peer-client-cert-auth=true",
            "--unsafe-no-fsync=true",  # test data only: durability is not needed, speed is
            "--snapshot-count=10000",
            "--quota-backend-bytes=1073741824",
            "--log-level=warn",
        ]
        self._spawn(ETCD, args, self.etcd_log)

    def _start_apiserver_process(self) -> None:
        p = self.pki_dir
        args = [
            str(self.bin_dir / APISERVER),
            f"--bind-address={self.address}",
            f"--advertise-address={self.address}",
            f"--secure-port={self.port}",
            f"--cert-dir={p}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--etcd-servers={self.etcd_endpoint}",
            f"--etcd-cafile={p / 'ca.crt'}",
            f"--etcd-certfile={p / 'apiserver-etcd-client.crt'}",
            f"--etcd-keyfile={p / 'apiserver-etcd-client.key'}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            f"--disable-admission-plugins={','.join(DISABLED_ADMISSION_PLUGINS)}",
            "--allow-privileged=true",
            # Endpoints may not hold loopback IPs: the default "lease" reconciler would fail forever
            # writing default/kubernetes endpoints for 127.x; there is nobody to reach through them anyway.
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
        ] + self.extra_apiserver_args
        self._spawn(APISERVER, args, self.apiserver_log)

    def _fail(self, what: str) -> LiveClusterError:
        procs = ", ".join(
            f"{n}[{p.pid}] " + ("running" if p.poll() is None else f"exited {p.returncode}")
            for n, p in self._procs.items()
        )
        return LiveClusterError(
            f"cluster {self.name!r}: {what} ({procs or 'no processes'})\n"
            + _tail(self.etcd_log, 20)
            + "\n"
            + _tail(self.apiserver_log, 40)
        )

    def _check_running(self, *names: str) -> None:
        for n in names:
            proc = self._procs.get(n)
            if proc is None or proc.poll() is not None:
                raise self._fail(f"{n} exited during startup")

    def _wait_etcd_healthy(self, deadline: float) -> None:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.pki_dir / "ca.crt"))
        ctx.load_cert_chain(str(self.pki_dir / "apiserver-etcd-client.crt"),
                            str(self.pki_dir / "apiserver-etcd-client.key"))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx))
        last = "no answer"
        while True:
            self._check_running(ETCD)
            try:
                with opener.open(self.etcd_endpoint + "/health", timeout=5) as resp:
                    body = json.loads(resp.read())
                    if body.get("health") == "true":
                        return
                    last = f"health: {body}"
            except (OSError, ValueError) as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise self._fail(f"etcd not healthy within {self.ready_timeout:.0f} s (last: {last})")
            time.sleep(0.1)

    def _wait_apiserver_ready(self, deadline: float) -> None:
        # /readyz turns 200 before the bootstrap controller has created the system namespaces
        # ("default" comes last), so wait for those too: a test's first write often goes there.
        probes = ["/readyz"] + [f"/api/v1/namespaces/{ns}" for ns in BOOTSTRAP_NAMESPACES]
        last = "no answer"
        while True:
            self._check_running(ETCD, APISERVER)
            try:
                for path in probes:
                    status, body = self.request("GET", path, timeout=5)
                    if status != 200:
                        last = f"GET {path}: HTTP {status}: {str(body)[-300:]}"
                        break
                else:
                    return
            except (OSError, ssl.SSLError) as e:
                last = repr(e)
            if time.monotonic() > deadline:
                raise self._fail(f"kube-apiserver not ready within {self.ready_timeout:.0f} s (last: {last})")
            time.sleep(0.2)

    def _write_kubeconfig(self) -> None:
        def b64(path: Path) -> str:
            return base64.b64encode(path.read_bytes()).decode()

        user = f"kslab-{self.name}-admin"
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": self.context,
                    "cluster": {"server": self.server, "certificate-authority-data": b64(self.ca_cert_path)},
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": b64(self.admin_cert_path),
                        "client-key-data": b64(self.admin_key_path),
                    },
                }
            ],
            "contexts": [{"name": self.context, "context": {"cluster": self.context, "user": user}}],
            "current-context": self.context,
            "preferences": {},
        }
        _write(self.kubeconfig_path, yaml.safe_dump(cfg, sort_keys=False).encode(), private=True)


# ---------------------------------------------------------------------------------------------------
# command line: bring a cluster up for manual use, and tear down what a run left behind


def _main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a cluster and leave it running; prints the kubeconfig path")
    up.add_argument("name")
    up.add_argument("workdir")
    up.add_argument("--address", default="127.0.0.1")
    up.add_argument("--bin-dir", default=None, help="default: from tools/kube/build.sh --check")
    down = sub.add_parser("down", help="stop the processes recorded in <workdir>/pids")
    down.add_argument("workdir", nargs="+")
    args = ap.parse_args(argv)

    if args.cmd == "up":
        bin_dir = Path(args.bin_dir) if args.bin_dir else find_bin_dir()
        c = LiveCluster(args.name, args.workdir, bin_dir, args.address).start()
        c.detach()  # leave the processes running; `down` stops them through <workdir>/pids
        print(f"server {c.server} ready in {c.startup_seconds:.1f} s", file=__import__("sys").stderr)
        print(c.kubeconfig_path)
        return 0
    for wd in args.workdir:
        stopped = kill_recorded(wd)
        print(f"{wd}: stopped {', '.join(stopped) if stopped else 'nothing'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
