"""Apply-time steps (`python -m components.ops <step>`); see __main__.py."""

# The exit status of a read step that found its object gone (a refresh then drops the step from the state).
GONE_EXIT = 3
