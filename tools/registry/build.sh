#!/usr/bin/env bash
# Build the container registry (CNCF distribution) and crane (go-containerregistry) from their published Go
# modules into a version-keyed cache outside the repository. The tests start registries with them on this
# machine's loopback: a played source registry that holds stand-in images under the names ks-installer uses.
#
#   eval "$(tools/registry/build.sh)"   # last stdout line: export PATH="<cache>/registry/<versions>/bin:$PATH"
#
# A warm run (both binaries present and reporting the pinned versions) builds nothing.
# Env: KSLAB_CACHE (default ~/.cache/kslab).
set -euo pipefail

DISTRIBUTION_VERSION=v3.1.2
DISTRIBUTION_MODULE=github.com/distribution/distribution/v3
CRANE_VERSION=v0.22.1
CRANE_MODULE=github.com/google/go-containerregistry

CACHE_ROOT=${KSLAB_CACHE:-$HOME/.cache/kslab}
DEST=$CACHE_ROOT/registry/$DISTRIBUTION_VERSION-crane-$CRANE_VERSION/bin

log() { printf '[registry-build] %s\n' "$*" >&2; }
die() { printf '[registry-build] ERROR: %s\n' "$*" >&2; exit 1; }

cached() {
  [[ -x $DEST/registry && -x $DEST/crane ]] \
    && "$DEST/registry" --version 2>/dev/null | grep -q "$DISTRIBUTION_VERSION" \
    && [[ "$("$DEST/crane" version 2>/dev/null)" == "$CRANE_VERSION" ]]
}
if cached; then
  log "registry $DISTRIBUTION_VERSION and crane $CRANE_VERSION are cached at $DEST"
  printf 'export PATH="%s:$PATH"\n' "$DEST"
  exit 0
fi
command -v go >/dev/null 2>&1 || die "go is not installed (needed to build the registry and crane)"
mkdir -p "$DEST"
t0=$(date +%s)
# Neither module's go.mod has replace directives, so `go install module/cmd@version` works.
log "building $DISTRIBUTION_MODULE/cmd/registry@$DISTRIBUTION_VERSION"
GOWORK=off CGO_ENABLED=0 GOBIN="$DEST" go install -trimpath \
  -ldflags "-X $DISTRIBUTION_MODULE/version.version=$DISTRIBUTION_VERSION" \
  "$DISTRIBUTION_MODULE/cmd/registry@$DISTRIBUTION_VERSION" >&2 || die "go install of the registry failed"
log "building $CRANE_MODULE/cmd/crane@$CRANE_VERSION"
GOWORK=off CGO_ENABLED=0 GOBIN="$DEST" go install -trimpath \
  -ldflags "-X $CRANE_MODULE/cmd/crane/cmd.Version=$CRANE_VERSION" \
  "$CRANE_MODULE/cmd/crane@$CRANE_VERSION" >&2 || die "go install of crane failed"
cached || die "the built binaries do not report $DISTRIBUTION_VERSION / $CRANE_VERSION ($("$DEST/registry" --version 2>&1 | head -1); $("$DEST/crane" version 2>&1 | head -1))"
log "built the registry and crane in $(( $(date +%s) - t0 )) s"
printf 'export PATH="%s:$PATH"\n' "$DEST"
