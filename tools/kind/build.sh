#!/usr/bin/env bash
# Build `kind` from its published Go module into a version-keyed cache outside the repository.
#
#   eval "$(tools/kind/build.sh)"     # last stdout line: export PATH="<cache>/kind/<version>/bin:$PATH"
#
# A warm run (binary present and reporting the pinned version) builds nothing.
# Env: KSLAB_CACHE (default ~/.cache/kslab).
set -euo pipefail
LOG_TAG=kind-build
# shellcheck source=tools/lib/gocache.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/gocache.sh"

# kind v0.33.0: the release the node image recipe (tools/kind/node-image) was written against.
# This machine is cgroup v1, which kind still runs with a deprecation warning: keep it pinned.
KIND_VERSION=v0.33.0
KIND_MODULE=sigs.k8s.io/kind

DEST=$(cache_root)/kind/$KIND_VERSION/bin

cached() { [[ -x $DEST/kind ]] && "$DEST/kind" version 2>/dev/null | grep -q "^kind $KIND_VERSION "; }
build() {
  need_go "go is not installed (needed to build kind $KIND_VERSION)"
  log "building $KIND_MODULE@$KIND_VERSION"
  go_install "$DEST" "" "$KIND_MODULE@$KIND_VERSION" || die "go install $KIND_MODULE@$KIND_VERSION failed"
  "$DEST/kind" version | grep -q "^kind $KIND_VERSION " || die "built kind reports '$("$DEST/kind" version)', expected $KIND_VERSION"
}
go_tool "$DEST" cached build "kind $KIND_VERSION is cached at $DEST" "built kind $KIND_VERSION"
