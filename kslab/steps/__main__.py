"""`python -m kslab.steps <step>`: run one apply-time step (kslab/steps/dispatch.py)."""
import sys

from kslab.steps.dispatch import main

main(sys.argv[1:])
