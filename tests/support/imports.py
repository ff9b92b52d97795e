"""The import graph of the product's modules (kslab/, components/, the policy pack, __main__.py), read from the source
with ast: every import, at the top or inside a function, of one product module by another."""
from __future__ import annotations

import ast
import glob
import os
from collections.abc import Iterable

PRODUCT_PACKAGES = ("kslab", "components", "kslab_policies")


def module_name(root: str, path: str) -> str:
    rel = os.path.relpath(path, root)
    if rel.startswith("policies" + os.sep):
        rel = rel[len("policies" + os.sep):]
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "__main__"


def product_files(root: str) -> list[str]:
    found: list[str] = []
    for pattern in ("kslab/**/*.py", "components/**/*.py", "policies/kslab_policies/**/*.py"):
        found += glob.glob(os.path.join(root, pattern), recursive=True)
    return sorted(f for f in found if "__pycache__" not in f)


def _imported(tree: ast.Module, here: str, is_package: bool) -> Iterable[tuple[str, list[str]]]:
    """(module, names imported from it) for every import in the file, relative ones resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            yield base, [alias.name for alias in node.names]


def graph(root: str) -> tuple[dict[str, set[str]], dict[tuple[str, str], list[str]]]:
    """module -> the product modules it imports; (importer, imported) -> names imported by `from`."""
    files = product_files(root)
    modules = {module_name(root, f): f for f in files}
    edges: dict[str, set[str]] = {m: set() for m in modules}
    names: dict[tuple[str, str], list[str]] = {}
    for module, path in modules.items():
        with open(path) as fh:
            tree = ast.parse(fh.read(), path)
        for target, imported in _imported(tree, module, path.endswith("__init__.py")):
            candidates = [f"{target}.{n}" for n in imported if f"{target}.{n}" in modules]
            for hit in candidates:  # `from kslab.steps import crane`: the module kslab.steps.crane
                edges[module].add(hit)
            rest = [n for n in imported if f"{target}.{n}" not in modules]
            if target in modules and target != module and (rest or not imported):
                edges[module].add(target)
                names.setdefault((module, target), []).extend(rest)
    return edges, names


def private_uses(root: str) -> list[tuple[str, str, str]]:
    """(module, other module, name) for every private name (`_x`, not a dunder) one product module takes from another:
    imported by name, or reached as an attribute of the imported module (`common._kind(...)`)."""
    files = product_files(root)
    modules = {module_name(root, f): f for f in files}
    found: set[tuple[str, str, str]] = set()
    for module, path in modules.items():
        with open(path) as fh:
            tree = ast.parse(fh.read(), path)
        aliases: dict[str, str] = {}  # local name -> product module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target, imported = next(iter(_imported(ast.Module(body=[node], type_ignores=[]), module,
                                                        path.endswith("__init__.py"))))
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    if full in modules:
                        aliases[alias.asname or alias.name] = full
                    elif target in modules and target != module and _private(alias.name):
                        found.add((module, target, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and aliases[node.value.id] != module and _private(node.attr)):
                found.add((module, aliases[node.value.id], node.attr))
    return sorted(found)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layers(edges: dict[str, set[str]]) -> int:
    """The number of import layers: the longest chain of imports, counted in modules (the graph must be acyclic)."""
    depth: dict[str, int] = {}

    def of(v: str) -> int:
        if v not in depth:
            depth[v] = 0
            depth[v] = 1 + max((of(w) for w in edges[v]), default=0)
        return depth[v]

    return max((of(v) for v in edges), default=0)
