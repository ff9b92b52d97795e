"""The step plugin (plugin.py) and the apply-time step programs (`python -m kslab.steps <step>`)."""
