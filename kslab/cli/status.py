"""`make status` and `make graph`: read a lab through its stack's kubeconfigs; never change it.

    python -m kslab.cli.status status --stack S [--json] [--sample-seconds N]
    python -m kslab.cli.status graph --stack S [--out-dir D]

Run by tools/lab.sh (which sets the backend and passphrase). The stack's outputs (`pulumi stack output --json
--show-secrets`) are read into memory for the kubeconfigs and never printed. Before any `up` there are no
outputs: `status` says so, and `graph` draws the lab as the stack file declares it.
Exit codes: 0 no finding, 1 findings, 2 the stack file or the state cannot be read.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import functools
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import yaml

from kslab.cli import findings as st
from kslab.cli.stack_spec import load_spec_or_say_why
from kslab.model import versions
from kslab.model.spec import LabSpec
from kslab.render import tenants as tenant_render
from kslab.render.lines import line_for
from kslab.steps.errors import ApiFailure, Transient
from kslab.steps.kube import Kube

OUTPUT_TIMEOUT = 120  # seconds for `pulumi stack output`


def stack_outputs(project_dir: str, stack: str) -> dict:
    """The stack's outputs with secrets shown, in memory only ({} before the first up)."""
    proc = subprocess.run(["pulumi", "stack", "output", "--json", "--show-secrets", "--stack", stack],
                          cwd=project_dir, capture_output=True, text=True, timeout=OUTPUT_TIMEOUT)
    if proc.returncode != 0 and "no stack named" in proc.stderr:
        return {}  # never brought up (not even selected)
    if proc.returncode != 0:
        raise RuntimeError(f"pulumi stack output failed: {proc.stderr.strip().splitlines()[-1:] or ['?']}")
    return json.loads(proc.stdout or "{}") or {}


def _fact(fn, default=None):
    """A read that may meet an unreachable or refusing server: (value, None) or (default, reason)."""
    value, error = _read(fn, default)
    return value, None if error is None else str(error)


def _read(fn, default=None):
    try:
        return fn(), None
    except (Transient, ApiFailure) as exc:
        return default, exc


def read_cluster(c: st.ClusterStatus, kube: Kube | None) -> dict:
    """Fill one cluster's record; returns what the join checks need from it (kept in memory only)."""
    private: dict = {}
    if kube is None:
        return private
    _, error = _read(kube.kube_system_uid)  # the cheapest read that proves the cluster answers
    cc = None
    if error is None:  # a cc that cannot be read is not "no cc": it is the cluster failing to answer
        cc, error = _read(kube.cluster_configuration)
    c.reachable = error is None
    if error is not None:
        c.refused = isinstance(error, ApiFailure)  # it answered: 401/403, not a way to heal by waiting
        c.unreachable_reason = str(error).split(": ", 1)[-1]
        return private
    c.cc_found = cc is not None
    spec_, status_ = (cc or {}).get("spec") or {}, (cc or {}).get("status") or {}
    c.cc_role = (spec_.get("multicluster") or {}).get("clusterRole")
    c.installed_version = (status_.get("core") or {}).get("version")
    c.components = {k: str(v.get("status")) for k, v in status_.items()
                    if isinstance(v, dict) and "status" in v and k != "core"}
    text, _ = _fact(kube.kubesphere_yaml)
    try:
        config = yaml.safe_load(text or "") or {}
    except yaml.YAMLError:
        config = {}
    config = config if isinstance(config, dict) else {}
    release = versions.KUBESPHERE_RELEASES.get(c.kubesphere_version)
    if release is not None:
        c.reported_role = st.reported_role(release, config or {})
    jwt = line_for(c.kubesphere_version).jwt_secret_of(config) if text else None
    cc_jwt = (spec_.get("authentication") or {}).get("jwtSecret")
    private["jwt"] = jwt
    if jwt is not None and cc_jwt:
        c.jwt_in_cc = cc_jwt == jwt
    return private


def _insecure(cluster_obj: dict) -> bool:
    """The join's kubeconfig (Cluster spec.connection.kubeconfig, base64) skips TLS verification."""
    encoded = ((cluster_obj.get("spec") or {}).get("connection") or {}).get("kubeconfig") or ""
    try:
        doc = yaml.safe_load(base64.b64decode(encoded)) or {}
    except (ValueError, yaml.YAMLError):
        return False
    if not isinstance(doc, dict) or not isinstance(doc.get("clusters"), list):
        return False
    return any((c.get("cluster") or {}).get("insecure-skip-tls-verify") is True
               for c in (doc.get("clusters") or []) if isinstance(c, dict))


def read_join(j: st.JoinStatus, host: Kube | None, member_private: dict, host_private: dict,
              member: st.ClusterStatus) -> None:
    j.member_reachable = member.reachable
    if host is None:
        return
    obj, reason = _fact(lambda: host.member_cluster(j.member))
    if reason:
        j.read_error = reason
        return
    j.cluster_found = obj is not None
    if obj is not None:
        meta = obj.get("metadata") or {}
        j.conditions = {c.get("type"): str(c.get("status")) for c in (obj.get("status") or {}).get("conditions") or []}
        j.deleting_since = meta.get("deletionTimestamp")
        j.deleting_seconds = _age_seconds(j.deleting_since)
        j.finalizers = list(meta.get("finalizers") or [])
        j.insecure = _insecure(obj)
    fed, reason = _fact(lambda: host.kubefed_cluster(j.member))
    if reason is None:
        if fed is None:
            j.kubefed_ready = "absent"
        else:
            # kubefed@v0.8.1:pkg/controller/kubefedcluster/clusterclient.go GetClusterHealthStatus: Ready
            # (ClusterReady/ClusterNotReady) from the member's /healthz, Offline=True when it cannot be reached.
            conds = {c.get("type"): str(c.get("status")) for c in (fed.get("status") or {}).get("conditions") or []}
            j.kubefed_ready = conds.get("Ready", "not reported yet")
            j.kubefed_offline = conds.get("Offline") == "True" if "Offline" in conds else None
            spec = fed.get("spec") or {}
            if "*" in (spec.get("disabledTLSValidations") or []):
                j.insecure = True
    m_jwt, h_jwt = member_private.get("jwt"), host_private.get("jwt")
    if m_jwt is not None and h_jwt is not None:
        j.jwt_matches = m_jwt == h_jwt


def _age_seconds(timestamp: str | None) -> float | None:
    """Seconds since an API timestamp (RFC 3339, UTC), or None."""
    if not timestamp:
        return None
    try:
        then = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return None
    return max(0.0, (dt.datetime.now(dt.UTC) - then).total_seconds())


def _placed_on(placement: dict, member: str) -> bool:
    """Does a federated object's placement select `member`? kubefed: an explicit `clusters` list wins; else an
    empty clusterSelector selects every cluster (createFederatedUser's); a selector with labels is not judged
    (kslab does not read the Cluster labels it would match), so it counts as not placed."""
    if isinstance(placement.get("clusters"), list):
        return any(isinstance(c, dict) and c.get("name") == member for c in placement["clusters"])
    selector = placement.get("clusterSelector")
    return isinstance(selector, dict) and not selector.get("matchLabels") and not selector.get("matchExpressions")


def shared_objects(member: str, hosts: dict[str, Kube]) -> list[st.SharedObject]:
    """Federated IAM objects of one name that several hosts place on `member`."""
    placed: dict[tuple[str, str], dict[str, str]] = {}  # (member plural, name) -> host -> template (JSON)
    for host_name, kube in hosts.items():
        for member_plural, fed_plural in st.FEDERATED_IAM_KINDS:
            items, _ = _fact(lambda kube=kube, fed_plural=fed_plural: kube.list_objects(
                st.FEDERATED_GROUP, st.FEDERATED_VERSION, fed_plural), [])
            for item in items or []:
                spec = item.get("spec") or {}
                if _placed_on(spec.get("placement") or {}, member):
                    placed.setdefault((member_plural, item["metadata"]["name"]), {})[host_name] = json.dumps(
                        spec.get("template"), sort_keys=True)
    return [st.SharedObject(member, kind, name, sorted(by_host), len(set(by_host.values())) == 1,
                            st.is_built_in(kind, name))
            for (kind, name), by_host in sorted(placed.items()) if len(by_host) > 1]


def churning(member: str, kube: Kube, seconds: float) -> list[st.ChurningObject]:
    """Objects kubefed manages on `member` whose resourceVersion changes over `seconds` (sampled each second)."""
    if seconds <= 0:
        return []
    seen: dict[tuple[str, str], list[str]] = {}
    deadline = time.monotonic() + seconds
    while True:
        for plural, _ in st.FEDERATED_IAM_KINDS:
            items, _ = _fact(lambda plural=plural: kube.list_objects(st.MEMBER_GROUP, st.MEMBER_VERSION, plural,
                                                       st.KUBEFED_MANAGED_SELECTOR), [])
            for item in items or []:
                versions_ = seen.setdefault((plural, item["metadata"]["name"]), [])
                rv = item["metadata"].get("resourceVersion")
                if not versions_ or versions_[-1] != rv:
                    versions_.append(rv)
        if time.monotonic() >= deadline:
            break
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    return [st.ChurningObject(member, kind, name, len(rvs) - 1, seconds) for (kind, name), rvs in sorted(seen.items())
            if len(rvs) - 1 >= st.CHURN_CHANGES]


# The kind each tenant is on a cluster (kslab/render/tenants.py): a user's User, a workspace's Workspace (KubeFed's), a
# project's Namespace.
_TENANT_KINDS = {"user": "User", "workspace": "Workspace", "project": "Namespace"}


def read_tenants(lab: st.LabStatus, kubes: dict[str, Kube], spec: LabSpec) -> None:
    """Whether each tenant is on each cluster it should be on, and whether its home federates it."""
    by_name = {c.name: c for c in lab.clusters}
    for t in lab.tenants:
        kube = kubes.get(t.cluster)
        if kube is None or not by_name[t.cluster].reachable:
            continue
        kind = tenant_render.KINDS[_TENANT_KINDS[t.kind]]
        found, error = _read(functools.partial(kube.get_object, kind.api_version, kind.plural, t.name))
        t.present = None if error is not None else found is not None
        home = kubes.get(t.home)
        if kind.federated and t.cluster != t.home and home is not None and by_name[t.home].reachable \
                and spec.cluster(t.home).role == "host":
            fed, error = _read(functools.partial(home.get_object, tenant_render.FEDERATED_API, kind.federated, t.name))
            t.federated = None if error is not None else fed is not None


def collect(spec: LabSpec, stack: str, outputs: dict, sample_seconds: float) -> st.LabStatus:
    lab = st.declared(spec, stack)
    kubeconfigs = outputs.get("kubeconfigs") or {}
    lab.up = bool(kubeconfigs)
    if not lab.up:
        return lab
    for c in lab.clusters:
        c.console_url = ((outputs.get("clusters") or {}).get(c.name) or {}).get("consoleUrl") or c.console_url
    kubes = {}
    for c in lab.clusters:
        c.in_outputs = c.name in kubeconfigs
        if not c.in_outputs:
            continue
        try:
            kubes[c.name] = Kube(kubeconfigs[c.name], f"cluster '{c.name}'")
        except Exception as exc:  # the kubernetes client's ConfigException and the YAML/file errors under it
            c.reachable, c.refused = False, True
            c.unreachable_reason = f"its kubeconfig cannot be used: {exc.__class__.__name__}"
    with ThreadPoolExecutor(max_workers=max(1, len(lab.clusters))) as pool:  # clusters are read side by side
        private = dict(zip([c.name for c in lab.clusters],
                           pool.map(lambda c: read_cluster(c, kubes.get(c.name)), lab.clusters), strict=True))
    by_name = {c.name: c for c in lab.clusters}
    for j in lab.joins:
        host_kube = kubes.get(j.host) if by_name[j.host].reachable else None
        read_join(j, host_kube, private[j.member], private[j.host], by_name[j.member])
    read_tenants(lab, kubes, spec)
    multi = [m for m in spec.multi_host_members if by_name[m].reachable]
    if multi:
        lab.sample_seconds = sample_seconds
    for member in multi:
        hosts = {h: kubes[h] for h in spec.hosts_of(member) if by_name[h].reachable}
        lab.shared_objects += shared_objects(member, hosts)
    if multi and sample_seconds > 0:
        with ThreadPoolExecutor(max_workers=len(multi)) as pool:
            for found in pool.map(lambda m: churning(m, kubes[m], sample_seconds), multi):
                lab.churning += found
    return lab


def _sample_seconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= st.MAX_SAMPLE_SECONDS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {st.MAX_SAMPLE_SECONDS:g} seconds")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kslab status", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("status", "graph"))
    parser.add_argument("--stack", required=True)
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--sample-seconds", type=_sample_seconds, default=st.DEFAULT_SAMPLE_SECONDS,
                        help="how long members of several hosts are watched for churning objects (0: not at all)")
    parser.add_argument("--out-dir", default=".", help="where graph writes <stack>.svg and <stack>.png")
    parser.add_argument("--offline", action="store_true", help="graph: draw the stack file only, read nothing")
    args = parser.parse_args(argv)
    spec = load_spec_or_say_why(args.project_dir, args.stack)
    if spec is None:
        return 2
    outputs: dict = {}
    if not args.offline:
        try:
            outputs = stack_outputs(args.project_dir, args.stack)
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            print(f"kslab: cannot read the state of {args.stack}: {exc}. If a run was interrupted, "
                  f"`make preview STACK={args.stack}` repairs what it left (README: When a run is interrupted)",
                  file=sys.stderr)
            return 2
    sample = args.sample_seconds if args.command == "status" else 0.0
    lab = collect(spec, args.stack, outputs, sample)
    found = st.findings(lab)
    if args.command == "graph":
        from kslab.cli import graph
        try:
            written = graph.write(spec, lab, args.out_dir, args.stack)
        except graph.GraphError as exc:
            print(f"kslab: {exc}", file=sys.stderr)
            return 2
        print("wrote " + " and ".join(written))
        return 0
    # The lab registry is the machine's, not the lab's: a line of its own, never a finding of the lab.
    registry_line = None
    if spec.image_sources is not None:
        from kslab.cli.registry import status_line
        registry_line = status_line(spec.image_sources.lab)
    if args.json:
        doc = st.as_json(lab, found)
        if registry_line:
            doc["labRegistry"] = registry_line
        print(json.dumps(doc, indent=2))
    else:
        print(st.table(lab, found) + (f"\n{registry_line}" if registry_line else ""))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
