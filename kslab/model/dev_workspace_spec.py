"""`kslab:devWorkspaces`: which cluster's component a developer runs from source, and where its files go."""
from __future__ import annotations

import os
from typing import Any

from kslab.model.fields import WRONG_TYPE, Problem, yaml_kind
from kslab.model.settings import DEV_COMPONENTS, DEV_WORKSPACE, read
from kslab.model.types import DEV_WORKSPACE_FIELDS, DevWorkspaceSpec


def parse_dev_workspaces(problems: list[Problem], raw: Any, cluster_names: set[str]) -> tuple[DevWorkspaceSpec, ...]:
    """`kslab:devWorkspaces`: [{cluster, component, dir, keepFiles}] (README "Develop KubeSphere against the lab")."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(Problem("kslab:devWorkspaces", raw, f"must be a list, but YAML read {yaml_kind(raw)}",
                                "e.g. devWorkspaces: [{cluster: host, component: ks-controller-manager, "
                                "dir: dev/host-ks-controller-manager}]"))
        return ()
    found: list[DevWorkspaceSpec] = []
    dirs: dict[str, int] = {}
    for i, item in enumerate(raw):
        path = f"kslab:devWorkspaces[{i}]"
        if not isinstance(item, dict):
            problems.append(Problem(path, item, "must be a mapping {cluster, component, dir}",
                                    "e.g. {cluster: host, component: ks-controller-manager, dir: dev/kcm}"))
            continue
        for unknown in sorted(set(item) - DEV_WORKSPACE_FIELDS):
            problems.append(Problem(f"{path}.{unknown}", item[unknown], "is not a workspace field",
                                    "use " + ", ".join(sorted(DEV_WORKSPACE_FIELDS))))
        cluster, component, directory, keep = (read(problems, f"{path}.{key}", setting, item.get(key))
                                               for key, setting in DEV_WORKSPACE.items())
        ok = True
        if cluster is None or (isinstance(cluster, str) and cluster not in cluster_names):
            problems.append(Problem(f"{path}.cluster", cluster, "names no cluster of this stack",
                                    "use one of " + ", ".join(sorted(cluster_names)) if cluster_names
                                    else "add the cluster"))
            ok = False
        if component is None or (isinstance(component, str) and component not in DEV_COMPONENTS):
            problems.append(Problem(f"{path}.component", component, "is not a component a workspace can take over",
                                    "use one of " + ", ".join(DEV_COMPONENTS)))
            ok = False
        if isinstance(directory, str) and os.path.normpath(os.path.expanduser(directory)) in (
                ".", "..", "/", os.path.expanduser("~")):
            problems.append(Problem(f"{path}.dir", directory, "is the project, its parent, your home or the root",
                                    "name a folder of its own, e.g. dev/host-ks-controller-manager"))
            ok = False
        elif directory is None or directory == "" or (isinstance(directory, str) and "\0" in directory):
            problems.append(Problem(f"{path}.dir", directory, "must name the workspace folder",
                                    "e.g. dir: dev/host-ks-controller-manager (relative to the project)"))
            ok = False
        if not ok or WRONG_TYPE in (cluster, component, directory):
            continue
        workspace = DevWorkspaceSpec(cluster, component, directory, keep)
        if any(w.name == workspace.name for w in found):
            problems.append(Problem(path, item, f"takes over {component} on '{cluster}' a second time",
                                    "keep one workspace per cluster and component"))
            continue
        same = os.path.normpath(directory)
        if same in dirs:
            problems.append(Problem(f"{path}.dir", directory, f"is also kslab:devWorkspaces[{dirs[same]}].dir",
                                    "give each workspace its own folder"))
            continue
        dirs[same] = i
        found.append(workspace)
    return tuple(found)
