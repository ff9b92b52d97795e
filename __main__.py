"""kslab: a KubeSphere multi-cluster lab as one Pulumi stack (see README)."""
import os

import pulumi

from components.lab import Lab, LabArgs
from components.spec import LabConfigError
from components.stack_config import load_lab
from components.steps import PROJECT_DIR

config = pulumi.Config("kslab")
try:
    # Everything is validated and read before the first resource is registered.
    # The stack file is the one Pulumi reads, in the project it runs (tools/lab.sh: a scratch project).
    lab_spec, kubeconfigs = load_lab(config, PROJECT_DIR, pulumi.get_stack(), stack_dir=os.getcwd())
except LabConfigError as error:
    raise pulumi.RunError(str(error)) from None

lab = Lab("lab", LabArgs(spec=lab_spec, existing_kubeconfigs=kubeconfigs, jwt_secret=config.get_secret("jwtSecret")))
for key, value in lab.outputs().items():
    pulumi.export(key, value)
