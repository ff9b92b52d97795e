"""`python -m kslab <action> <stack> ...`: the kslab command (kslab/cli/main.py), as the `kslab` script runs it.

A virtualenv made before the kslab package cannot run the policy pack (it imports the installed package): that is
said with its fix before anything runs, with no traceback (nothing but the standard library is imported first)."""
import sys
from importlib.metadata import PackageNotFoundError, version

try:
    version("kslab")
    version("pulumi_kubernetes")
except PackageNotFoundError:
    print("kslab: the virtualenv predates the kslab package; run 'make venv' (or any make target) first",
          file=sys.stderr)
    sys.exit(2)

from kslab.cli.main import main  # noqa: E402  (after the check above)

sys.exit(main())
