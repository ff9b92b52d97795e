#!/usr/bin/env bash
# Build `kind` from its published Go module into a version-keyed cache outside the repository.
#
#   eval "$(tools/kind/build.sh)"     # last stdout line: export PATH="<cache>/kind/<version>/bin:$PATH"
#
# A warm run (binary present and reporting the pinned version) builds nothing.
# Env: KSLAB_CACHE (default ~/.cache/kslab).
set -euo pipefail

# kind v0.33.0: the release the node image recipe (tools/kind/node-image) was written against.
# This machine is cgroup v1, which kind still runs with a deprecation warning: keep it pinned.
KIND_VERSION=v0.33.0
KIND_MODULE=sigs.k8s.io/kind

CACHE_ROOT=${KSLAB_CACHE:-$HOME/.cache/kslab}
DEST=$CACHE_ROOT/kind/$KIND_VERSION/bin

log() { printf '[kind-build] %s\n' "$*" >&2; }
die() { printf '[kind-build] ERROR: %s\n' "$*" >&2; exit 1; }

if [[ -x $DEST/kind ]] && "$DEST/kind" version 2>/dev/null | grep -q "^kind $KIND_VERSION "; then
  log "kind $KIND_VERSION is cached at $DEST"
  printf 'export PATH="%s:$PATH"\n' "$DEST"
  exit 0
fi
command -v go >/dev/null 2>&1 || die "go is not installed (needed to build kind $KIND_VERSION)"
mkdir -p "$DEST"
t0=$(date +%s)
log "building $KIND_MODULE@$KIND_VERSION"
# kind's own go.mod has no replace directives, so `go install module@version` works.
GOWORK=off CGO_ENABLED=0 GOBIN="$DEST" go install -trimpath "$KIND_MODULE@$KIND_VERSION" >&2 \
  || die "go install $KIND_MODULE@$KIND_VERSION failed"
"$DEST/kind" version | grep -q "^kind $KIND_VERSION " || die "built kind reports '$("$DEST/kind" version)', expected $KIND_VERSION"
log "built kind $KIND_VERSION in $(( $(date +%s) - t0 )) s"
printf 'export PATH="%s:$PATH"\n' "$DEST"
