"""Apply-time steps (`python -m components.ops <step>`); the steps are in steps.py."""
