"""kslab: a KubeSphere multi-cluster lab as one Pulumi stack (see README)."""
import pulumi

from components.lab import Lab, LabArgs
from components.spec import LabConfigError, parse_lab
from components.stack_config import existing_kubeconfigs, read_raw
from components.steps import PROJECT_DIR

config = pulumi.Config("kslab")
try:
    # Everything is validated and read before the first resource is registered.
    lab_spec = parse_lab(read_raw(config))
    kubeconfigs = existing_kubeconfigs(config, PROJECT_DIR, lab_spec)
except LabConfigError as error:
    raise pulumi.RunError(str(error)) from None

lab = Lab("lab", LabArgs(spec=lab_spec, existing_kubeconfigs=kubeconfigs, jwt_secret=config.get_secret("jwtSecret")))
for key, value in lab.outputs().items():
    pulumi.export(key, value)
