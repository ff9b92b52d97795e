"""`kslab:users`, `kslab:workspaces` and `kslab:projects`: the lab's tenants, read and cross-checked before
anything is created (README "Tenants"). Pure code; every problem is recorded (field, value, fix) and reading goes on.

A user is declared on hosts (each host's KubeSphere federates it to its members); a workspace on one host, placed
on that host and members joined to it; a project is a namespace of a workspace on one of the workspace's clusters.
Role names are the release's (kslab/model/tenants.py); the hosts' releases decide which a user may have.
"""
from __future__ import annotations

import difflib
import re
from typing import Any

from kslab.model import lab_rules, tenants
from kslab.model.fields import WRONG_TYPE, Problem, yaml_kind
from kslab.model.settings import PROJECT, USER, WORKSPACE, WORKSPACE_MEMBER, read
from kslab.model.types import ClusterSpec, JoinSpec, ProjectSpec, UserSpec, WorkspaceMemberSpec, WorkspaceSpec

_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MAX_TENANT_NAME = 63
EMAIL_DOMAIN = "kslab.local"


def _did_you_mean(value: str, choices: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(value, list(choices), n=1)
    return f"did you mean {close[0]!r}? " if close else ""


def _items(problems: list[Problem], key: str, raw: Any, example: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(Problem(f"kslab:{key}", raw, f"must be a list, but YAML read {yaml_kind(raw)}",
                                f"start each entry with '- ', e.g. {key}: [{example}]"))
        return []
    return raw


def _mapping(problems: list[Problem], path: str, item: Any, fields: dict[str, Any], example: str) -> bool:
    if not isinstance(item, dict):
        problems.append(Problem(path, item, "must be a mapping", f"e.g. {example}"))
        return False
    for unknown in sorted(set(item) - set(fields)):
        hint = "; a password goes into a secret config key named by passwordSecret" if unknown == "password" else ""
        problems.append(Problem(f"{path}.{unknown}", "(set)" if unknown == "password" else item[unknown],
                                "is not a field here" + (" (a password in the stack file is plain text in git)"
                                                         if unknown == "password" else ""),
                                "use " + ", ".join(fields) + hint))
    return True


def _name(problems: list[Problem], path: str, value: Any, what: str) -> str | None:
    if value is None or value == "":
        problems.append(Problem(path, value, "is missing", f"name the {what}, e.g. 'demo'"))
        return None
    if not isinstance(value, str):
        problems.append(Problem(path, value, f"must be a string, but YAML read {yaml_kind(value)}",
                                f"write the {what}'s name as one string"))
        return None
    if len(value) > MAX_TENANT_NAME or not _LABEL.match(value):
        problems.append(Problem(path, value, f"is not a DNS-1123 label of at most {MAX_TENANT_NAME} characters "
                                "(lower-case letters, digits, '-')", f"rename the {what}, e.g. 'team-a'"))
        return None
    return value


def _cluster_list(problems: list[Problem], path: str, raw: Any, default: tuple[str, ...]) -> tuple[str, ...] | None:
    if raw is None:
        return default
    if not isinstance(raw, list) or not raw or not all(isinstance(c, str) for c in raw):
        problems.append(Problem(path, raw, "must be a non-empty list of cluster names", "e.g. [host, member]"))
        return None
    return tuple(dict.fromkeys(raw))


Tenants = tuple[tuple[UserSpec, ...], tuple[WorkspaceSpec, ...], tuple[ProjectSpec, ...]]


def parse_tenants(problems: list[Problem], raw: dict[str, Any], clusters: list[ClusterSpec],
                  joins: tuple[JoinSpec, ...], allow_multiple_hosts: bool, warnings: list[str]) -> Tenants:
    by_name = {c.name: c for c in clusters}
    users = _users(problems, raw.get("users"), by_name)
    _users_on_shared_members(problems, warnings, users, joins, allow_multiple_hosts)
    workspaces = _workspaces(problems, raw.get("workspaces"), by_name, joins, {u.name: u for u in users})
    _binding_names(problems, users, workspaces)
    projects = _projects(problems, raw.get("projects"), by_name, {w.name: w for w in workspaces})
    return users, workspaces, projects


def home_clusters(clusters: dict[str, ClusterSpec]) -> tuple[str, ...]:
    """Where a tenant is declared: the hosts, or in a lab without hosts its standalone clusters."""
    hosts = tuple(n for n, c in clusters.items() if c.role == "host")
    return hosts or tuple(n for n, c in clusters.items() if c.role == "none")


def _users(problems: list[Problem], raw: Any, clusters: dict[str, ClusterSpec]) -> tuple[UserSpec, ...]:
    homes = home_clusters(clusters)
    found: list[UserSpec] = []
    emails: dict[str, str] = {}
    for i, item in enumerate(_items(problems, "users", raw, "{name: alice, globalRole: platform-admin}")):
        path = f"kslab:users[{i}]"
        if not _mapping(problems, path, item, USER, "{name: alice, email: alice@example.com}"):
            continue
        name = _name(problems, f"{path}.name", item.get("name"), "user")
        if name in tenants.RESERVED_USERS:
            problems.append(Problem(f"{path}.name", name, "is KubeSphere's own user on every cluster (the ks-core "
                                    "chart's), which kslab never takes over", "name the user otherwise"))
            name = None
        email = read(problems, f"{path}.email", USER["email"], item.get("email"))
        role = read(problems, f"{path}.globalRole", USER["globalRole"], item.get("globalRole"))
        secret_key = read(problems, f"{path}.passwordSecret", USER["passwordSecret"], item.get("passwordSecret"))
        hosts = _cluster_list(problems, f"{path}.hosts", item.get("hosts"), homes)
        ok = name is not None and WRONG_TYPE not in (email, role, secret_key) and hosts is not None
        if name is not None and email is None:
            email = f"{name}@{EMAIL_DOMAIN}"
        if isinstance(email, str) and not _EMAIL.match(email):
            problems.append(Problem(f"{path}.email", email, "is not an email address (KubeSphere's user webhook "
                                    "refuses it)", "use e.g. alice@example.com"))
            ok = False
        elif isinstance(email, str) and email in emails:
            problems.append(Problem(f"{path}.email", email, f"is also user '{emails[email]}''s email; KubeSphere's "
                                    "user webhook refuses a second user with it", "give every user its own email"))
            ok = False
        if isinstance(secret_key, str) and not re.match(r"^[A-Za-z][A-Za-z0-9_-]*$", secret_key):
            problems.append(Problem(f"{path}.passwordSecret", secret_key, "is not a config key name",
                                    "name a key such as alicePassword (letters, digits, '-', '_')"))
            ok = False
        for host in hosts or ():
            cluster = clusters.get(host)
            if cluster is None:
                problems.append(Problem(f"{path}.hosts", host, "names no cluster of this stack",
                                        "use one of " + ", ".join(sorted(clusters))))
                ok = False
            elif host not in homes:
                problems.append(Problem(f"{path}.hosts", host, f"has role '{cluster.role}'; users are declared on "
                                        "hosts, whose KubeSphere federates them to their members",
                                        "use one of " + ", ".join(homes) if homes else "give the lab a host"))
                ok = False
            elif isinstance(role, str) and role not in tenants.GLOBAL_ROLES[cluster.kubesphere_version]:
                roles = tenants.GLOBAL_ROLES[cluster.kubesphere_version]
                problems.append(Problem(f"{path}.globalRole", role, f"is not a GlobalRole of KubeSphere "
                                        f"{cluster.kubesphere_version} (host '{host}')",
                                        _did_you_mean(role, roles) + "use one of " + ", ".join(roles)))
                ok = False
        if not hosts and hosts is not None:
            problems.append(Problem(f"{path}.hosts", hosts, "names no host: the lab has no cluster of role host or "
                                    "none to declare the user on", "add a host cluster"))
            ok = False
        if name is not None and any(u.name == name for u in found):
            problems.append(Problem(f"{path}.name", name, "is declared twice", "give every user its own name"))
            ok = False
        if ok and name is not None and hosts:
            found.append(UserSpec(name, str(email), str(role), hosts, secret_key))
            emails[str(email)] = name
    return tuple(found)


def _binding_names(problems: list[Problem], users: tuple[UserSpec, ...], workspaces: tuple[WorkspaceSpec, ...]) -> None:
    """Role bindings are named by joining names with '-' (am.go): two different tenants could name one object, and
    two steps would then fight over it. The workspace controller's manager binding `<ws>-admin` counts too."""
    owners: dict[str, str] = {}
    named = [(tenants.global_role_binding_name(u.name, u.global_role), f"user '{u.name}'") for u in users]
    named += [(tenants.workspace_role_name(w.name, "admin"), f"workspace '{w.name}''s manager") for w in workspaces]
    named += [(tenants.workspace_role_binding_name(m.user, w.name, m.role), f"member '{m.user}' of '{w.name}'")
              for w in workspaces for m in w.members]
    for binding, who in named:
        if binding in owners:
            problems.append(Problem("kslab:workspaces", binding, f"is the role binding of both {owners[binding]} and "
                                    f"{who}: KubeSphere names bindings by joining names with '-'",
                                    "rename a user or a workspace so their bindings differ"))
        owners.setdefault(binding, who)


def _users_on_shared_members(problems: list[Problem], warnings: list[str], users: tuple[UserSpec, ...],
                             joins: tuple[JoinSpec, ...], allow_multiple_hosts: bool) -> None:
    for found in lab_rules.users_on_shared_members(((u.name, u.hosts) for u in users),
                                                   ((j.member, j.host) for j in joins)):
        member, hosts = found.value
        i = next(i for i, u in enumerate(users) if u.name == found.subject)
        what = (f"user '{found.subject}' is declared on hosts {', '.join(hosts)}, which share member '{member}': "
                "each host federates its own User of that name there, and it flaps for ever (kubesphere#6466)")
        if allow_multiple_hosts:
            warnings.append(f"EXPERIMENT: {what}")
        else:
            problems.append(Problem(f"kslab:users[{i}].hosts", list(hosts), what,
                                    "declare the user on one of those hosts, or set kslab:allowMultipleHosts: true to "
                                    "run the notes' flapping experiment knowingly", found.policy))


def _workspaces(problems: list[Problem], raw: Any, clusters: dict[str, ClusterSpec], joins: tuple[JoinSpec, ...],
                users: dict[str, UserSpec]) -> tuple[WorkspaceSpec, ...]:
    homes = home_clusters(clusters)
    found: list[WorkspaceSpec] = []
    for i, item in enumerate(_items(problems, "workspaces", raw, "{name: demo, manager: alice}")):
        path = f"kslab:workspaces[{i}]"
        if not _mapping(problems, path, item, WORKSPACE, "{name: demo, manager: alice, clusters: [host]}"):
            continue
        name = _name(problems, f"{path}.name", item.get("name"), "workspace")
        if name in tenants.RESERVED_WORKSPACES:
            problems.append(Problem(f"{path}.name", name, "is KubeSphere's own workspace (role-templates.yaml), which "
                                    "kslab never takes over", "name the workspace otherwise"))
            name = None
        host = read(problems, f"{path}.host", WORKSPACE["host"], item.get("host"))
        manager = read(problems, f"{path}.manager", WORKSPACE["manager"], item.get("manager"))
        ok = name is not None and WRONG_TYPE not in (host, manager)
        if host is None:
            if len(homes) == 1:
                host = homes[0]
            else:
                problems.append(Problem(f"{path}.host", host, "is missing, and the lab has "
                                        f"{len(homes) or 'no'} hosts", "name its host: one of " + ", ".join(homes)
                                        if homes else "add a host cluster"))
                ok = False
        elif isinstance(host, str) and host not in homes:
            problems.append(Problem(f"{path}.host", host, "is not a host of this stack" if host not in clusters else
                                    f"has role '{clusters[host].role}'; a workspace is declared on a host",
                                    "use one of " + ", ".join(homes) if homes else "add a host cluster"))
            ok = False
        placed = _cluster_list(problems, f"{path}.clusters", item.get("clusters"),
                               (host,) if isinstance(host, str) else ())
        if placed is None:
            ok = False
        elif ok and isinstance(host, str):
            for c in placed:
                if c not in clusters:
                    problems.append(Problem(f"{path}.clusters", c, "names no cluster of this stack",
                                            "use one of " + ", ".join(sorted(clusters))))
                    ok = False
            for f in lab_rules.workspace_unjoined_clusters(str(name), host, [c for c in placed if c in clusters],
                                                           ((j.member, j.host) for j in joins)):
                problems.append(Problem(f"{path}.clusters", f.value, f"is not joined to the workspace's host "
                                        f"'{host}': KubeFed of '{host}' never places the workspace there",
                                        f"join it to '{host}' in kslab:joins, or drop it from the placement",
                                        f.policy))
        if manager is None:
            problems.append(Problem(f"{path}.manager", manager, "is missing",
                                    "name a user of kslab:users declared on the workspace's host"))
            ok = False
        elif isinstance(manager, str) and isinstance(host, str):
            ok = _user_on_host(problems, f"{path}.manager", manager, host, users) and ok
        members = _members(problems, path, item.get("members"), host if isinstance(host, str) else None, users,
                           manager)
        if name is not None and any(w.name == name for w in found):
            problems.append(Problem(f"{path}.name", name, "is declared twice", "give every workspace its own name"))
            ok = False
        if ok and members is not None and name and isinstance(host, str) and placed:
            found.append(WorkspaceSpec(name, host, str(manager), placed, members))
    return tuple(found)


def _user_on_host(problems: list[Problem], path: str, user: str, host: str, users: dict[str, UserSpec]) -> bool:
    if user == "admin":
        return True  # the ks-core chart's own admin, on every cluster
    if user not in users:
        problems.append(Problem(path, user, "is not a user of kslab:users",
                                _did_you_mean(user, sorted(users)) + "declare it under kslab:users, or name admin"))
        return False
    if host not in users[user].hosts:
        problems.append(Problem(path, user, f"is not declared on host '{host}' (its hosts: "
                                f"{', '.join(users[user].hosts)})", f"add '{host}' to the user's hosts"))
        return False
    return True


def _members(problems: list[Problem], path: str, raw: Any, host: str | None, users: dict[str, UserSpec],
             manager: Any) -> tuple[WorkspaceMemberSpec, ...] | None:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(Problem(f"{path}.members", raw, f"must be a list, but YAML read {yaml_kind(raw)}",
                                "e.g. members: [{user: bob, role: regular}]"))
        return None
    found: list[WorkspaceMemberSpec] = []
    ok = True
    for j, item in enumerate(raw):
        mpath = f"{path}.members[{j}]"
        if not _mapping(problems, mpath, item, WORKSPACE_MEMBER, "{user: bob, role: regular}"):
            ok = False
            continue
        user = read(problems, f"{mpath}.user", WORKSPACE_MEMBER["user"], item.get("user"))
        role = item.get("role")
        if isinstance(role, str) and role not in tenants.WORKSPACE_ROLES:
            problems.append(Problem(f"{mpath}.role", role, "is not a workspace role",
                                    _did_you_mean(role, tenants.WORKSPACE_ROLES) + "use one of "
                                    + ", ".join(tenants.WORKSPACE_ROLES)))
            ok, role = False, WRONG_TYPE
        else:
            role = read(problems, f"{mpath}.role", WORKSPACE_MEMBER["role"], role)
        if user is None:
            problems.append(Problem(f"{mpath}.user", user, "is missing", "name a user of kslab:users"))
            ok = False
            continue
        if user is WRONG_TYPE:
            ok = False
            continue
        if host is not None and not _user_on_host(problems, f"{mpath}.user", user, host, users):
            ok = False
            continue
        if role is WRONG_TYPE:
            ok = False
            continue
        if user == manager or any(m.user == user for m in found):
            problems.append(Problem(f"{mpath}.user", user, "is the workspace's manager" if user == manager
                                    else "is a member twice",
                                    "give each user one role in a workspace (the manager is its admin already)"))
            ok = False
            continue
        found.append(WorkspaceMemberSpec(user, role))
    return tuple(found) if ok else None


def _projects(problems: list[Problem], raw: Any, clusters: dict[str, ClusterSpec],
              workspaces: dict[str, WorkspaceSpec]) -> tuple[ProjectSpec, ...]:
    found: list[ProjectSpec] = []
    for i, item in enumerate(_items(problems, "projects", raw, "{name: demo-host, workspace: demo}")):
        path = f"kslab:projects[{i}]"
        if not _mapping(problems, path, item, PROJECT, "{name: demo-host, workspace: demo, cluster: host}"):
            continue
        name = _name(problems, f"{path}.name", item.get("name"), "project")
        workspace = read(problems, f"{path}.workspace", PROJECT["workspace"], item.get("workspace"))
        cluster = read(problems, f"{path}.cluster", PROJECT["cluster"], item.get("cluster"))
        ok = name is not None and WRONG_TYPE not in (workspace, cluster)
        if name in tenants.SYSTEM_NAMESPACES:
            problems.append(Problem(f"{path}.name", name, "is a namespace of Kubernetes or KubeSphere itself",
                                    "name the project, e.g. demo-host"))
            ok = False
        ws = workspaces.get(workspace) if isinstance(workspace, str) else None
        if workspace is None:
            problems.append(Problem(f"{path}.workspace", workspace, "is missing", "name a workspace of "
                                    "kslab:workspaces"))
            ok = False
        elif isinstance(workspace, str) and ws is None:
            problems.append(Problem(f"{path}.workspace", workspace, "is not a workspace of kslab:workspaces",
                                    _did_you_mean(workspace, sorted(workspaces)) + "use one of "
                                    + (", ".join(sorted(workspaces)) or "(none declared)")))
            ok = False
        if ws is not None and cluster is not WRONG_TYPE:
            cluster = ws.host if cluster is None else cluster
            if cluster not in ws.clusters:
                problems.append(Problem(f"{path}.cluster", cluster, f"is not one of workspace '{ws.name}''s "
                                        f"clusters ({', '.join(ws.clusters)})" if cluster in clusters else
                                        "names no cluster of this stack",
                                        f"use one of {', '.join(ws.clusters)}, or place the workspace there too"))
                ok = False
        if ok and name and ws is not None and cluster is not WRONG_TYPE and any(
                p.name == name and p.cluster == cluster for p in found):
            problems.append(Problem(f"{path}.name", name, f"is declared twice on cluster '{cluster}'",
                                    "give each project on a cluster its own name"))
            ok = False
        if ok and name and ws is not None:
            found.append(ProjectSpec(name, ws.name, str(cluster)))
    return tuple(found)
