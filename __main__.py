"""kslab: a KubeSphere multi-cluster lab as one Pulumi stack (see README)."""
import os
import signal

import pulumi

from components.config import load_lab
from components.lab import Lab, LabArgs
from kslab.model.contract import PROJECT_DIR
from kslab.model.spec import LabConfigError

# The language host interrupts the program (SIGINT) when a run stops early, e.g. once a step has failed, while the
# program may still be registering resources; the run's own error says why it stopped, so the program ends
# quietly instead of printing Python's traceback of the interrupted registration.
signal.signal(signal.SIGINT, lambda signum, frame: os._exit(128 + signum))

config = pulumi.Config("kslab")
try:
    # Everything is validated and read before the first resource is registered.
    # The stack file is the one Pulumi reads, in the project it runs (tools/lab.sh: a scratch project).
    lab_spec, kubeconfigs, registry_credentials, passwords = load_lab(config, PROJECT_DIR, pulumi.get_stack(),
                                                                      stack_dir=os.getcwd())
except LabConfigError as error:
    raise pulumi.RunError(str(error)) from None

lab = Lab("lab", LabArgs(spec=lab_spec, existing_kubeconfigs=kubeconfigs, jwt_secret=config.get_secret("jwtSecret"),
                         registry_credentials=registry_credentials, user_passwords=passwords))
for key, value in lab.outputs().items():
    pulumi.export(key, value)
