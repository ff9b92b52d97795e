#!/usr/bin/env bash
# Smoke-test the engine built by build.sh, offline (local backend, no plugin
# downloads): a throwaway Python project in a temp dir with
#   - a Python dynamic-provider resource that runs `echo hi` (stand-in for
#     pulumi_command.local.Command, whose provider cannot be built here),
#   - optionally a real pulumi_command.local.Command (VERIFY_COMMAND=1),
#   - a pulumi_kubernetes.Provider with a dummy kubeconfig and a ConfigMap,
#   - a trivial advisory Python policy pack.
# `pulumi preview` covers everything; `pulumi up` runs without the Kubernetes
# part (there is no API server).
#
# Env: VERIFY_PIP_PULUMI (default 3.272.0), VERIFY_PIP_K8S (default 4.25.0),
#      VERIFY_PIP_POLICY (default 1.21.0), VERIFY_COMMAND=1 to also try
#      pulumi-command (VERIFY_PIP_COMMAND, default 1.2.1), VERIFY_KEEP=1 to keep
#      the temp dir.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { printf '[verify] %s\n' "$*" >&2; }
die() { printf '[verify] FAIL: %s\n' "$*" >&2; exit 1; }

eval "$("$HERE/build.sh")"
command -v pulumi >/dev/null || die "pulumi not on PATH after build.sh"

PY_PULUMI=${VERIFY_PIP_PULUMI:-3.272.0}
PY_K8S=${VERIFY_PIP_K8S:-4.25.0}
PY_POLICY=${VERIFY_PIP_POLICY:-1.21.0}
PY_COMMAND=${VERIFY_PIP_COMMAND:-1.2.1}
WITH_COMMAND=${VERIFY_COMMAND:-0}

W=$(mktemp -d /tmp/enginecheck.XXXXXX)
[[ ${VERIFY_KEEP:-0} == 1 ]] || trap 'rm -rf "$W"' EXIT
log "workdir $W"

export PULUMI_HOME=$W/pulumi-home PULUMI_BACKEND_URL=file://$W/state PULUMI_CONFIG_PASSPHRASE=x \
       PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true PULUMI_SKIP_UPDATE_CHECK=true
mkdir -p "$W/state" "$W/proj" "$W/policy"

log "pulumi version: $(pulumi version)"

# -- project --------------------------------------------------------------
pkgs=("pulumi==$PY_PULUMI" "pulumi-kubernetes==$PY_K8S")
[[ $WITH_COMMAND == 1 ]] && pkgs+=("pulumi-command==$PY_COMMAND")
log "creating project venv: ${pkgs[*]}"
python3 -m venv "$W/proj/venv"
"$W/proj/venv/bin/pip" install -q "${pkgs[@]}" >&2 || die "pip install failed"
cat >"$W/proj/Pulumi.yaml" <<'EOF'
name: enginecheck
runtime:
  name: python
  options:
    virtualenv: venv
EOF
cat >"$W/proj/__main__.py" <<'EOF'
import os
import subprocess

import pulumi
from pulumi.dynamic import CreateResult, Resource, ResourceProvider


class ShellProvider(ResourceProvider):
    def create(self, props):
        out = subprocess.run(["sh", "-c", props["create"]], check=True,
                             capture_output=True, text=True).stdout
        return CreateResult(id_="shell", outs={**props, "stdout": out.strip()})


class Shell(Resource):
    stdout: pulumi.Output[str]

    def __init__(self, name, create, opts=None):
        super().__init__(ShellProvider(), name, {"create": create, "stdout": None}, opts)


pulumi.export("dynamic_stdout", Shell("hello-dynamic", "echo hi").stdout)

if os.environ.get("WITH_COMMAND") == "1":
    import pulumi_command as command
    pulumi.export("command_stdout", command.local.Command("hello", create="echo hi").stdout)

if os.environ.get("WITH_K8S", "1") == "1":
    import pulumi_kubernetes as k8s
    kubeconfig = """apiVersion: v1
kind: Config
clusters:
- name: dummy
  cluster: {server: "https://127.0.0.1:1"}
contexts:
- name: dummy
  context: {cluster: dummy, user: dummy}
current-context: dummy
users:
- name: dummy
  user: {token: dummy}
"""
    prov = k8s.Provider("dummy", kubeconfig=kubeconfig)
    k8s.core.v1.ConfigMap("cm", data={"a": "b"}, opts=pulumi.ResourceOptions(provider=prov))
EOF

# -- policy pack ----------------------------------------------------------
log "creating policy venv: pulumi==$PY_PULUMI pulumi-policy==$PY_POLICY"
python3 -m venv "$W/policy/venv"
"$W/policy/venv/bin/pip" install -q "pulumi==$PY_PULUMI" "pulumi-policy==$PY_POLICY" >&2 || die "pip install failed"
cat >"$W/policy/PulumiPolicy.yaml" <<'EOF'
runtime:
  name: python
  options:
    virtualenv: venv
EOF
cat >"$W/policy/__main__.py" <<'EOF'
from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy


def report_all(args, report_violation):
    report_violation(f"enginecheck saw {args.resource_type}")


PolicyPack(
    name="enginecheck-policy",
    enforcement_level=EnforcementLevel.ADVISORY,
    policies=[ResourceValidationPolicy(name="enginecheck-advisory",
                                       description="Reports every resource.", validate=report_all)],
)
EOF
# The language host built here predates the ProgramInfo protocol, so the CLI
# cannot run a policy-pack *directory* through it; the CLI does launch an
# executable given to --policy-pack as an analyzer plugin, so use a launcher.
cat >"$W/policy/run-policy" <<'EOF'
#!/bin/sh
here=$(cd "$(dirname "$0")" && pwd)
exec "$here/venv/bin/python" -u -m pulumi.policy "$1" "$here"
EOF
chmod +x "$W/policy/run-policy"

# -- run ------------------------------------------------------------------
cd "$W/proj"
# The language host honours no Pulumi.yaml options; it runs `python3` from PATH.
export PATH="$W/proj/venv/bin:$PATH" WITH_COMMAND
pulumi stack init dev --non-interactive >&2

check_no_download() {
    if grep -qiE 'download|acquir|plugin install' "$1"; then
        cat "$1" >&2; die "$2 mentions a plugin download"
    fi
}

log "pulumi preview (dynamic + kubernetes, VERIFY_COMMAND=$WITH_COMMAND) with policy pack"
pulumi preview --non-interactive --policy-pack "$W/policy/run-policy" >"$W/preview.log" 2>&1 \
    || { cat "$W/preview.log" >&2; die "pulumi preview failed"; }
cat "$W/preview.log" >&2
check_no_download "$W/preview.log" "preview"
grep -q 'kubernetes:core/v1:ConfigMap' "$W/preview.log" || die "preview did not plan the ConfigMap"
grep -q 'enginecheck saw' "$W/preview.log" || die "policy pack reported nothing"

log "pulumi up (without the kubernetes part)"
WITH_K8S=0 pulumi up --yes --non-interactive >"$W/up.log" 2>&1 \
    || { cat "$W/up.log" >&2; die "pulumi up failed"; }
cat "$W/up.log" >&2
check_no_download "$W/up.log" "up"
[[ $(pulumi stack output dynamic_stdout) == hi ]] || die "dynamic resource did not return 'hi'"
WITH_K8S=0 pulumi destroy --yes --non-interactive >/dev/null 2>&1 || die "pulumi destroy failed"
log "OK"
