"""Apply-time steps (`python -m components.ops <step>`); see __main__.py."""
