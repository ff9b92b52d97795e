"""What a lab registers, derived from its spec: the one expectation that the mock tests
and the real-engine preview tests both check (type, name, parent name)."""
from __future__ import annotations

from kslab.model.spec import LabSpec
from kslab.model.step_table import step_type as step

INSTALLER_TYPES = {
    "customresourcedefinition": "kubernetes:apiextensions.k8s.io/v1:CustomResourceDefinition",
    "namespace": "kubernetes:core/v1:Namespace",
    "serviceaccount": "kubernetes:core/v1:ServiceAccount",
    "clusterrole": "kubernetes:rbac.authorization.k8s.io/v1:ClusterRole",
    "clusterrolebinding": "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding",
    "deployment": "kubernetes:apps/v1:Deployment",
}


def expected_resources(lab: LabSpec) -> set[tuple[str, str, str]]:
    out = {("kslab:lab:Lab", "lab", "")}
    if any(c.is_kind for c in lab.clusters):
        out.add((step("preflight"), "preflight", "lab"))
    if any(c.image_check for c in lab.clusters):
        out.add((step("image-check"), "image-check", "lab"))
    if lab.jwt_secret_mode == "shared":
        out.add((step("gen-secret"), "jwt-secret", "lab"))
    for c in lab.clusters:
        n = c.name
        if c.is_kind:
            out |= {("kslab:lab:KindCluster", n, "lab"), (step("kind-create"), f"{n}-kind", n)}
        else:
            out.add(("kslab:lab:ExistingCluster", n, "lab"))
        out.add(("pulumi:providers:kubernetes", f"{n}-k8s", n))
        out |= {("kslab:lab:MulticlusterRole", f"{n}-role", "lab"),
                (step("role-guard"), f"{n}-role-guard", f"{n}-role")}
        inst = f"{n}-kubesphere"
        out.add(("kslab:lab:KubeSphereInstall", inst, "lab"))
        out |= {(t, f"{inst}-{suffix}", inst) for suffix, t in INSTALLER_TYPES.items()}
        out |= {("kubernetes:installer.kubesphere.io/v1alpha1:ClusterConfiguration", f"{inst}-cc", inst),
                (step("install-baseline"), f"{inst}-baseline", inst), (step("wait-install"), f"{inst}-wait", inst),
                (step("read-jwt"), f"{inst}-jwt", inst)}
    for w in lab.dev_workspaces:
        out |= {("kslab:lab:DevWorkspace", w.name, "lab"), (step("dev-up"), f"{w.name}-takeover", w.name)}
    for j in lab.joins:
        out |= {("kslab:lab:KubeFedJoin", j.name, "lab"), (step("join-check"), f"{j.name}-check", j.name),
                ("kubernetes:cluster.kubesphere.io/v1alpha1:Cluster", f"{j.name}-cluster", j.name),
                (step("wait-join"), f"{j.name}-ready", j.name)}
    for u in lab.users:
        out.add(("kslab:lab:KubeSphereUser", f"user-{u.name}", "lab"))
        if u.password_secret is None:
            out.add((step("gen-password"), f"user-{u.name}-password", f"user-{u.name}"))
        out |= {(step("tenant-apply"), f"user-{u.name}-on-{h}", f"user-{u.name}") for h in u.hosts}
    for w in lab.workspaces:
        out |= {("kslab:lab:KubeSphereWorkspace", f"workspace-{w.name}", "lab"),
                (step("tenant-apply"), f"workspace-{w.name}-on-{w.host}", f"workspace-{w.name}")}
    for p in lab.projects:
        name = f"project-{p.name}-on-{p.cluster}"
        out |= {("kslab:lab:KubeSphereProject", name, "lab"), (step("tenant-apply"), f"{name}-namespace", name)}
    return out
