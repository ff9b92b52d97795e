"""KubeSphere's tenant facts kslab declares users, workspaces and projects by, read at the release tags.

Pure data and pure rules (the loader, the renderer, the steps and the policy pack share them). Sources, as
kubesphere/kubesphere@<tag> (K) and kubesphere/ks-installer@<tag> (I), for <tag> v3.2.1 and v3.4.1:
- roles: I roles/ks-core/prepare/files/ks-init/role-templates.yaml (the GlobalRoles; the RoleBases
  workspace-<role> whose WorkspaceRole the workspacetemplate controller copies as `<ws>-<role>`: K
  pkg/controller/workspacetemplate/workspacetemplate_controller.go initWorkspaceRoles);
- the password rule: K staging/src/kubesphere.io/api/iam/v1alpha2/types.go UserSpec.EncryptedPassword (v3.4.1's
  CRD validation; v3.2.1 has none in the backend) and I roles/preinstall/tasks/precheck.yaml@v3.4.1 (its message);
- names and labels: K pkg/models/iam/am/am.go (CreateGlobalRoleBinding: `<user>-<role>`, label user-ref;
  CreateUserWorkspaceRoleBinding: `<user>-<ws>-<role>`), pkg/apis tenant WorkspaceLabel `kubesphere.io/workspace`.
"""
from __future__ import annotations

import re

# GlobalRoles a user may be given (the non-template ones a person is bound to; anonymous, authenticated and
# pre-registration are the system's own bindings). v3.4.1 drops users-manager and workspaces-manager and adds
# platform-self-provisioner.
GLOBAL_ROLES: dict[str, tuple[str, ...]] = {
    "v3.2.1": ("platform-admin", "platform-regular", "users-manager", "workspaces-manager"),
    "v3.4.1": ("platform-admin", "platform-regular", "platform-self-provisioner"),
}
PLATFORM_ADMIN = "platform-admin"
DEFAULT_GLOBAL_ROLE = "platform-regular"
# The workspace roles (RoleBase workspace-<role>, the same at both tags): a workspace's role is `<ws>-<role>`.
WORKSPACE_ROLES: tuple[str, ...] = ("admin", "regular", "viewer", "self-provisioner")
DEFAULT_WORKSPACE_ROLE = "regular"

# The default admin password of the ks-core chart (account.yaml's hash is bcrypt of it, both tags).
DEFAULT_ADMIN_PASSWORD = "P@88w0rd"
# Passwords no lab should give a platform-admin: the chart's default and the usual first tries.
WEAK_PASSWORDS = frozenset({DEFAULT_ADMIN_PASSWORD.lower(), "password", "password1", "passw0rd", "p@ssw0rd",
                            "admin123", "admin1234", "12345678", "123456789", "qwerty123", "changeme",
                            "kubesphere", "kubesphere123"})

# v3.4.1: 8 to 64 characters with a lower-case letter, an upper-case letter and a digit (the CRD's six-way pattern
# says exactly that); v3.2.1's backend takes any password, so kslab asks the console's rule of 6 to 64.
_PASSWORD_LENGTH = {"v3.2.1": (6, 64), "v3.4.1": (8, 64)}
_HAS = (("a lower-case letter", re.compile(r"[a-z]")), ("an upper-case letter", re.compile(r"[A-Z]")),
        ("a digit", re.compile(r"[0-9]")))

# Label keys KubeSphere reads on the objects kslab applies.
USER_REF_LABEL = "iam.kubesphere.io/user-ref"
WORKSPACE_LABEL = "kubesphere.io/workspace"
KUBEFED_MANAGED_LABEL = "kubefed.io/managed"
# Names KubeSphere's own objects have on every cluster (the ks-core chart's User admin; role-templates.yaml's
# WorkspaceTemplate system-workspace): a tenant of the name would be refused as another's at apply time.
RESERVED_USERS = frozenset({"admin"})
RESERVED_WORKSPACES = frozenset({"system-workspace"})
# Namespaces a project may not be: the clusters' own and KubeSphere's.
SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease", "kubesphere-system",
                               "kubesphere-controls-system", "kubesphere-monitoring-system",
                               "kubesphere-monitoring-federated", "kubesphere-logging-system",
                               "kubesphere-devops-system", "kube-federation-system", "local-path-storage"})


def password_problems(password: str, version: str) -> list[str]:
    """What a KubeSphere release (or its console) refuses in a password; [] when it is good. Never shows it."""
    lo, hi = _PASSWORD_LENGTH[version]
    problems = [] if lo <= len(password) <= hi else [f"{lo} to {hi} characters"]
    problems += [what for what, has in _HAS if not has.search(password)]
    if any(c.isspace() or not c.isprintable() for c in password):
        problems.append("no spaces or control characters")
    return problems


def password_rule(version: str) -> str:
    lo, hi = _PASSWORD_LENGTH[version]
    return f"{lo} to {hi} characters with a lower-case letter, an upper-case letter and a digit"


def is_weak(password: str) -> bool:
    """The chart's default, a well-known first try, or one character repeated."""
    return password.lower() in WEAK_PASSWORDS or len(set(password)) <= 2


def global_role_binding_name(user: str, role: str) -> str:
    return f"{user}-{role}"


def workspace_role_name(workspace: str, role: str) -> str:
    return f"{workspace}-{role}"


def workspace_role_binding_name(user: str, workspace: str, role: str) -> str:
    return f"{user}-{workspace_role_name(workspace, role)}"
