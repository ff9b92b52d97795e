"""kslab's own password for the lab registry's push endpoint: made with the endpoint, kept in a file of this
user's (mode 600, in user_state's private folder), given to distribution as a bcrypt htpasswd entry."""
from __future__ import annotations

import io
import os
import secrets
import tarfile

from kslab.model.image_sources import LabRegistry
from kslab.steps import user_state
from kslab.steps.errors import RegistryError

PUSH_USER = "kslab"
BCRYPT_ROUNDS = 4  # bcrypt's least cost (see htpasswd_tar)
HTPASSWD = "/auth/htpasswd"


def push_password(lab: LabRegistry, create: bool) -> str | None:
    """kslab's password for the lab registry's push endpoint: a file of this user's (mode 600), made with the
    endpoint; None when there is none and `create` is false."""
    try:
        path = os.path.join(user_state.private_dir("lab-registry"), f"{lab.name}.password")
    except user_state.UnsafeStateDir as error:
        raise RegistryError(str(error)) from None
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip() or None
    except FileNotFoundError:
        if not create:
            return None
    password = secrets.token_urlsafe(32)
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"  # a killed run's leftover never blocks a new one
    try:
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600), "w") as fh:
            fh.write(password)
        os.replace(tmp, path)
    except OSError as error:
        raise RegistryError(f"cannot keep the lab registry's password in {path}: {error.strerror}") from None
    return password


def push_credentials(lab: LabRegistry) -> dict[str, tuple[str, str]]:
    """The push endpoint's credentials, as registry_check and crane take them; {} before it exists."""
    password = push_password(lab, create=False)
    return {lab.local: (PUSH_USER, password)} if password else {}


def htpasswd_tar(password: str) -> bytes:
    import bcrypt  # distribution's htpasswd takes bcrypt only (docs/content/about/configuration.md, htpasswd)
    # distribution checks the hash on every request, and crane makes dozens per image: bcrypt's default cost (12)
    # made each ~0.25 s here. The password is 32 random bytes, far beyond guessing at any cost, so the least cost
    # bcrypt takes is as safe and keeps the push endpoint fast.
    line = f"{PUSH_USER}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=BCRYPT_ROUNDS)).decode()}\n".encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(HTPASSWD.lstrip("/"))
        info.size, info.mode = len(line), 0o644
        tar.addfile(info, io.BytesIO(line))
    return buffer.getvalue()
