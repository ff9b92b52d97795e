"""Test fixture: KubeSphere's tenant controllers and KubeFed's propagation of tenants, played on one cluster
(tests/harness/ks_operators.py's ClusterActor runs it every tick). Product code never imports this.

Each behaviour mirrors upstream at v3.2.1 and v3.4.1 (the tenant controllers changed only in logging between the
tags, so one play serves both; where the releases differ it is said). K = kubesphere/kubesphere@<tag>,
I = kubesphere/ks-installer@<tag>, F = kubernetes-sigs/kubefed@v0.8.1 (KubeSphere's kubefed build).

On every cluster (every cluster runs ks-controller-manager):
- user controller (K pkg/controller/user/user_controller.go Reconcile): the finalizer
  `finalizers.kubesphere.io/users`; encryptPassword: a password that is not a bcrypt hash (bcrypt.Cost) becomes
  bcrypt.GenerateFromPassword(pw, DefaultCost=10) with annotation iam.kubesphere.io/last-password-change-time and
  kubectl's last-applied annotation removed, skipped for a copy labelled kubefed.io/managed=true; syncUserStatus: an
  encrypted password and no state -> status.state Active (v3.2.1 also turns a Disabled user with a password back to
  Active; v3.4.1 leaves it Disabled); an empty password -> Disabled. On delete (deleteRoleBindings) the
  GlobalRoleBindings and WorkspaceRoleBindings labelled iam.kubesphere.io/user-ref=<user> go, then the finalizer.
- workspace controller (K pkg/controller/workspace/workspace_controller.go): finalizer
  `finalizers.tenant.kubesphere.io` on every Workspace, removed on delete.
- namespace controller (K pkg/controller/namespace/namespace_controller.go): a namespace labelled
  kubesphere.io/workspace (not a kubefed copy) gets finalizer `finalizers.kubesphere.io/namespaces`, label
  kubesphere.io/namespace=<name> and a controller ownerReference to its Workspace (bindWorkspace); while that
  Workspace does not exist, unbindWorkspace takes the workspace label off. On delete the finalizer goes.
On a host with multicluster (the same file's multiClusterSync of each controller):
- user controller: label kubefed.io/managed=false and a FederatedUser (ks_operators.py plays it, with the flapping
  between two hosts).
- globalrolebinding controller (K pkg/controller/globalrolebinding/globalrolebinding_controller.go): label
  kubefed.io/managed=false; FederatedGlobalRoleBinding of its name, template {metadata {labels, annotations},
  subjects, roleRef}, placement clusterSelector {} (every cluster), owned by the binding.
- workspacetemplate controller (K pkg/controller/workspacetemplate/workspacetemplate_controller.go): finalizer
  `finalizers.workspacetemplate.kubesphere.io`; label kubefed.io/managed=false on the template; a
  FederatedWorkspace of its name with the template's labels and its whole spec (placement copied as it is, no
  owner); initWorkspaceRoles: WorkspaceRoles `<ws>-admin|regular|viewer|self-provisioner` (I roles/ks-core/prepare/
  files/ks-init/role-templates.yaml RoleBases workspace-*) labelled kubesphere.io/workspace; initManagerRoleBinding:
  WorkspaceRoleBinding `<ws>-admin` for the manager when that User exists, labels exactly {kubesphere.io/workspace,
  iam.kubesphere.io/user-ref}. Delete: the host's namespaces of the workspace, the FederatedWorkspace and the
  Workspace go, then the finalizer. Without multicluster (singleClusterSync) it makes the Workspace itself.
- workspacerolebinding / workspacerole controllers (K pkg/controller/workspacerolebinding, workspacerole): label
  kubefed.io/managed=false; FederatedWorkspaceRoleBinding / FederatedWorkspaceRole, placement clusterSelector {}
  (not the workspace's placement), owned by the object; the object itself is owned by its WorkspaceTemplate.
- the garbage collector (played on both tiers for these kinds): an object whose owner is gone is deleted.
KubeFed's sync controller (F pkg/controller/sync/controller.go, dispatch/): finalizer `kubefed.io/sync-controller`
on each federated object; its template written to each Ready KubeFedCluster the placement selects (clusters by
name, or an empty clusterSelector: all), labelled kubefed.io/managed=true; a copy on a cluster the placement no
longer selects is deleted, and so is every copy when the federated object is deleted, before its finalizer goes.
"""
from __future__ import annotations

import datetime as dt
import time
from typing import Any

import bcrypt
from kubernetes import client
from kubernetes.client.rest import ApiException

KUBEFED_MANAGED = "kubefed.io/managed"
WORKSPACE_LABEL = "kubesphere.io/workspace"
USER_REF = "iam.kubesphere.io/user-ref"
USER_FINALIZER = "finalizers.kubesphere.io/users"
WORKSPACE_FINALIZER = "finalizers.tenant.kubesphere.io"
TEMPLATE_FINALIZER = "finalizers.workspacetemplate.kubesphere.io"
NAMESPACE_FINALIZER = "finalizers.kubesphere.io/namespaces"
SYNC_FINALIZER = "kubefed.io/sync-controller"
LAST_PASSWORD_CHANGE = "iam.kubesphere.io/last-password-change-time"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
WORKSPACE_ROLES = ("admin", "regular", "viewer", "self-provisioner")
IAM, TENANT = ("iam.kubesphere.io", "v1alpha2"), ("tenant.kubesphere.io", "v1alpha1")
TEMPLATE = ("tenant.kubesphere.io", "v1alpha2")
FEDERATED = ("types.kubefed.io", "v1beta1")
# federated plural -> (target group, version, plural, kind) (I roles/ks-multicluster/files/kubefed/federatedcrds)
TARGETS = {
    "federatedglobalrolebindings": (*IAM, "globalrolebindings", "GlobalRoleBinding"),
    "federatedworkspaces": (*TENANT, "workspaces", "Workspace"),
    "federatedworkspaceroles": (*IAM, "workspaceroles", "WorkspaceRole"),
    "federatedworkspacerolebindings": (*IAM, "workspacerolebindings", "WorkspaceRoleBinding"),
}


def crd(group: str, plural: str, kind: str, version: str, schema: dict | None = None) -> dict:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Cluster",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
                     "versions": [{"name": version, "served": True, "storage": True, "schema": {"openAPIV3Schema":
                                   schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


# K staging/src/kubesphere.io/api/iam/v1alpha2/types.go UserSpec.EncryptedPassword, v3.4.1 only (in I's
# roles/ks-core/ks-core/files/ks-core/crds/iam.kubesphere.io_users.yaml): the API server refuses a bad password.
PASSWORD_PATTERN = (r"^(.*[a-z].*[A-Z].*[0-9].*)$|^(.*[a-z].*[0-9].*[A-Z].*)$|^(.*[A-Z].*[a-z].*[0-9].*)$|"
                    r"^(.*[A-Z].*[0-9].*[a-z].*)$|^(.*[0-9].*[a-z].*[A-Z].*)$|^(.*[0-9].*[A-Z].*[a-z].*)$|"
                    r"^(\$2[ayb]\$.{56})$")


def user_crd(version: str) -> dict:
    if version != "v3.4.1":
        return crd(*IAM[:1], "users", "User", IAM[1])
    password = {"type": "string", "minLength": 8, "maxLength": 64, "pattern": PASSWORD_PATTERN}
    return crd(IAM[0], "users", "User", IAM[1], {
        "type": "object", "x-kubernetes-preserve-unknown-fields": True,
        "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                                "properties": {"password": password}}}})


# The ks-core chart's tenant and IAM CRDs (I roles/ks-core/ks-core/files/ks-core/crds), and the federated types the
# kubefed chart adds on a host (I roles/ks-multicluster/files/kubefed/federatedcrds, FederatedUser in ks_operators).
KS_CORE_TENANT_CRDS = (
    crd(*TEMPLATE[:1], "workspacetemplates", "WorkspaceTemplate", TEMPLATE[1]),
    crd(IAM[0], "globalrolebindings", "GlobalRoleBinding", IAM[1]),
    crd(IAM[0], "workspaceroles", "WorkspaceRole", IAM[1]),
    crd(IAM[0], "workspacerolebindings", "WorkspaceRoleBinding", IAM[1]),
)
FEDERATED_TENANT_CRDS = tuple(crd(FEDERATED[0], plural, f"Federated{kind}", FEDERATED[1])
                              for plural, (_, _, _, kind) in TARGETS.items())


def _is_encrypted(password: str) -> bool:
    """isEncrypted: bcrypt.Cost(password) > 0, i.e. the text parses as a bcrypt hash."""
    try:
        bcrypt.checkpw(b"", password.encode())
    except ValueError:
        return False
    return True


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _labels(obj: dict) -> dict:
    return obj["metadata"].get("labels") or {}


def _owner(obj: dict, api_version: str, kind: str) -> dict:
    return {"apiVersion": api_version, "kind": kind, "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}


class Tenants:
    """The tenant controllers of one played cluster (`actor`: its ClusterActor)."""

    def __init__(self, actor):
        self.actor = actor
        self.custom: client.CustomObjectsApi = actor.custom
        self.core: client.CoreV1Api = actor.core
        # (cluster, federated plural, name) -> resourceVersion kubefed wrote there (ObjectNeedsUpdate)
        self.propagated: dict[tuple[str, str, str], str] = {}
        self.sync_paused = False  # a test stops this host's KubeFed sync (an outage), then lets it go on
        self.ticks = 0  # ticks done (a test that paused the sync waits for one to end after it: no sync under way)

    # --- small API helpers ----------------------------------------------------------------------------------------
    def _list(self, group: str, version: str, plural: str, api=None) -> list[dict]:
        try:
            return (api or self.custom).list_cluster_custom_object(group, version, plural,
                                                                   _request_timeout=5)["items"]
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise

    def _replace(self, group: str, version: str, plural: str, obj: dict, api=None) -> None:
        try:
            (api or self.custom).replace_cluster_custom_object(group, version, plural, obj["metadata"]["name"], obj,
                                                               _request_timeout=5)
        except ApiException as exc:
            if exc.status not in (404, 409):  # gone, or changed meanwhile: the next tick sees it again
                raise

    def _create(self, group: str, version: str, plural: str, body: dict, api=None) -> None:
        try:
            (api or self.custom).create_cluster_custom_object(group, version, plural, body, _request_timeout=5)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _delete(self, group: str, version: str, plural: str, name: str, api=None) -> None:
        try:
            (api or self.custom).delete_cluster_custom_object(group, version, plural, name, _request_timeout=5)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _finalize(self, group: str, version: str, plural: str, obj: dict, finalizer: str) -> bool:
        """Add `finalizer` to a live object, or on its delete remove it; True while the object is being deleted."""
        meta = obj["metadata"]
        finalizers = meta.get("finalizers") or []
        if meta.get("deletionTimestamp"):
            if finalizer in finalizers:
                meta["finalizers"] = [f for f in finalizers if f != finalizer]
                self._replace(group, version, plural, obj)
            return True
        if finalizer not in finalizers:
            meta["finalizers"] = [*finalizers, finalizer]
            self._replace(group, version, plural, obj)
        return False

    # --- the controllers ---------------------------------------------------------------------------------------------
    def pause_sync(self, seconds: float = 30.0) -> None:
        """Stop KubeFed's sync here and return once no sync is under way (two ticks ended after the pause)."""
        self.sync_paused = True
        seen, deadline = self.ticks, time.monotonic() + seconds
        while self.ticks < seen + 2 and time.monotonic() < deadline:
            time.sleep(0.1)

    def tick(self) -> None:
        if self.actor.version is None:
            return
        self.users()
        self.workspaces()
        self.namespaces()
        if self.actor.multicluster_enabled():
            self.templates(multicluster=True)
            self.federate_bindings()
            self.collect_garbage()
            if not self.sync_paused:
                self.sync()
        else:
            self.templates(multicluster=False)
            self.collect_garbage()
        self.ticks += 1

    def users(self) -> None:
        for user in self._list(*IAM, "users"):
            meta = user["metadata"]
            if meta.get("deletionTimestamp"):
                if USER_FINALIZER in (meta.get("finalizers") or []):
                    for plural in ("globalrolebindings", "workspacerolebindings"):  # deleteRoleBindings
                        for binding in self._list(*IAM, plural):
                            if _labels(binding).get(USER_REF) == meta["name"]:
                                self._delete(*IAM, plural, binding["metadata"]["name"])
                    self._finalize(*IAM, "users", user, USER_FINALIZER)
                continue
            if USER_FINALIZER not in (meta.get("finalizers") or []):
                self._finalize(*IAM, "users", user, USER_FINALIZER)
                continue
            if _labels(user).get(KUBEFED_MANAGED) == "true":
                continue  # a copy kubefed wrote: no encryption, no status sync
            spec, status = user.setdefault("spec", {}), user.get("status") or {}
            password = spec.get("password") or ""
            if password and not _is_encrypted(password):  # encryptPassword
                spec["password"] = bcrypt.hashpw(password.encode(), bcrypt.gensalt(10)).decode()
                annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != LAST_APPLIED}
                meta["annotations"] = {**annotations, LAST_PASSWORD_CHANGE: _now()}
                self._replace(*IAM, "users", user)
                continue
            state = status.get("state") or ""
            wanted = state
            if not password:
                wanted = "Disabled"
            elif state == "" or (state == "Disabled" and self.actor.version == "v3.2.1"):
                wanted = "Active"
            if wanted != state:
                user["status"] = {**status, "state": wanted, "lastTransitionTime": _now()}
                self._replace(*IAM, "users", user)

    def workspaces(self) -> None:
        for workspace in self._list(*TENANT, "workspaces"):
            self._finalize(*TENANT, "workspaces", workspace, WORKSPACE_FINALIZER)

    def namespaces(self) -> None:
        workspaces = {w["metadata"]["name"]: w for w in self._list(*TENANT, "workspaces")
                      if not w["metadata"].get("deletionTimestamp")}
        for ns in self.core.list_namespace(_request_timeout=5).items:
            meta = ns.metadata
            labels = meta.labels or {}
            finalizers = meta.finalizers or []
            if meta.deletion_timestamp:
                if NAMESPACE_FINALIZER in finalizers:  # a JSON patch: a merge patch only adds to finalizers
                    i = finalizers.index(NAMESPACE_FINALIZER)
                    try:
                        self.core.patch_namespace(meta.name, [
                            {"op": "test", "path": f"/metadata/finalizers/{i}", "value": NAMESPACE_FINALIZER},
                            {"op": "remove", "path": f"/metadata/finalizers/{i}"}], _request_timeout=5)
                    except ApiException as exc:
                        if exc.status not in (404, 409, 422):
                            raise
                continue
            workspace = labels.get(WORKSPACE_LABEL)
            if workspace is None or labels.get(KUBEFED_MANAGED) == "true":
                continue
            change: dict[str, Any] = {}
            if NAMESPACE_FINALIZER not in finalizers:
                change["finalizers"] = [*finalizers, NAMESPACE_FINALIZER]
            if labels.get("kubesphere.io/namespace") != meta.name:
                change.setdefault("labels", {})["kubesphere.io/namespace"] = meta.name
            owner = workspaces.get(workspace)
            if owner is None:  # unbindWorkspace
                change.setdefault("labels", {})[WORKSPACE_LABEL] = None
                change["ownerReferences"] = [r.to_dict() for r in meta.owner_references or []
                                             if r.kind != "Workspace"] or None
            elif not any(r.kind == "Workspace" and r.uid == owner["metadata"]["uid"]
                         for r in meta.owner_references or []):  # bindWorkspace
                change["ownerReferences"] = [_owner(owner, "tenant.kubesphere.io/v1alpha1", "Workspace")]
            if change:
                self._patch_namespace(meta.name, {"metadata": change})

    def _patch_namespace(self, name: str, body: dict) -> None:
        refs = body["metadata"].get("ownerReferences")
        if refs:
            body["metadata"]["ownerReferences"] = [{"apiVersion": r.get("apiVersion") or r.get("api_version"),
                                                    "kind": r["kind"], "name": r["name"], "uid": r["uid"],
                                                    "controller": r.get("controller"),
                                                    "blockOwnerDeletion": r.get("blockOwnerDeletion",
                                                                                r.get("block_owner_deletion"))}
                                                   for r in refs]
        try:
            self.core.patch_namespace(name, body, _request_timeout=5)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def templates(self, multicluster: bool) -> None:
        users = {u["metadata"]["name"] for u in self._list(*IAM, "users")
                 if not u["metadata"].get("deletionTimestamp")}
        for template in self._list(*TEMPLATE, "workspacetemplates"):
            name = template["metadata"]["name"]
            if self._finalize_template(template, multicluster):
                continue
            spec = template.get("spec") or {}
            if multicluster:
                if _labels(template).get(KUBEFED_MANAGED) != "false":  # ensureNotControlledByKubefed
                    template["metadata"]["labels"] = {**_labels(template), KUBEFED_MANAGED: "false"}
                    self._replace(*TEMPLATE, "workspacetemplates", template)
                    continue
                self.upsert(*FEDERATED, "federatedworkspaces", {
                    "apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedWorkspace",
                    "metadata": {"name": name, "labels": _labels(template)}, "spec": spec},
                    lambda live, body: (live.get("spec"), _labels(live)) != (body["spec"], body["metadata"]["labels"]))
            else:
                inner = spec.get("template") or {}
                self.upsert(*TENANT, "workspaces", {
                    "apiVersion": "tenant.kubesphere.io/v1alpha1", "kind": "Workspace",
                    "metadata": {"name": name, "labels": (inner.get("metadata") or {}).get("labels") or {}},
                    "spec": inner.get("spec") or {}},
                    lambda live, body: (live.get("spec"), _labels(live)) != (body["spec"], body["metadata"]["labels"]))
            for role in WORKSPACE_ROLES:  # initWorkspaceRoles
                self._create(*IAM, "workspaceroles", {
                    "apiVersion": "iam.kubesphere.io/v1alpha2", "kind": "WorkspaceRole",
                    "metadata": {"name": f"{name}-{role}", "labels": {WORKSPACE_LABEL: name},
                                 "ownerReferences": [_owner(template, "tenant.kubesphere.io/v1alpha2",
                                                            "WorkspaceTemplate")]},
                    "rules": []})
            manager = ((spec.get("template") or {}).get("spec") or {}).get("manager")
            if manager and manager in users:  # initManagerRoleBinding
                self.upsert(*IAM, "workspacerolebindings", {
                    "apiVersion": "iam.kubesphere.io/v1alpha2", "kind": "WorkspaceRoleBinding",
                    "metadata": {"name": f"{name}-admin", "labels": {WORKSPACE_LABEL: name, USER_REF: manager},
                                 "ownerReferences": [_owner(template, "tenant.kubesphere.io/v1alpha2",
                                                            "WorkspaceTemplate")]},
                    "roleRef": {"apiGroup": "iam.kubesphere.io", "kind": "WorkspaceRole", "name": f"{name}-admin"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": manager}]},
                    lambda live, body: (live.get("subjects"), _labels(live)) != (body["subjects"],
                                                                                  body["metadata"]["labels"]))

    def _finalize_template(self, template: dict, multicluster: bool) -> bool:
        meta = template["metadata"]
        name = meta["name"]
        if meta.get("deletionTimestamp") and TEMPLATE_FINALIZER in (meta.get("finalizers") or []):
            if multicluster:  # deleteWorkspace: the host's namespaces of it, then the FederatedWorkspace
                for ns in self.core.list_namespace(label_selector=f"{WORKSPACE_LABEL}={name}",
                                                   _request_timeout=5).items:
                    try:
                        self.core.delete_namespace(ns.metadata.name, _request_timeout=5)
                    except ApiException as exc:
                        if exc.status != 404:
                            raise
                self._delete(*FEDERATED, "federatedworkspaces", name)
            self._delete(*TENANT, "workspaces", name)
        return self._finalize(*TEMPLATE, "workspacetemplates", template, TEMPLATE_FINALIZER)

    def upsert(self, group: str, version: str, plural: str, body: dict, differs) -> None:
        try:
            live = self.custom.get_cluster_custom_object(group, version, plural, body["metadata"]["name"],
                                                         _request_timeout=5)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._create(group, version, plural, body)
            return
        if live["metadata"].get("deletionTimestamp") or not differs(live, body):
            return
        merged = {**live, **{k: v for k, v in body.items() if k != "metadata"}}
        merged["metadata"] = {**live["metadata"], "labels": body["metadata"].get("labels") or {}}
        self._replace(group, version, plural, merged)

    def federate_bindings(self) -> None:
        """The globalrolebinding, workspacerole and workspacerolebinding controllers' multiClusterSync."""
        for plural, federated in (("globalrolebindings", "federatedglobalrolebindings"),
                                  ("workspaceroles", "federatedworkspaceroles"),
                                  ("workspacerolebindings", "federatedworkspacerolebindings")):
            for obj in self._list(*IAM, plural):
                labels = _labels(obj)
                if obj["metadata"].get("deletionTimestamp") or labels.get(KUBEFED_MANAGED) == "true":
                    continue
                if labels.get(KUBEFED_MANAGED) != "false":
                    obj["metadata"]["labels"] = {**labels, KUBEFED_MANAGED: "false"}
                    self._replace(*IAM, plural, obj)
                    continue
                template: dict[str, Any] = {"metadata": {"labels": labels}}
                if plural == "globalrolebindings":
                    template["metadata"]["annotations"] = obj["metadata"].get("annotations") or {}
                for key in ("roleRef", "subjects", "rules"):
                    if key in obj:
                        template[key] = obj[key]
                kind = TARGETS[federated][3]
                self.upsert(*FEDERATED, federated, {
                    "apiVersion": "types.kubefed.io/v1beta1", "kind": f"Federated{kind}",
                    "metadata": {"name": obj["metadata"]["name"],
                                 "ownerReferences": [_owner(obj, "iam.kubesphere.io/v1alpha2", kind)]},
                    "spec": {"template": template, "placement": {"clusterSelector": {}}}},
                    lambda live, body: live.get("spec") != body["spec"])

    def collect_garbage(self) -> None:
        """The garbage collector, for the kinds above: an object whose controller owner is gone is deleted."""
        kinds = [(*FEDERATED, p) for p in TARGETS] + [(*IAM, "workspaceroles"), (*IAM, "workspacerolebindings")]
        alive: dict[str, set[str]] = {}
        owners = {"GlobalRoleBinding": (*IAM, "globalrolebindings"), "WorkspaceRole": (*IAM, "workspaceroles"),
                  "WorkspaceRoleBinding": (*IAM, "workspacerolebindings"),
                  "WorkspaceTemplate": (*TEMPLATE, "workspacetemplates")}
        for group, version, plural in kinds:
            for obj in self._list(group, version, plural):
                for ref in obj["metadata"].get("ownerReferences") or []:
                    if ref.get("kind") not in owners:
                        continue
                    if ref["kind"] not in alive:
                        alive[ref["kind"]] = {o["metadata"]["uid"] for o in self._list(*owners[ref["kind"]])}
                    if ref["uid"] not in alive[ref["kind"]]:
                        self._delete(group, version, plural, obj["metadata"]["name"])

    # --- kubefed's sync controller -----------------------------------------------------------------------------------
    def sync(self) -> None:
        ready = []
        for fed in self.actor._kubefed_clusters():
            conditions = {c["type"]: c["status"] for c in (fed.get("status") or {}).get("conditions") or []}
            if conditions.get("Ready") == "True":
                ready.append(fed)
        for federated, (group, version, plural, kind) in TARGETS.items():
            for item in self._list(*FEDERATED, federated):
                meta = item["metadata"]
                deleting = bool(meta.get("deletionTimestamp"))
                if not deleting and SYNC_FINALIZER not in (meta.get("finalizers") or []):
                    meta["finalizers"] = [*(meta.get("finalizers") or []), SYNC_FINALIZER]
                    self._replace(*FEDERATED, federated, item)
                    continue
                placement = (item.get("spec") or {}).get("placement") or {}
                chosen = placement.get("clusters")
                all_clusters = chosen is None and placement.get("clusterSelector") is not None \
                    and not (placement["clusterSelector"] or {}).get("matchLabels")
                wanted = {c["name"] for c in chosen or []}
                done = True
                for fed in ready:
                    cluster = fed["metadata"]["name"]
                    selected = not deleting and (all_clusters or cluster in wanted)
                    try:
                        api = client.CustomObjectsApi(self.actor._member_api(fed)[0])
                        if selected:
                            self._propagate(api, cluster, federated, item, (group, version, plural, kind))
                        else:
                            self._remove(api, cluster, federated, meta["name"], (group, version, plural))
                    except Exception as exc:  # the cluster went away meanwhile: its health check marks it
                        done = False
                        self.actor.log(f"{self.actor.name}: kubefed sync of {federated} to {cluster}: "
                                       f"{exc.__class__.__name__}")
                if deleting and done and SYNC_FINALIZER in (meta.get("finalizers") or []):
                    meta["finalizers"] = [f for f in meta["finalizers"] if f != SYNC_FINALIZER]
                    self._replace(*FEDERATED, federated, item)

    def _propagate(self, api, cluster: str, federated: str, item: dict, target: tuple[str, str, str, str]) -> None:
        group, version, plural, kind = target
        name = item["metadata"]["name"]
        template = (item.get("spec") or {}).get("template") or {}
        desired = {k: v for k, v in template.items() if k != "metadata"}
        desired.update({"apiVersion": f"{group}/{version}", "kind": kind, "metadata": {
            "name": name, "labels": {**((template.get("metadata") or {}).get("labels") or {}), KUBEFED_MANAGED: "true"},
            "annotations": (template.get("metadata") or {}).get("annotations") or {}}})
        try:
            current = api.get_cluster_custom_object(group, version, plural, name, _request_timeout=5)
        except ApiException as exc:
            if exc.status != 404:
                raise
            current = None
        key = (cluster, federated, name)
        if current is None:
            written = api.create_cluster_custom_object(group, version, plural, desired, _request_timeout=5)
        elif _labels(current).get(KUBEFED_MANAGED) == "false" or current["metadata"].get("deletionTimestamp"):
            return  # explicitly unmanaged (IsExplicitlyUnmanaged), or on its way out
        elif current["metadata"]["resourceVersion"] != self.propagated.get(key):  # ObjectNeedsUpdate
            desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            # dispatch/retain.go RetainClusterFields: the member's finalizers and annotations are kept
            desired["metadata"]["finalizers"] = current["metadata"].get("finalizers") or []
            desired["metadata"]["annotations"] = {**(current["metadata"].get("annotations") or {}),
                                                  **desired["metadata"]["annotations"]}
            written = api.replace_cluster_custom_object(group, version, plural, name, desired, _request_timeout=5)
        else:
            return
        self.propagated[key] = written["metadata"]["resourceVersion"]

    def _remove(self, api, cluster: str, federated: str, name: str, target: tuple[str, str, str]) -> None:
        key = (cluster, federated, name)
        if key not in self.propagated:
            return  # never placed there by this host
        try:
            current = api.get_cluster_custom_object(*target, name, _request_timeout=5)
        except ApiException as exc:
            if exc.status != 404:
                raise
            current = None
        if current is not None and _labels(current).get(KUBEFED_MANAGED) == "true":
            api.delete_cluster_custom_object(*target, name, _request_timeout=5)
        self.propagated.pop(key, None)
