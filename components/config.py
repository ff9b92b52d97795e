"""The stack's `kslab:*` config, read once for the program: the model's loader (kslab/model/stack_config.py) with
what only Pulumi knows (whether a value is a secret), and every secret it returns made a Pulumi secret."""
from __future__ import annotations

import pulumi

from kslab.model import image_sources
from kslab.model.spec import LabSpec
from kslab.model.stack_config import load_lab_values


def load_lab(config: pulumi.Config, project_dir: str, stack: str | None, stack_dir: str | None = None
             ) -> tuple[LabSpec, dict[str, pulumi.Output[str]], pulumi.Output[str] | None]:
    """The validated lab, each existing cluster's kubeconfig and the image sources' credentials (both secrets).
    LabConfigError, with every problem, before anything is registered."""
    credentials_are_secret = pulumi.runtime.is_config_secret(f"kslab:{image_sources.CREDENTIALS_KEY}")
    lab, kubeconfigs, credentials = load_lab_values(config, project_dir, stack, stack_dir,
                                                    credentials_are_secret=credentials_are_secret)
    secret_kubeconfigs = {name: pulumi.Output.secret(text) for name, text in kubeconfigs.items()}
    return lab, secret_kubeconfigs, pulumi.Output.secret(credentials) if credentials is not None else None
