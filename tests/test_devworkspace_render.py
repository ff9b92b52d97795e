"""What a developer workspace writes (kslab/render/devworkspace.py): the files, their modes, and how the
component is started from them."""
import json

from kslab.render import devworkspace

CERTS = {"ca.crt": "CA", "tls.crt": "CERT", "tls.key": "KEY"}


def test_the_controller_manager_workspace_has_config_kubeconfig_and_webhook_certs_with_keys_0600():
    files = devworkspace.files("ks-controller-manager", "/w", "cfg", "kc", CERTS)
    assert {p: m for p, (_, m) in files.items()} == {
        "kubesphere.yaml": 0o600, "kubeconfig": 0o600, "serving-certs/ca.crt": 0o600,
        "serving-certs/tls.crt": 0o600, "serving-certs/tls.key": 0o600, "launch.json": 0o644, "run.sh": 0o755}
    assert files["serving-certs/tls.key"][0] == "KEY" and files["kubesphere.yaml"][0] == "cfg"


def test_the_apiserver_workspace_has_no_certs():
    files = devworkspace.files("ks-apiserver", "/w", "cfg", "kc", {})
    assert sorted(files) == ["kubeconfig", "kubesphere.yaml", "launch.json", "run.sh"]


def test_launch_json_runs_the_checkouts_main_package_in_the_workspace():
    [config] = json.loads(devworkspace.files("ks-apiserver", "/w", "c", "k", {})["launch.json"][0])["configurations"]
    assert config["program"] == "${workspaceFolder}/cmd/ks-apiserver" and config["cwd"] == "/w"
    assert config["args"] == ["--logtostderr=true", "--kubeconfig=kubeconfig"]


def test_run_sh_builds_in_the_checkout_and_runs_in_the_workspace():
    script = devworkspace.files("ks-controller-manager", "/w", "c", "k", CERTS)["run.sh"][0]
    assert 'go build -C "$src" -o "$here/bin/ks-controller-manager" ./cmd/controller-manager' in script
    assert 'cd "$here" && exec "$here/bin/ks-controller-manager" --logtostderr=true --leader-elect=false ' \
           '--webhook-cert-dir=serving-certs --kubeconfig=kubeconfig' in script


def test_the_taken_over_service_port_is_the_components_own():
    assert (devworkspace.component("ks-controller-manager").target_port,
            devworkspace.component("ks-apiserver").target_port) == (8443, 9090)
