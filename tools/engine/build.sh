#!/usr/bin/env bash
# Build the Pulumi engine (CLI, Python language host, provider plugins) from
# published Go modules into a per-version cache outside the repository.
#
#   eval "$(tools/engine/build.sh)"      # puts the engine on PATH
#
# stdout: exactly one line, `export PATH="<cache>/engine/<key>/bin:$PATH" KSLAB_ENGINE_PLUGIN_HOME="..."`.
# stderr: progress and errors. A warm run (stamp present) rebuilds nothing.
#
# Env:
#   KSLAB_CACHE     cache root (default: $HOME/.cache/kslab)
#   KSLAB_ENGINE_LOG_DIR  where per-program build logs go (default: <cache>/engine/logs)
# Go's module and build caches stay at Go's defaults (GOMODCACHE, GOCACHE).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_TAG=engine
# shellcheck source=tools/lib/gocache.sh
source "$HERE/../lib/gocache.sh"

# ---- pinned versions -------------------------------------------------------
# The Go module proxy reachable here does not serve pkg/v3 v3.272.0; v3.274.1
# is the nearest served release (see README.md).
PULUMI_VERSION=3.274.1
# The language host module (sdk/python/cmd/pulumi-language-python/v3) is not
# served at any version; sdk/v3 v3.68.0 is the last release that still carried
# the host as a package inside the sdk module (see README.md).
PYHOST_VERSION=3.68.0
# pulumi-resource-kubernetes: the only served provider/v4 version is this
# commit of 2026-01-15 (between the v4.24.0 and v4.25.0 tags).
K8S_VERSION=4.25.0
K8S_PSEUDO=v4.0.0-20260115033456-f47bc2d6f199
# Bump when the recipe below changes in a way that changes the binaries.
RECIPE=1

CLI_MOD=github.com/pulumi/pulumi/pkg/v3
SDK_MOD=github.com/pulumi/pulumi/sdk/v3
K8S_MOD=github.com/pulumi/pulumi-kubernetes/provider/v4
PROGRAMS=(pulumi pulumi-language-python pulumi-language-python-host pulumi-language-python-exec
          pulumi-resource-pulumi-python pulumi-resource-kubernetes)

need_go "go is not installed (need Go >= 1.26.6)"

# The key encodes the versions plus a digest of the wrapper modules and this
# recipe, so any change to what gets built lands in a new directory.
digest=$(cat "$HERE"/pulumi-language-python.sh "$HERE"/cli/go.mod "$HERE"/cli/go.sum "$HERE"/python/go.mod "$HERE"/python/go.sum \
             "$HERE"/kubernetes/go.mod "$HERE"/kubernetes/go.sum \
         | { cat; echo "recipe=$RECIPE"; } | sha256sum | cut -c1-10)
KEY="pulumi-${PULUMI_VERSION}_pyhost-${PYHOST_VERSION}_k8s-${K8S_VERSION}-${K8S_PSEUDO##*-}_${digest}"
CACHE_ROOT=$(cache_root)
ENGINE_DIR=$CACHE_ROOT/engine
DEST=$ENGINE_DIR/$KEY
STAMP=$DEST/.complete
LOG_DIR=${KSLAB_ENGINE_LOG_DIR:-$ENGINE_DIR/logs}

# The built provider plugins installed the way the engine installs plugins (`pulumi plugin install --file`, no
# download), in a Pulumi home of the cache's own: a run whose PULUMI_HOME has them installed, with
# PULUMI_IGNORE_AMBIENT_PLUGINS, takes them from there instead of warning "using pulumi-resource-kubernetes from
# $PATH" (tests/support/engine.py links it into each test's home; tools/lab.sh installs it once into yours).
PLUGIN_HOME=$DEST/plugin-home
plugin_home() {
    [[ -d $PLUGIN_HOME/plugins/resource-kubernetes-v$K8S_VERSION ]] && return 0
    local tmp
    tmp=$(mktemp -d "$DEST/.plugin-home.XXXXXX" 2>/dev/null) || {
        log "cannot write $DEST (another user's cache?); runs will take the kubernetes plugin from PATH"
        return 0
    }
    if PULUMI_HOME=$tmp PULUMI_SKIP_UPDATE_CHECK=true "$DEST/bin/pulumi" plugin install resource kubernetes \
            "v$K8S_VERSION" --file "$DEST/bin/pulumi-resource-kubernetes" >/dev/null 2>&1 \
            && [[ -d $tmp/plugins/resource-kubernetes-v$K8S_VERSION ]]; then
        rm -rf "$tmp/workspaces" "$tmp/credentials.json"
        mv -T "$tmp" "$PLUGIN_HOME" 2>/dev/null || rm -rf "$tmp"  # a concurrent caller may have made it first
    else
        rm -rf "$tmp"
        log "could not install the built kubernetes plugin into $PLUGIN_HOME; runs will take it from PATH"
    fi
}
emit() {
    plugin_home || true
    if [[ -d $PLUGIN_HOME/plugins/resource-kubernetes-v$K8S_VERSION ]]; then
        printf 'export PATH="%s/bin:$PATH" KSLAB_ENGINE_PLUGIN_HOME="%s"\n' "$DEST" "$PLUGIN_HOME"
    else
        emit_path "$DEST/bin"
    fi
}

is_complete() {
    [[ -f $STAMP ]] || return 1
    local p
    for p in "${PROGRAMS[@]}"; do [[ -x $DEST/bin/$p ]] || return 1; done
}

if is_complete; then
    log "engine $KEY is cached at $DEST"
    emit
    exit 0
fi

mkdir -p "$ENGINE_DIR" "$LOG_DIR"
# One builder per key at a time; a second caller waits, then finds the stamp.
build_lock "$ENGINE_DIR/.lock-$KEY" "another build of $KEY is running; waiting for it"
if is_complete; then
    log "engine $KEY was built by another process"
    emit
    exit 0
fi

TMP=$(mktemp -d "$ENGINE_DIR/.tmp-$KEY.XXXXXX")
cleanup() { chmod -R u+w "$TMP" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
mkdir -p "$TMP/bin"

export CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=readonly GOTOOLCHAIN=${GOTOOLCHAIN:-auto}
BUILD=(go build -trimpath -buildvcs=false)

# run NAME CMD...: run a build step, log to $LOG_DIR/NAME.log, report duration.
run() {
    local name=$1; shift
    local logf=$LOG_DIR/$name.log start=$SECONDS
    log "building $name (log: $logf)"
    if ! "$@" >"$logf" 2>&1; then
        tail -n 30 "$logf" >&2 || true
        die "building $name failed (full log: $logf)"
    fi
    log "built $name in $((SECONDS - start))s"
    echo "$name=$((SECONDS - start))s" >>"$TMP/build-times"
}

moddir() { # moddir WRAPPER_DIR MODULE -> directory of MODULE in the module cache
    (cd "$1" && go list -m -f '{{.Dir}}' "$2") || die "cannot locate $2 from $1 in the module cache"
}

log "cold build of $KEY into $DEST (this takes a long time on 2 cores)"
go version >&2

# 1. pulumi CLI ---------------------------------------------------------------
(cd "$HERE/cli" && go mod download) || die "go mod download failed for tools/engine/cli"
run pulumi bash -c 'cd "$1/cli" && "${@:4}" -tags osusergo,grpcnotrace \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$2" \
    -o "$3/bin/pulumi" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi' \
    _ "$HERE" "$PULUMI_VERSION" "$TMP" "${BUILD[@]}"

# 2. Python language host + its scripts -------------------------------------
(cd "$HERE/python" && go mod download) || die "go mod download failed for tools/engine/python"
run pulumi-language-python bash -c 'cd "$1/python" && "${@:4}" \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$2" \
    -o "$3/bin/pulumi-language-python-host" github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python' \
    _ "$HERE" "$PYHOST_VERSION" "$TMP" "${BUILD[@]}"
# The engine starts `pulumi-language-python`; our launcher turns the Pulumi.yaml
# virtualenv option into the flags this host expects.
install -m 0755 "$HERE/pulumi-language-python.sh" "$TMP/bin/pulumi-language-python"
# The scripts come from the sdk/v3 release that matches the CLI (and, as closely
# as the proxy allows, the Python SDK): the exec shim the host runs, and the
# shim the engine starts for Python dynamic providers.
sdk_dir=$(moddir "$HERE/cli" "$SDK_MOD")
for f in python/cmd/pulumi-language-python-exec python/dist/pulumi-resource-pulumi-python; do
    [[ -f $sdk_dir/$f ]] || die "$f not found in $sdk_dir"
    install -m 0755 "$sdk_dir/$f" "$TMP/bin/"
done

# 3. pulumi-resource-kubernetes ---------------------------------------------
(cd "$HERE/kubernetes" && go mod download) || die "go mod download failed for tools/engine/kubernetes"
k8s_dir=$(moddir "$HERE/kubernetes" "$K8S_MOD")
src=$TMP/src/provider
mkdir -p "$TMP/src"
cp -R "$k8s_dir" "$src"
chmod -R u+w "$src"
# go generate step: writes schema-embed.json and terraform-mapping-embed.json.
# Its only import (pkg/v3/codegen/schema) resolves through the wrapper's
# go.mod/go.sum, passed with -modfile, so the upstream go.mod (which replaces
# sdk/v4 with a directory not in the module zip) is never loaded.
run kubernetes-generate bash -c 'cd "$1/cmd/pulumi-resource-kubernetes" && cp "$2/kubernetes/go.mod" "$2/kubernetes/go.sum" "$4/" \
    && VERSION="$3" go run -modfile="$4/go.mod" generate.go' _ "$src" "$HERE" "$K8S_VERSION" "$TMP/src"
[[ -s $src/cmd/pulumi-resource-kubernetes/schema-embed.json ]] || die "kubernetes generate step produced no schema-embed.json"
# Build through a temporary copy of the wrapper whose replace points at the copy.
kw=$TMP/src/kwrap
mkdir -p "$kw"
cp "$HERE/kubernetes/go.mod" "$HERE/kubernetes/go.sum" "$kw/"
(cd "$kw" && go mod edit -replace="$K8S_MOD=$src") || die "go mod edit failed"
run pulumi-resource-kubernetes bash -c 'cd "$1" && "${@:4}" \
    -ldflags "-s -w -X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$2" \
    -o "$3/bin/pulumi-resource-kubernetes" github.com/pulumi/pulumi-kubernetes/provider/v4/cmd/pulumi-resource-kubernetes' \
    _ "$kw" "$K8S_VERSION" "$TMP" "${BUILD[@]}"

# ---- check and publish -----------------------------------------------------
got=$("$TMP/bin/pulumi" version 2>/dev/null) || die "built pulumi does not run"
[[ $got == "v$PULUMI_VERSION" ]] || die "built pulumi reports '$got', expected v$PULUMI_VERSION"
rm -rf "$TMP/src"
cat >"$TMP/VERSIONS" <<EOF
pulumi                      v$PULUMI_VERSION ($CLI_MOD, tags osusergo,grpcnotrace)
pulumi-language-python      launcher script from tools/engine/pulumi-language-python.sh
pulumi-language-python-host v$PYHOST_VERSION ($SDK_MOD@v$PYHOST_VERSION/python/cmd/pulumi-language-python)
pulumi-language-python-exec from $SDK_MOD@v$PULUMI_VERSION
pulumi-resource-pulumi-python from $SDK_MOD@v$PULUMI_VERSION
pulumi-resource-kubernetes  $K8S_VERSION ($K8S_MOD@$K8S_PSEUDO)
go                          $(go env GOVERSION)
EOF
chmod 0755 "$TMP"
date -u +%Y-%m-%dT%H:%M:%SZ >"$TMP/.complete"
# Atomic publish: the directory appears complete (stamp included) or not at all.
[[ -e $DEST ]] && { chmod -R u+w "$DEST"; rm -rf "$DEST"; }
mv -T "$TMP" "$DEST"
trap - EXIT
log "engine ready: $DEST/bin"
emit
