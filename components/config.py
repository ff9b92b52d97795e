"""The stack's `kslab:*` config, read once for the program: the model's loader (kslab/model/stack_config.py) with
what only Pulumi knows (whether a value is a secret), and every secret it returns made a Pulumi secret."""
from __future__ import annotations

import pulumi

from kslab.model import image_sources
from kslab.model.spec import LabSpec
from kslab.model.stack_config import load_lab_values

Secrets = dict[str, pulumi.Output[str]]


def load_lab(config: pulumi.Config, project_dir: str, stack: str | None, stack_dir: str | None = None
             ) -> tuple[LabSpec, Secrets, pulumi.Output[str] | None, Secrets]:
    """The validated lab, each existing cluster's kubeconfig, the image sources' credentials and each user's
    password from its passwordSecret key (all secrets). LabConfigError, with every problem, before anything is
    registered."""
    credentials_are_secret = pulumi.runtime.is_config_secret(f"kslab:{image_sources.CREDENTIALS_KEY}")
    passwords: dict[str, str] = {}
    lab, kubeconfigs, credentials = load_lab_values(
        config, project_dir, stack, stack_dir, credentials_are_secret=credentials_are_secret,
        is_secret=lambda key: pulumi.runtime.is_config_secret(f"kslab:{key}"), passwords=passwords)
    secret_kubeconfigs = {name: pulumi.Output.secret(text) for name, text in kubeconfigs.items()}
    return (lab, secret_kubeconfigs, pulumi.Output.secret(credentials) if credentials is not None else None,
            {name: pulumi.Output.secret(text) for name, text in passwords.items()})
