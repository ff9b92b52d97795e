"""What every step resource of a lab is registered with, run through the real program under mocks: its step
names, triggers and, above all, its environment, in the request's wire form (secret markers kept).

The recording (tests/stacks/step_requests.json) was taken before the steps' settings became typed requests
(kslab/model/requests.py): a stack made then must see every step's inputs unchanged after an upgrade, or a
no-change `up` would run its steps again (and a kind lab's kind-create, which an earlier kslab's cluster refuses).
`python -m tests.support.step_requests` writes the recording again (only when a change of inputs is meant).
"""
from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
from typing import Any

from kslab.model import contract
from kslab.model.step_table import STEP_TYPES
from tests.support.mock_run import ROOT, STACKS_DIR, fake_kubeconfig, run_program, stack_config

TEST_STACKS_DIR = os.path.join(ROOT, "tests", "stacks")
RECORDING = os.path.join(TEST_STACKS_DIR, "step_requests.json")
HARNESS_DIR = "/kslab-harness"  # the live stacks' ${KSLAB_HARNESS_DIR}: written into a temp folder
_KIND = {"name": "lab", "role": "none", "kubesphereVersion": "v3.4.1", "consoleHostPort": 31880}

# Labs that reach what the stack files do not: the lab registry with every kind of source, archives and
# credentials; developer workspaces; jwtSecretMode copy; an existing cluster beside a kind one.
EXTRA: dict[str, tuple[dict[str, Any], list[str]]] = {
    "extra-lab-registry": ({
        "clusters": [_KIND, {**_KIND, "name": "lab2", "consoleHostPort": 31881, "imageCheck": False}],
        "kindWait": "10m",
        "imageSources": ["harbor.corp", "docker.io/prom"],
        "imageOverrides": {"kubesphere/ks-installer": "harbor.corp/me/ks-installer:dev",
                           "kubesphere/ks-controller-manager": "docker:my/kcm:dev"},
        "labRegistry": {"name": "my-registry", "hostPort": 5111},
        "imageArchives": ["tests/stacks/insecure-loopback.kubeconfig"],
        "registryCredentials": {"harbor.corp": {"username": "me", "password": "pw-0123456789"}},
    }, ["kslab:registryCredentials"]),
    "extra-archives-only": ({
        "clusters": [_KIND], "imageArchives": ["tests/stacks/insecure-loopback.kubeconfig"],
    }, []),
    "extra-dev-workspaces": ({
        "clusters": [_KIND], "installTimeoutSeconds": 77,
        "devWorkspaces": [
            {"cluster": "lab", "component": "ks-controller-manager", "dir": "dev/kcm"},
            {"cluster": "lab", "component": "ks-apiserver", "dir": "dev/api", "keepFiles": True},
        ],
    }, []),
    "extra-copy-mixed": ({
        "jwtSecretMode": "copy", "joinTimeoutSeconds": 61, "unjoinTimeoutSeconds": 31,
        "clusters": [
            {**_KIND, "name": "h", "role": "host", "hostClusterName": "h"},
            {"name": "m", "role": "member", "backend": "existing", "kubernetesVersion": "v1.26.13",
             "kubesphereVersion": "v3.4.1", "kubeconfigPath": f"{HARNESS_DIR}/member/kubeconfig",
             "allowLoopbackJoin": True, "loopbackReason": "a test"},
        ],
        "joins": [{"member": "m", "host": "h"}],
    }, []),
}


def stack_files() -> dict[str, str]:
    paths = glob.glob(os.path.join(STACKS_DIR, "Pulumi.*.yaml")) + glob.glob(os.path.join(TEST_STACKS_DIR,
                                                                                          "Pulumi.*.yaml"))
    return {os.path.relpath(p, ROOT): p for p in sorted(paths) if not p.endswith("Pulumi.broken.yaml")}


# Secrets a stack file names but holds no value of (a user's password the test sets with `config set --secret`).
STACK_SECRETS = {"tests/stacks/Pulumi.live-demo.yaml": {"kslab:wendyPassword": "Wendy-Demo-2026"}}


def _configs() -> dict[str, tuple[dict[str, str], list[str]]]:
    out = {name: ({**stack_config(path), **STACK_SECRETS.get(name, {})}, sorted(STACK_SECRETS.get(name, {})))
           for name, path in stack_files().items()}
    for name, (settings, secret) in EXTRA.items():
        out[name] = ({f"kslab:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in settings.items()}, secret)
    return out


def _normalised(value: Any, harness: str) -> Any:
    """The recording holds no path of this machine: the checkout, its lab id digest and the harness folder."""
    text = json.dumps(value, sort_keys=True)
    digest = contract.lab_id("x", FIXED_CHECKOUT).rsplit("-", 1)[1]
    return json.loads(text.replace(contract.PROJECT_DIR, "<project>").replace(digest, "<digest>")
                      .replace(harness, HARNESS_DIR))


FIXED_CHECKOUT = "/checkout"  # the lab id of every recorded lab is computed as if the checkout were here


def record() -> dict[str, dict[str, Any]]:
    """{lab: {step resource name: {type, props (wire form), secret outputs}}} for every lab above. A lab's id names
    its checkout (contract.lab_id), and a hash of what holds it (an install's trigger) cannot be normalised after
    the fact: the labs are recorded as if checked out at FIXED_CHECKOUT, whatever this clone's path."""
    out: dict[str, dict[str, Any]] = {}
    real_lab_id = contract.lab_id
    contract.lab_id = lambda stack, project_dir=FIXED_CHECKOUT: real_lab_id(stack, FIXED_CHECKOUT)
    try:
        _record(out)
    finally:
        contract.lab_id = real_lab_id
    return out


def _record(out: dict[str, dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as harness:
        for name in ("host", "member", "host2", "lab", "member1", "member2"):
            os.makedirs(os.path.join(harness, name))
            with open(os.path.join(harness, name, "kubeconfig"), "w") as fh:
                fh.write(fake_kubeconfig(name, f"https://127.0.0.1:{6443 + len(name)}"))
        old = os.environ.get("KSLAB_HARNESS_DIR")
        os.environ["KSLAB_HARNESS_DIR"] = harness
        try:
            for lab, (config, secret_keys) in _configs().items():
                config = {k: v.replace(HARNESS_DIR, harness) for k, v in config.items()}
                run = run_program(config, secret_keys=secret_keys)
                out[lab] = _normalised({r.name: {"type": r.type, "props": r.raw_props,
                                                 "secretOutputs": sorted(r.additional_secret_outputs)}
                                        for r in run.resources if r.type in STEP_TYPES}, harness)
        finally:
            if old is None:
                os.environ.pop("KSLAB_HARNESS_DIR", None)
            else:
                os.environ["KSLAB_HARNESS_DIR"] = old


if __name__ == "__main__":
    with open(RECORDING, "w") as fh:
        json.dump(record(), fh, indent=1, sort_keys=True)
        fh.write("\n")
    print(f"wrote {RECORDING}", file=sys.stderr)
