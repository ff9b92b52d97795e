# shellcheck shell=bash
# Shared by tools/kube and tools/kind/node-image: building an older release with the Go it was released with. The
# module proxy serves every Go toolchain as the module golang.org/toolchain; the go command fetches one when
# GOTOOLCHAIN names it. The caller defines log() and die() (tools/lib/gocache.sh).

# The environment an old toolchain runs in: no go env file (this machine's may set flags an old go does not know,
# such as -buildvcs) and no GOFLAGS but the ones given; modules resolved and added to go.sum as needed (verified
# against the checksum database, GOSUMDB).
old_go_env() { # <toolchain> <command...>
  local toolchain=$1; shift
  env -u GOFLAGS GOENV=off GOFLAGS=-mod=mod GOTOOLCHAIN="$toolchain" CGO_ENABLED=0 GOWORK=off \
    GOPROXY="$(go env GOPROXY)" GOSUMDB="$(go env GOSUMDB)" GOPATH="$(go env GOPATH)" \
    GOMODCACHE="$(go env GOMODCACHE)" GOCACHE="$(go env GOCACHE)" "$@"
}

# The go program of a toolchain (fetched through the module proxy on first use), on stdout.
toolchain_go() { # <toolchain>
  local root
  root=$(old_go_env "$1" go env GOROOT) || die "could not fetch Go toolchain $1 from the module proxy ($(go env GOPROXY))"
  [[ -x $root/bin/go ]] || die "Go toolchain $1 has no go program under $root"
  # a go older than 1.21 ignores GOTOOLCHAIN and would answer with its own root
  [[ $(old_go_env "$1" "$root/bin/go" version) == "go version $1 "* ]] \
    || die "the Go found for $1 is $(old_go_env "$1" "$root/bin/go" version); Go >= 1.21 on PATH fetches the toolchain"
  printf '%s\n' "$root/bin/go"
}

# Build a module's main package with a toolchain, in a scratch module that requires it (its go.mod has no replace
# directives to honour).
#   toolchain_build <toolchain> <module> <version> <package> <out file> <ldflags> <scratch dir>
toolchain_build() {
  local toolchain=$1 module=$2 version=$3 pkg=$4 out=$5 ldflags=$6 dir=$7 gobin
  gobin=$(toolchain_go "$toolchain")
  mkdir -p "$dir"
  (cd "$dir" && printf 'module kslab/build/%s\n' "$(basename "$dir")" >go.mod \
    && old_go_env "$toolchain" "$gobin" get -d "$module@$version" >&2 \
    && old_go_env "$toolchain" "$gobin" build -trimpath -ldflags="$ldflags" -o "$out" "$pkg") \
    || die "building $pkg ($module@$version) with $toolchain failed"
}
