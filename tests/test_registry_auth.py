"""kslab's password for the lab registry's push endpoint (kslab/steps/registry_auth.py)."""
import io
import os
import stat
import tarfile

import bcrypt

from kslab.model.image_sources import LabRegistry
from kslab.steps import registry_auth


def test_the_password_is_made_once_and_kept_private(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    lab = LabRegistry("kt-auth", 5199)
    assert registry_auth.push_credentials(lab) == {}, "no password before the endpoint is made"
    made = registry_auth.push_password(lab, create=True)
    assert made and len(made) >= 40
    assert registry_auth.push_password(lab, create=True) == made, "made once"
    path = tmp_path / "kslab" / "lab-registry" / "kt-auth.password"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert registry_auth.push_credentials(lab) == {"127.0.0.1:5199": (registry_auth.PUSH_USER, made)}


def test_the_htpasswd_entry_opens_with_the_password_at_bcrypts_least_cost():
    """distribution checks the hash on every request and crane makes dozens per image: the least cost keeps the
    push endpoint fast (a random 32-byte password needs no work factor)."""
    with tarfile.open(fileobj=io.BytesIO(registry_auth.htpasswd_tar("s3cret-token"))) as tar:
        member = tar.next()
        assert member is not None and member.name == registry_auth.HTPASSWD.lstrip("/")
        user, _, hashed = tar.extractfile(member).read().decode().strip().partition(":")
    assert user == registry_auth.PUSH_USER
    assert hashed.startswith(f"$2b${registry_auth.BCRYPT_ROUNDS:02d}$") and registry_auth.BCRYPT_ROUNDS == 4
    assert bcrypt.checkpw(b"s3cret-token", hashed.encode())
    assert not bcrypt.checkpw(b"another", hashed.encode())


def test_a_state_folder_that_cannot_be_made_is_a_clear_error(tmp_path, monkeypatch):
    import pytest

    from kslab.steps.errors import RegistryError
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_STATE_HOME", str(blocker))
    with pytest.raises(RegistryError, match="cannot make .*where kslab keeps its private state"):
        registry_auth.push_password(LabRegistry("kt-auth", 5199), create=True)


def test_a_leftover_of_a_killed_write_never_blocks_the_next(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    folder = tmp_path / "kslab" / "lab-registry"
    folder.mkdir(parents=True, mode=0o700)
    (folder / f"kt-auth.password.{os.getpid()}").write_text("half")
    assert registry_auth.push_password(LabRegistry("kt-auth", 5199), create=True)
