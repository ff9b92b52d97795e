"""The dev workspace folder on disk (issue #20, defects 2 and 8): only a folder of the user running kslab that
no one else may write; nothing written or removed through a link anywhere inside it; only the files kslab wrote
removed (as its marker records), and the folder only if kslab made it; a killed write's secret temp file goes."""
import os
import pwd

import pytest

from kslab.render import devworkspace
from kslab.steps import workspace_fs as wfs

KCM = "ks-controller-manager"
IDENTITY = devworkspace.marker("lab", KCM)


def _files(directory) -> dict:
    certs = {k: f"{k}-data" for k in devworkspace.component(KCM).cert_keys}
    return devworkspace.files(KCM, str(directory), "kubesphere: {}", "kubeconfig", certs)


USUAL = tuple(_files("/x"))


def _write(directory):
    wfs.write(str(directory), _files(directory), IDENTITY, USUAL)


def _remove(directory):
    wfs.remove(str(directory), IDENTITY, USUAL, built=(f"bin/{KCM}",))


def test_a_folder_kslab_made_is_removed_with_its_files(tmp_path):
    ws = tmp_path / "ws"
    _write(ws)
    assert (ws / "serving-certs" / "tls.key").stat().st_mode & 0o077 == 0
    _remove(ws)
    assert not ws.exists()


def test_an_empty_folder_of_yours_is_written_into_but_kept_and_its_mode_left(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir(mode=0o755)
    os.chmod(ws, 0o755)
    _write(ws)
    assert oct(ws.stat().st_mode & 0o777) == "0o755", "kslab did not make it: its mode is yours"
    _remove(ws)
    assert ws.is_dir() and os.listdir(ws) == []


def test_only_the_binary_run_sh_builds_leaves_bin(tmp_path):
    ws = tmp_path / "ws"
    _write(ws)
    (ws / "bin").mkdir()
    (ws / "bin" / KCM).write_text("built")
    (ws / "bin" / "my-tool").write_text("mine")
    _remove(ws)
    assert sorted(p.relative_to(ws).as_posix() for p in ws.rglob("*")) == ["bin", "bin/my-tool"]


def test_a_file_of_yours_added_later_stays_and_so_does_the_folder(tmp_path):
    ws = tmp_path / "ws"
    _write(ws)
    (ws / "notes.txt").write_text("mine")
    _remove(ws)
    assert sorted(os.listdir(ws)) == ["notes.txt"]


def test_a_folder_of_another_user_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("SKIPPED LOUDLY: making a folder of another user needs root here")
    ws = tmp_path / "ws"
    ws.mkdir()
    nobody = pwd.getpwnam("nobody")
    os.chown(ws, nobody.pw_uid, nobody.pw_gid)
    with pytest.raises(wfs.WorkspaceError, match="belongs to uid"):
        _write(ws)
    assert os.listdir(ws) == []


def test_a_folder_others_may_write_is_refused(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    os.chmod(ws, 0o777)
    with pytest.raises(wfs.WorkspaceError, match="can be written by others"):
        _write(ws)
    assert os.listdir(ws) == []


def test_a_linked_serving_certs_is_never_written_through(tmp_path):
    ws, elsewhere = tmp_path / "ws", tmp_path / "elsewhere"
    _write(ws)
    elsewhere.mkdir()
    for name in os.listdir(ws / "serving-certs"):
        os.remove(ws / "serving-certs" / name)
    os.rmdir(ws / "serving-certs")
    os.symlink(elsewhere, ws / "serving-certs")
    with pytest.raises(wfs.WorkspaceError, match="serving-certs in the workspace is not a folder of its own"):
        _write(ws)
    assert os.listdir(elsewhere) == [], "no key written through the link"


def test_a_linked_serving_certs_is_never_removed_through(tmp_path):
    ws, elsewhere = tmp_path / "ws", tmp_path / "elsewhere"
    _write(ws)
    elsewhere.mkdir()
    (elsewhere / "tls.key").write_text("someone else's key")
    for name in os.listdir(ws / "serving-certs"):
        os.remove(ws / "serving-certs" / name)
    os.rmdir(ws / "serving-certs")
    os.symlink(elsewhere, ws / "serving-certs")
    with pytest.raises(wfs.WorkspaceError):
        _remove(ws)
    assert (elsewhere / "tls.key").read_text() == "someone else's key"


def test_a_linked_workspace_folder_is_refused(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    os.symlink(target, tmp_path / "ws")
    with pytest.raises(wfs.WorkspaceError, match="is a link or a file"):
        _write(tmp_path / "ws")
    assert os.listdir(target) == []


def test_a_marker_of_another_workspace_protects_its_files(tmp_path):
    ws = tmp_path / "ws"
    wfs.write(str(ws), _files(ws), devworkspace.marker("other", KCM), USUAL)
    _remove(ws)
    assert (ws / "kubeconfig").exists()


def test_a_marker_from_before_markers_listed_files_still_removes_the_usual_files(tmp_path):
    ws = tmp_path / "ws"
    _write(ws)
    (ws / wfs.MARKER).write_text(IDENTITY)  # the identity line alone, as older kslab wrote it
    _remove(ws)
    assert not ws.exists()


def test_a_secret_temp_file_of_a_killed_write_is_removed_with_the_workspace(tmp_path):
    """Defect 8: a step killed between the O_EXCL open and the rename leaves `<file>.kslab-<pid>` (maybe a key);
    giving the workspace back removes it too, so the folder goes."""
    ws = tmp_path / "ws"
    _write(ws)
    leftover = ws / "serving-certs" / "tls.key.kslab-99999999"  # above any pid_max: no such process
    leftover.write_text("-----BEGIN PRIVATE KEY-----\n")
    _remove(ws)
    assert not ws.exists()


def test_a_temp_file_of_a_live_writer_is_left_alone(tmp_path):
    ws = tmp_path / "ws"
    _write(ws)
    live = ws / f"kubeconfig.kslab-{os.getppid()}"  # a process that runs
    live.write_text("being written\n")
    _write(ws)
    assert live.exists()


def test_a_write_cut_off_half_way_leaves_files_the_marker_names(tmp_path):
    """A dev-up killed (here: failing) after the first file leaves no secret orphaned: the marker, written first,
    names every file, so dev-down removes them and the folder."""
    ws = tmp_path / "ws"
    files = {"kubeconfig": ("secret", 0o600), "kubeconfig/oops": ("cannot be written", 0o600)}
    with pytest.raises(wfs.WorkspaceError):
        wfs.write(str(ws), files, IDENTITY, USUAL)
    assert (ws / "kubeconfig").exists() and wfs.read_record(str(ws), USUAL).files == ("kubeconfig", "kubeconfig/oops")
    _remove(ws)
    assert not ws.exists()
