#!/usr/bin/env bash
# Build kube-apiserver, kubectl and etcd from their published Go modules into a
# version-keyed cache outside the repository, for API-server-only test clusters.
#
#   tools/kube/build.sh            build if needed; last stdout line: export PATH="<bin>:$PATH"
#   tools/kube/build.sh --regen    regenerate the wrapper go.mod/go.sum files from the
#                                  pinned upstream versions, then build if needed
#   tools/kube/build.sh --check    never build: print the export line if the binaries are
#                                  built and current, else exit 3
#   eval "$(tools/kube/build.sh | tail -n1)"
#
# Environment:
#   KSLAB_CACHE            cache root (default: $HOME/.cache/kslab); binaries go to
#                          $KSLAB_CACHE/kube/<key>/bin
#   KSLAB_KUBE_NO_KUBECTL  set to 1 to skip building kubectl
#
# Progress goes to stderr; stdout carries only the final export line.
# See tools/kube/README.md.
set -euo pipefail

# ---- pinned versions -------------------------------------------------------------------------------
# KubeSphere 3.4.1 supports Kubernetes 1.21-1.26: take the newest 1.26 patch release.
K8S_VERSION="v1.26.15"
# etcd 3.5 is the line Kubernetes 1.26 is tested with; take the newest 3.5 patch release.
ETCD_VERSION="v3.5.35"
# Bump when the way binaries are built changes (flags, ldflags, layout): forces a rebuild.
RECIPE="2"

K8S_MODULE="k8s.io/kubernetes"
ETCD_MODULE="go.etcd.io/etcd/server/v3"

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
APISERVER_WRAPPER="$HERE/kube-apiserver"
ETCD_WRAPPER="$HERE/etcd"

CACHE_ROOT="${KSLAB_CACHE:-$HOME/.cache/kslab}/kube"
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}"
OUT="$CACHE_ROOT/$KEY"
STAMP="$OUT/stamp"

WITH_KUBECTL=1
[[ "${KSLAB_KUBE_NO_KUBECTL:-0}" == "1" ]] && WITH_KUBECTL=0

REGEN=0
CHECK=0
for arg in "$@"; do
  case "$arg" in
    --regen) REGEN=1 ;;
    --check) CHECK=1 ;;
    -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) echo "build.sh: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

log() { printf '[kube-build] %s\n' "$*" >&2; }
die() { printf '[kube-build] ERROR: %s\n' "$*" >&2; exit 1; }

# Uniform error for anything set -e catches that we did not anticipate.
trap 'rc=$?; [[ $rc -ne 0 ]] && printf "[kube-build] ERROR: failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

programs() {
  echo etcd kube-apiserver
  [[ "$WITH_KUBECTL" == "1" ]] && echo kubectl
  return 0
}

# The stamp records everything that determines the binaries. A build is reused only when the
# stamp matches exactly, so editing a wrapper go.mod/go.sum or the recipe triggers a rebuild.
expected_stamp() {
  local sums
  sums="$(cd "$HERE" && sha256sum kube-apiserver/go.mod kube-apiserver/go.sum etcd/go.mod etcd/go.sum 2>/dev/null | awk '{print substr($1,1,16), $2}')"
  printf 'recipe=%s\nkubernetes=%s\netcd=%s\nprograms=%s\n%s\n' \
    "$RECIPE" "$K8S_VERSION" "$ETCD_VERSION" "$(programs | tr '\n' ' ' | sed 's/ $//')" "$sums"
}

is_warm() {
  [[ -f "$STAMP" ]] || return 1
  # the stamp carries one extra trailing line (go version, build time) that is informational only
  [[ "$(grep -v '^built=' "$STAMP")" == "$(expected_stamp)" ]] || return 1
  local p
  for p in $(programs); do [[ -x "$OUT/bin/$p" ]] || return 1; done
  return 0
}

emit_path() { printf 'export PATH="%s:$PATH"\n' "$OUT/bin"; }

wrapper_version() { # <go.mod> <module> -> version required there (empty if none)
  [[ -f "$1" ]] || return 0
  awk -v m="$2" '$1 == "require" && $2 == m { print $3 } $1 == m && NF >= 2 && $2 ~ /^v/ { print $2 }' "$1" | head -n1
}

wrappers_current() {
  [[ -f "$APISERVER_WRAPPER/go.sum" && -f "$ETCD_WRAPPER/go.sum" ]] || return 1
  [[ "$(wrapper_version "$APISERVER_WRAPPER/go.mod" "$K8S_MODULE")" == "$K8S_VERSION" ]] || return 1
  [[ "$(wrapper_version "$ETCD_WRAPPER/go.mod" "$ETCD_MODULE")" == "$ETCD_VERSION" ]] || return 1
}

# ---- warm path: no go invocation, no lock --------------------------------------------------------
if [[ "$REGEN" == "0" ]] && wrappers_current && is_warm; then
  log "up to date: $OUT/bin"
  emit_path
  exit 0
fi
if [[ "$CHECK" == "1" ]]; then
  printf '[kube-build] not built or out of date: %s\n[kube-build] run: %s\n' "$OUT" "$HERE/build.sh" >&2
  exit 3
fi

command -v go >/dev/null 2>&1 || die "'go' not found on PATH; install Go >= 1.26 (https://go.dev/dl/)"
export GOWORK=off GOFLAGS="${GOFLAGS:-}"
export CGO_ENABLED=0

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -n 9 || { log "another build holds $CACHE_ROOT/.lock; waiting"; flock 9; }
fi

# ---- wrapper generation -------------------------------------------------------------------------
SCRATCH="$(mktemp -d "$CACHE_ROOT/.scratch.XXXXXX")"
cleanup() { rm -rf "$SCRATCH"; [[ -n "${TMP_OUT:-}" ]] && rm -rf "$TMP_OUT"; return 0; }
trap cleanup EXIT

# Download module@version and print the path of its go.mod file in the module cache.
upstream_gomod() {
  local json gomod
  json="$(cd "$SCRATCH" && go mod download -json "$1@$2")" || die "could not download $1@$2 from the Go module proxy ($(go env GOPROXY))"
  gomod="$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' | head -n1)"
  [[ -n "$gomod" && -f "$gomod" ]] || die "no go.mod for $1@$2 in the module cache"
  printf '%s\n' "$gomod"
}

# Print upstream's "go" and "godebug" directives (single-line and block forms).
go_and_godebug() {
  awk '
    /^go[[:space:]]/ { print; next }
    /^godebug[[:space:]]*\(/ { inblk = 1; print; next }
    inblk { print; if ($0 ~ /^\)/) inblk = 0; next }
    /^godebug[[:space:]]/ { print }
  ' "$1"
}

# Print upstream's replace directives as "old => new" pairs, one per line (block + single-line forms).
replaces() {
  awk '
    /^replace[[:space:]]*\(/ { inblk = 1; next }
    inblk && /^\)/ { inblk = 0; next }
    inblk { sub(/\/\/.*/, ""); if (NF) print; next }
    /^replace[[:space:]]/ { sub(/\/\/.*/, ""); sub(/^replace[[:space:]]+/, ""); print }
  ' "$1"
}

# Version of module $2 in go.mod $1's require directives.
required_version() {
  awk -v m="$2" '
    /^require[[:space:]]*\(/ { inblk = 1; next }
    inblk && /^\)/ { inblk = 0; next }
    inblk && $1 == m { print $2; exit }
    /^require[[:space:]]/ && $2 == m { print $3; exit }
  ' "$1"
}

# Write $1/go.mod, then let `go get` record every module needed to build packages $3.. in go.mod/go.sum.
write_wrapper() {
  local dir="$1" header="$2" body="$3"; shift 3
  local tmpdir="$SCRATCH/wrapper-$(basename "$dir")"
  mkdir -p "$tmpdir"
  printf '%s\n%s' "$header" "$body" >"$tmpdir/go.mod"
  log "resolving dependencies for $(basename "$dir") (go get $*)"
  (cd "$tmpdir" && GOFLAGS="$GOFLAGS -mod=mod" go get "$@" >&2) || die "go get failed in the $(basename "$dir") wrapper"
  mkdir -p "$dir"
  cp "$tmpdir/go.mod" "$dir/go.mod.new" && cp "$tmpdir/go.sum" "$dir/go.sum.new"
  mv -f "$dir/go.mod.new" "$dir/go.mod" && mv -f "$dir/go.sum.new" "$dir/go.sum"
  log "wrote $dir/go.mod and go.sum"
}

gen_apiserver_wrapper() {
  local gomod staging body line old new
  gomod="$(upstream_gomod "$K8S_MODULE" "$K8S_VERSION")"
  staging="v0.${K8S_VERSION#v1.}"            # v1.26.15 -> v0.26.15 (the staging modules' tags)
  body="$(go_and_godebug "$gomod")"$'\n\n'"require $K8S_MODULE $K8S_VERSION"$'\n\n'"replace ("$'\n'
  while IFS= read -r line; do
    old="$(awk '{print $1}' <<<"$line")"
    new="${line#*=> }"
    case "$new" in
      ./staging/src/*) body+=$'\t'"$old => $old $staging"$'\n' ;;   # staging module: use its published tag
      ./*|../*) die "unexpected local replace in $K8S_MODULE@$K8S_VERSION go.mod: $line" ;;
      *) body+=$'\t'"$line"$'\n' ;;                                  # upstream pin: repeat as is
    esac
  done < <(replaces "$gomod")
  body+=")"$'\n'
  local n; n="$(grep -c "=> .* $staging\$" <<<"$body" || true)"
  log "kube-apiserver wrapper: $n staging replaces at $staging"
  local pkgs=("$K8S_MODULE/cmd/kube-apiserver@$K8S_VERSION" "$K8S_MODULE/cmd/kubectl@$K8S_VERSION")
  write_wrapper "$APISERVER_WRAPPER" \
    "// Generated by tools/kube/build.sh --regen from $K8S_MODULE@$K8S_VERSION's go.mod; do not edit by hand.
module kslab/tools/kube/kube-apiserver
" "$body" "${pkgs[@]}"
}

gen_etcd_wrapper() {
  local gomod body line old new ver
  gomod="$(upstream_gomod "$ETCD_MODULE" "$ETCD_VERSION")"
  body="$(go_and_godebug "$gomod")"$'\n\n'"require $ETCD_MODULE $ETCD_VERSION"$'\n\n'"replace ("$'\n'
  while IFS= read -r line; do
    old="$(awk '{print $1}' <<<"$line")"
    new="${line#*=> }"
    case "$new" in
      ./*|../*)
        # upstream points its sibling modules at the source tree; use their published versions
        ver="$(required_version "$gomod" "$old")"
        [[ -n "$ver" ]] && body+=$'\t'"$old => $old $ver"$'\n'   # guards for forbidden modules are dropped
        ;;
      *) body+=$'\t'"$line"$'\n' ;;
    esac
  done < <(replaces "$gomod")
  body+=")"$'\n'
  write_wrapper "$ETCD_WRAPPER" \
    "// Generated by tools/kube/build.sh --regen from $ETCD_MODULE@$ETCD_VERSION's go.mod; do not edit by hand.
module kslab/tools/kube/etcd
" "$body" "$ETCD_MODULE@$ETCD_VERSION"
}

if [[ "$REGEN" == "1" ]] || ! wrappers_current; then
  log "generating wrapper modules (kubernetes $K8S_VERSION, etcd $ETCD_VERSION)"
  gen_etcd_wrapper
  gen_apiserver_wrapper
fi

# Re-check under the lock: another build may have finished meanwhile.
if is_warm; then
  log "up to date: $OUT/bin"
  emit_path
  exit 0
fi

# ---- build -----------------------------------------------------------------------------------------
info_field() { # <module> <version> <field>: a string field of the proxy's .info file (Time; Hash when
               # the proxy reports the origin, which it does not for every module)
  local info
  info="$( (cd "$SCRATCH" && go mod download -json "$1@$2") | sed -n 's/^[[:space:]]*"Info": "\(.*\)",\{0,1\}$/\1/p' | head -n1)"
  [[ -n "$info" && -f "$info" ]] || return 0
  sed -n "s/.*\"$3\":\"\([^\"]*\)\".*/\1/p" "$info" | head -n1
}

K8S_COMMIT="$(info_field "$K8S_MODULE" "$K8S_VERSION" Hash)"
K8S_DATE="$(info_field "$K8S_MODULE" "$K8S_VERSION" Time)"
ETCD_COMMIT="$(info_field "$ETCD_MODULE" "$ETCD_VERSION" Hash)"
K8S_MAJOR="$(sed -E 's/^v([0-9]+)\..*/\1/' <<<"$K8S_VERSION")"
K8S_MINOR="$(sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/' <<<"$K8S_VERSION")"

k8s_ldflags() {
  local p out="-s -w"
  # hack/lib/version.sh sets the same variables in both packages
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    out+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$K8S_MAJOR -X $p.gitMinor=$K8S_MINOR"
    out+=" -X $p.gitCommit=${K8S_COMMIT:-unknown} -X $p.gitTreeState=clean -X $p.buildDate=${K8S_DATE:-1970-01-01T00:00:00Z}"
  done
  printf '%s' "$out"
}
ETCD_LDFLAGS="-s -w"
[[ -n "$ETCD_COMMIT" ]] && ETCD_LDFLAGS+=" -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_COMMIT:0:8}"

mkdir -p "$CACHE_ROOT"
TMP_OUT="$(mktemp -d "$CACHE_ROOT/.tmp-$KEY.XXXXXX")"
mkdir -p "$TMP_OUT/bin"

build_one() { # <name> <wrapper dir> <package> <ldflags>
  local name="$1" dir="$2" pkg="$3" ldflags="$4" t0 t1
  log "building $name ($pkg) ..."
  t0=$(date +%s)
  (cd "$dir" && go build -mod=readonly -trimpath -pgo=off -ldflags="$ldflags" -o "$TMP_OUT/bin/$name" "$pkg") \
    || die "go build of $name failed (package $pkg, wrapper $dir)"
  t1=$(date +%s)
  log "built $name in $((t1 - t0)) s"
  echo "$name=$((t1 - t0))s" >>"$TMP_OUT/build-times"
}

T_START=$(date +%s)
build_one etcd "$ETCD_WRAPPER" "$ETCD_MODULE" "$ETCD_LDFLAGS"
build_one kube-apiserver "$APISERVER_WRAPPER" "$K8S_MODULE/cmd/kube-apiserver" "$(k8s_ldflags)"
if [[ "$WITH_KUBECTL" == "1" ]]; then
  build_one kubectl "$APISERVER_WRAPPER" "$K8S_MODULE/cmd/kubectl" "$(k8s_ldflags)"
fi

# sanity: the version the server will report
v="$("$TMP_OUT/bin/kube-apiserver" --version 2>&1 || true)"
[[ "$v" == "Kubernetes $K8S_VERSION" ]] || die "built kube-apiserver reports '$v', expected 'Kubernetes $K8S_VERSION'"
v="$("$TMP_OUT/bin/etcd" --version 2>&1 | head -n1 || true)"
[[ "$v" == "etcd Version: ${ETCD_VERSION#v}" ]] || die "built etcd reports '$v', expected 'etcd Version: ${ETCD_VERSION#v}'"

# ---- publish atomically: rename the finished tree into place, then write the stamp last ------------
if [[ -e "$OUT" ]]; then
  OLD="$(mktemp -d "$CACHE_ROOT/.old-$KEY.XXXXXX")"
  mv "$OUT" "$OLD/"
  rm -rf "$OLD"
fi
mv "$TMP_OUT" "$OUT"
TMP_OUT=""
{ expected_stamp; printf 'built=%s %s total=%ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(go env GOVERSION)" "$(( $(date +%s) - T_START ))"; } >"$STAMP.tmp"
mv -f "$STAMP.tmp" "$STAMP"
log "done in $(( $(date +%s) - T_START )) s: $OUT/bin"
emit_path
