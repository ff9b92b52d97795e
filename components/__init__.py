"""Only the name that old stacks' state holds (components/steps.py); the code is in kslab/."""
