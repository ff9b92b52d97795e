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
