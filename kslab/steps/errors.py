"""What a step's API calls can end with, apart from an answer (no client library needed to name them)."""


class Transient(RuntimeError):
    """Something that can heal by waiting: the API server is unreachable or answers 5xx/429."""


class ApiFailure(RuntimeError):
    """An answer that waiting will not change (4xx other than 404/409/429): fail at once with it."""


class RegistryError(Exception):
    """Something about the lab registry or the images the user can fix; the message says what to do."""
