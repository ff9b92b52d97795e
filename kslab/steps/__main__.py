"""`python -m kslab.steps <step>`: run one apply-time step (kslab/steps/programs.py)."""
import sys

from kslab.steps.programs import main

main(sys.argv[1:])
