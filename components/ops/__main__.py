"""`python -m components.ops <step>`: run one apply-time step (components/ops/steps.py)."""
import sys

from .steps import main

main(sys.argv[1:])
