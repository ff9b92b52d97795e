"""`make graph`: the lab's topology as a picture, laid out by Graphviz (`dot`), coloured by the last status.

Clusters are boxes (name, role, KubeSphere and Kubernetes versions, console URL); each join is an arrow from the
member to its host; each workspace is a note with a dashed arrow to every cluster it is placed on (ready where the
workspace is there, waiting where it is not yet, unknown where that was not read). Colours come from
kslab.cli.findings's states, so the picture and `make status` agree.
The DOT source is pure (dot_source); write() needs Graphviz's `dot` program.
"""
from __future__ import annotations

import contextlib
import html
import os
import shutil
import tempfile
from dataclasses import dataclass

import graphviz

from kslab.cli import findings as st
from kslab.model.spec import LabSpec


@dataclass(frozen=True)
class Colour:
    fill: str
    line: str


STATE_COLOURS = {
    st.READY: Colour("#d4edda", "#2e7d32"),
    st.WAITING: Colour("#fff3cd", "#b7791f"),
    st.FAILED: Colour("#f8d7da", "#c62828"),
    st.UNKNOWN: Colour("#eeeeee", "#757575"),
}
NODE_ID, EDGE_ID = "cluster-{}", "join-{}"  # SVG ids of a cluster's box and a join's arrow
WORKSPACE_ID, PLACEMENT_ID = "workspace-{}", "placement-{}-{}"  # a workspace's note and its arrow to a cluster


class GraphError(RuntimeError):
    pass


def _label(c: st.ClusterStatus, state: str) -> str:
    rows = [f'<B>{html.escape(c.name)}</B>',
            html.escape(c.role + (f" (reports {c.reported_role})" if c.reported_role and c.reported_role != c.role
                                  else "")),
            html.escape(f"KubeSphere {c.kubesphere_version} · Kubernetes {c.kubernetes_version}"),
            html.escape(c.console_url or "console: not published"),
            f'<I>{state}</I>']
    cells = "".join(f"<TR><TD>{r}</TD></TR>" for r in rows)
    return f'<<TABLE BORDER="0" CELLSPACING="2">{cells}</TABLE>>'


def dot_source(lab: st.LabStatus) -> graphviz.Digraph:
    """The picture as DOT: hosts ranked above their members, every join an arrow member -> host."""
    g = graphviz.Digraph(name=lab.stack, graph_attr={"rankdir": "BT", "fontname": "Helvetica", "nodesep": "0.6",
                                                       "ranksep": "0.9", "label": f"kslab lab '{lab.stack}'",
                                                       "labelloc": "t"},
                         node_attr={"shape": "box", "style": "rounded,filled", "fontname": "Helvetica",
                                    "fontsize": "11", "penwidth": "2"},
                         edge_attr={"fontname": "Helvetica", "fontsize": "10", "penwidth": "2"})
    for c in lab.clusters:
        state = st.cluster_state(c)
        colour = STATE_COLOURS[state]
        g.node(c.name, label=_label(c, state), id=NODE_ID.format(c.name), fillcolor=colour.fill,
               color=colour.line, tooltip=f"{c.name}: {state}")
    for j in lab.joins:
        state = st.join_state(j)
        colour = STATE_COLOURS[state]
        g.edge(j.member, j.host, label=f"joined: {state}", id=EDGE_ID.format(j.name), color=colour.line,
               fontcolor=colour.line, tooltip=f"{j.name}: {state}")
    _workspaces(g, lab)
    with g.subgraph(name="cluster_legend") as legend:
        legend.attr(label="state", fontsize="10", color="#bbbbbb")
        for state, colour in STATE_COLOURS.items():
            legend.node(f"legend-{state}", label=state, id=f"legend-{state}", fillcolor=colour.fill,
                        color=colour.line, shape="box", fontsize="9")
    return g


def _workspaces(g: graphviz.Digraph, lab: st.LabStatus) -> None:
    placed: dict[str, list[st.TenantPlacement]] = {}
    for t in lab.tenants:
        if t.kind == "workspace":
            placed.setdefault(t.name, []).append(t)
    for name, where in placed.items():
        projects = sorted(f"{p.name}@{p.cluster}" for p in lab.tenants if p.kind == "project"
                          and p.workspace == name)
        label = f"workspace {name}\n(on {where[0].home})" + (f"\nprojects: {', '.join(projects)}" if projects else "")
        g.node(WORKSPACE_ID.format(name), label=label, id=WORKSPACE_ID.format(name), shape="note",
               style="filled", fillcolor="#e8eaf6", color="#3949ab", fontsize="10")
        for t in where:
            state = st.UNKNOWN if t.present is None else st.READY if t.present else st.WAITING
            colour = STATE_COLOURS[state]
            g.edge(WORKSPACE_ID.format(name), t.cluster, id=PLACEMENT_ID.format(name, t.cluster), style="dashed",
                   color=colour.line, tooltip=f"workspace {name} on {t.cluster}: {state}")


def write(spec: LabSpec, lab: st.LabStatus, out_dir: str, name: str) -> list[str]:
    """Render <name>.svg and <name>.png into out_dir; the paths written."""
    if shutil.which("dot") is None:
        raise GraphError("Graphviz's `dot` is not installed: apt-get install graphviz (Debian/Ubuntu) "
                         "or brew install graphviz (macOS)")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise GraphError(f"cannot create {out_dir}: {exc.strerror or exc}") from None
    source = dot_source(lab)
    written = []
    for fmt in ("svg", "png"):
        path = os.path.join(out_dir, f"{name}.{fmt}")
        try:
            # dot reads the source on stdin: no file of the source is written (or removed) in out_dir.
            drawing = source.pipe(format=fmt)
        except (graphviz.ExecutableNotFound, graphviz.CalledProcessError) as exc:
            raise GraphError(f"Graphviz could not draw {name}.{fmt}: {exc}") from None
        try:
            _replace(path, drawing)
        except OSError as exc:
            raise GraphError(f"cannot write {name}.{fmt} into {out_dir}: {exc.strerror or exc}") from None
        written.append(path)
    return written


def _replace(path: str, data: bytes) -> None:
    """Write through a private temp file renamed over `path`: a symlink there is replaced, never followed."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".kslab-graph-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
