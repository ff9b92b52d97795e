"""The code's layout holds: each kslab package keeps to its lifetime, product modules and functions stay small,
and nothing edits the import path (README, "How the code is laid out")."""
from __future__ import annotations

import ast
import glob
import os

import pytest

from tests.support.mock_run import ROOT

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
PATH_EDIT = "sys." + "path"  # spelled apart so this file does not find itself


def _files(*patterns: str) -> list[str]:
    found = []
    for pattern in patterns:
        found += glob.glob(os.path.join(ROOT, pattern), recursive=True)
    return sorted(f for f in found if "__pycache__" not in f)


PRODUCT = _files("kslab/**/*.py", "policies/**/*.py", "components/**/*.py", "__main__.py")


def _tree(path: str) -> ast.Module:
    with open(path) as fh:
        return ast.parse(fh.read(), path)


def _imports(path: str, top_level_only: bool = False) -> set[str]:
    tree = _tree(path)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


@pytest.mark.parametrize("path", PRODUCT, ids=_rel)
def test_a_product_module_is_small(path):
    with open(path) as fh:
        lines = fh.read().count("\n")
    assert lines <= MAX_MODULE_LINES, f"{_rel(path)} has {lines} lines (at most {MAX_MODULE_LINES})"


@pytest.mark.parametrize("path", PRODUCT, ids=_rel)
def test_a_product_function_is_short(path):
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(_tree(path))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert long == [], f"{_rel(path)}: over {MAX_FUNCTION_LINES} lines: {long}"


def test_nothing_edits_the_import_path():
    edits = [_rel(f) for f in _files("kslab/**/*.py", "policies/**/*.py", "tests/**/*.py", "bench/**/*.py",
                                     "__main__.py") if PATH_EDIT in open(f).read()]
    assert edits == []


def test_no_test_imports_a_main_module_by_name():
    by_name = "import_" + "module("  # spelled apart so this file does not find itself
    found = [_rel(f) for f in _files("tests/**/*.py") if by_name in open(f).read() and "__main__" in open(f).read()]
    assert found == []


@pytest.mark.parametrize("package", ["model", "render"])
def test_the_pure_packages_import_no_pulumi_and_no_outer_package(package):
    outer = ("pulumi", "pulumi_kubernetes", "pulumi_policy", "kubernetes", "grpc", "requests",
             "components", "kslab.steps", "kslab.cli", "components")
    found = {_rel(f): sorted(m for m in _imports(f) if m.split(".")[0] in outer or m.startswith(outer))
             for f in _files(f"kslab/{package}/*.py")}
    assert {f: m for f, m in found.items() if m} == {}


def test_the_model_does_not_depend_on_the_renderers():
    found = {_rel(f): sorted(m for m in _imports(f) if m.startswith("kslab.render"))
             for f in _files("kslab/model/*.py")}
    assert {f: m for f, m in found.items() if m} == {}


def test_the_policy_pack_imports_only_the_model_of_kslab():
    def outside_the_model(module: str) -> bool:
        return module.split(".")[0] in ("kslab", "components") and not module.startswith("kslab.model")

    found = {_rel(f): sorted(m for m in _imports(f) if outside_the_model(m))
             for f in _files("policies/**/*.py")}
    assert {f: m for f, m in found.items() if m} == {}


def test_the_program_loads_the_step_plugin_only_for_a_legacy_step():
    """The Pulumi program never imports the step plugin's modules when it starts; only the legacy dynamic
    provider does, inside the call the engine makes for a step made before steps had their own type."""
    found = {_rel(f): sorted(m for m in _imports(f, top_level_only=True) if m.startswith(("kslab.steps", "kslab.cli")))
             for f in _files("components/*.py", "__main__.py")}
    assert {f: m for f, m in found.items() if m} == {}


# --- the import graph (tests/support/imports.py): layers, no cycle, no private name across modules -------------
# Each package may import only the packages at its own level or below it. components (the Pulumi component
# resources) stand beside the steps and the commands, on the model and the renderers: the step plugin loads only
# for a legacy step, inside the call (test above).
LAYERS = {
    "kslab.model": ("kslab.model",),
    "kslab.render": ("kslab.model", "kslab.render"),
    "kslab.steps": ("kslab.model", "kslab.render", "kslab.steps"),
    "kslab.cli": ("kslab.model", "kslab.render", "kslab.steps", "kslab.cli"),
    "components": ("kslab.model", "kslab.render", "components", "kslab.steps.plugin"),
    "kslab_policies": ("kslab.model", "kslab_policies"),
}


def _package(module: str) -> str:
    return next((p for p in sorted(LAYERS, key=len, reverse=True) if module == p or module.startswith(p + ".")),
                module)


def test_the_import_graph_has_no_cycle():
    from tests.support.imports import cycles, graph
    edges, _ = graph(ROOT)
    assert cycles(edges) == []


def test_no_package_imports_a_higher_one():
    """The model and the renderers import neither steps nor commands nor components; the steps never import the
    commands; nothing imports the commands but themselves."""
    from tests.support.imports import graph
    edges, _ = graph(ROOT)
    wrong = sorted((a, b) for a, targets in edges.items() for b in targets
                   if _package(a) in LAYERS and not any(b == p or b.startswith(p + ".") for p in LAYERS[_package(a)]))
    assert wrong == []


def test_no_module_takes_a_private_name_of_another():
    from tests.support.imports import private_uses
    assert private_uses(ROOT) == []


def test_the_graph_finds_what_it_must(tmp_path):
    """The checks above can fail: a cycle, an upward import and a private name across modules are each found."""
    from tests.support.imports import cycles, graph, private_uses
    (tmp_path / "kslab" / "model").mkdir(parents=True)
    (tmp_path / "kslab" / "steps").mkdir(parents=True)
    for package in ("kslab", "kslab/model", "kslab/steps"):
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "kslab" / "model" / "a.py").write_text("from kslab.steps import b\n")
    (tmp_path / "kslab" / "steps" / "b.py").write_text("from kslab.model.a import _hidden\n")
    edges, _ = graph(str(tmp_path))
    assert cycles(edges) == [["kslab.model.a", "kslab.steps.b"]]
    assert ("kslab.model.a", "kslab.steps.b") in {(a, b) for a, t in edges.items() for b in t}
    assert private_uses(str(tmp_path)) == [("kslab.steps.b", "kslab.model.a", "_hidden")]
