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
LOG_TAG=registry-build
# shellcheck source=tools/lib/gocache.sh
source "$(dirname "${BASH_SOURCE[0]}")/../lib/gocache.sh"

DISTRIBUTION_VERSION=v3.1.2
DISTRIBUTION_MODULE=github.com/distribution/distribution/v3
CRANE_VERSION=v0.22.1
CRANE_MODULE=github.com/google/go-containerregistry

DEST=$(cache_root)/registry/$DISTRIBUTION_VERSION-crane-$CRANE_VERSION/bin

cached() {
  [[ -x $DEST/registry && -x $DEST/crane ]] \
    && "$DEST/registry" --version 2>/dev/null | grep -q "$DISTRIBUTION_VERSION" \
    && [[ "$("$DEST/crane" version 2>/dev/null)" == "$CRANE_VERSION" ]]
}
build() {
  need_go "go is not installed (needed to build the registry and crane)"
  log "building $DISTRIBUTION_MODULE/cmd/registry@$DISTRIBUTION_VERSION"
  go_install "$DEST" "-X $DISTRIBUTION_MODULE/version.version=$DISTRIBUTION_VERSION" \
    "$DISTRIBUTION_MODULE/cmd/registry@$DISTRIBUTION_VERSION" || die "go install of the registry failed"
  log "building $CRANE_MODULE/cmd/crane@$CRANE_VERSION"
  go_install "$DEST" "-X $CRANE_MODULE/cmd/crane/cmd.Version=$CRANE_VERSION" \
    "$CRANE_MODULE/cmd/crane@$CRANE_VERSION" || die "go install of crane failed"
  cached || die "the built binaries do not report $DISTRIBUTION_VERSION / $CRANE_VERSION ($("$DEST/registry" --version 2>&1 | head -1); $("$DEST/crane" version 2>&1 | head -1))"
}
go_tool "$DEST" cached build "registry $DISTRIBUTION_VERSION and crane $CRANE_VERSION are cached at $DEST" \
  "built the registry and crane"
