"""The declared config model (kslab/model/settings.py): the README's field list is made from it, the loader knows
exactly its keys and applies its defaults, and on thousands of generated stack configs (tests/support/config_gen.py)
the loader never raises and every problem names a field, says what is wrong and how to fix it, and shows no secret."""
from __future__ import annotations

import os
import re

from kslab.model import settings
from kslab.model.spec import STRING_KEYS, STRUCTURED_KEYS, check_config_keys, parse_lab
from kslab.model.types import CLUSTER_FIELDS, DEV_WORKSPACE_FIELDS, JOIN_FIELDS, LAB_DEFAULTS
from tests.support import config_gen
from tests.support.mock_run import ROOT


def test_the_readme_field_list_is_the_declarations():
    with open(os.path.join(ROOT, "README.md")) as fh:
        readme = fh.read()
    block = re.search(r"<!-- fields:[^\n]*-->\n(.*?)<!-- /fields -->", readme, re.S)
    assert block is not None, "README.md has no generated field list"
    assert block.group(1) == settings.field_list(), "regenerate it: python -c 'from kslab.model.settings import " \
        "field_list; print(field_list(), end=\"\")'"


def test_every_setting_is_described_and_every_key_set_comes_from_the_declarations():
    for section in settings.SECTIONS.values():
        assert all(s.description.strip() and s.key == key for key, s in section.items())
    assert set(STRING_KEYS) | set(STRUCTURED_KEYS) | {"jwtSecret", "registryCredentials"} == set(settings.LAB)
    assert (CLUSTER_FIELDS, JOIN_FIELDS, DEV_WORKSPACE_FIELDS) == (
        set(settings.CLUSTER), set(settings.JOIN), set(settings.DEV_WORKSPACE))
    assert check_config_keys(list(settings.LAB), []) == []
    assert [p.fix for p in check_config_keys(["kindwait"], [])] == ["did you mean kslab:kindWait?"]


def test_the_loader_applies_the_declared_defaults_of_a_cluster_a_workspace_and_the_lab_registry():
    lab = parse_lab({"clusters": [{"name": "a"}, {"name": "b"}], "imageSources": ["harbor.corp"],
                     "devWorkspaces": [{"cluster": "a", "component": "ks-apiserver", "dir": "dev/a"}]})
    first, second = lab.clusters
    assert (first.role, first.backend, first.image_check, first.allow_loopback_join, first.console_port) == (
        settings.default_of(settings.CLUSTER, "role"), settings.default_of(settings.CLUSTER, "backend"),
        settings.default_of(settings.CLUSTER, "imageCheck"),
        settings.default_of(settings.CLUSTER, "allowLoopbackJoin"),
        settings.default_of(settings.CLUSTER, "consolePort"))
    first_port = settings.default_of(settings.CLUSTER, "consoleHostPort")
    assert (first.console_host_port, second.console_host_port) == (first_port, first_port + 1)
    assert lab.dev_workspaces[0].keep_files is settings.default_of(settings.DEV_WORKSPACE, "keepFiles")
    assert lab.image_sources is not None
    assert (lab.image_sources.lab.name, lab.image_sources.lab.host_port) == (
        settings.default_of(settings.LAB_REGISTRY, "name"), settings.default_of(settings.LAB_REGISTRY, "hostPort"))
    assert LAB_DEFAULTS["kindWait"] == settings.default_of(settings.LAB, "kindWait") == lab.kind_wait


def test_generated_configs_never_raise_and_every_problem_says_field_value_and_fix():
    secrets = ("s3cret", '"password": "p"')
    seen = 0
    for config, jwt, credentials in config_gen.configs(seed=7, count=1500):
        outcome = config_gen.outcome(config, jwt, credentials)
        for field, shown, message, fix, _ in outcome["problems"]:
            assert field.startswith("kslab:") and message and fix, (config, field)
            assert not any(s in shown or s in message or s in fix for s in secrets), (config, field)
            seen += 1
        if any(not p[0].startswith("kslab:registryCredentials") for p in outcome["problems"]):
            assert "nothing was created" in outcome["verdict"]  # (credentials are checked by the caller)
    assert seen > 3000, "the generator makes bad configs"
