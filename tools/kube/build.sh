#!/usr/bin/env bash
# Build Kubernetes programs and etcd from their published Go modules into a version-keyed cache
# outside the repository.
#
#   tools/kube/build.sh            the API-server set (kube-apiserver, etcd, kubectl) for the live tier
#   tools/kube/build.sh --node     the node set for the kind node image (tools/kind/node-image): kubelet,
#                                  kubeadm, kubectl, the control-plane programs, and etcd at the version
#                                  kubeadm deploys for this Kubernetes minor
#   tools/kube/build.sh --regen    regenerate the wrapper go.mod/go.sum files from the pinned upstream
#                                  versions, then build if needed
#   tools/kube/build.sh --check    never build: print the export line if the binaries are built and
#                                  current, else exit 3
#   tools/kube/build.sh --node --kubernetes v1.19.16
#                                  the node set of another Kubernetes minor (tools/kube/minors/<minor>.env holds
#                                  every fact that differs; default: the 1.26 of the live tier)
#   eval "$(tools/kube/build.sh | tail -n1)"
#
# Environment:
#   KSLAB_CACHE            cache root (default: $HOME/.cache/kslab); binaries go to
#                          $KSLAB_CACHE/kube/<key>/bin
#   KSLAB_KUBE_NO_KUBECTL  set to 1 to skip building kubectl (API-server set only)
#
# Progress goes to stderr; stdout carries only the final export line.
# See tools/kube/README.md.
set -euo pipefail

# ---- pinned versions -------------------------------------------------------------------------------
# KubeSphere 3.4.1 supports Kubernetes 1.21-1.26; the live tier and the default kind node image run the minor
# tools/kube/minors/DEFAULT names (1.26). One version for both keeps the two tiers on the same Kubernetes.
# etcd 3.5 is the line Kubernetes 1.26 is tested with; take the newest 3.5 patch release (the API-server set's).
ETCD_VERSION="v3.5.35"
# Bump when the way binaries are built changes (flags, ldflags, layout): forces a rebuild.
RECIPE="3"

K8S_MODULE="k8s.io/kubernetes"
ETCD_MODULE="go.etcd.io/etcd/server/v3"
K8S_PROGRAMS_ALL=(kube-apiserver kubectl kubelet kubeadm kube-controller-manager kube-scheduler kube-proxy)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LOG_TAG=kube-build
# shellcheck source=tools/lib/gocache.sh
source "$HERE/../lib/gocache.sh"
K8S_WRAPPER="$HERE/kubernetes"

WITH_KUBECTL=1
[[ "${KSLAB_KUBE_NO_KUBECTL:-0}" == "1" ]] && WITH_KUBECTL=0

REGEN=0
CHECK=0
SET=apiserver
WANTED=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --regen) REGEN=1 ;;
    --check) CHECK=1 ;;
    --node) SET=node ;;
    --kubernetes)
      [[ $# -ge 2 && -n $2 ]] || { echo "build.sh: --kubernetes needs a version such as v1.19.16" >&2; exit 2; }
      WANTED="$2"; shift ;;
    -h|--help) sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) echo "build.sh: unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
# shellcheck source=tools/lib/kubeminor.sh
source "$HERE/../lib/kubeminor.sh"
load_kube_minor "$WANTED"
[[ "$SET" == "node" || "$MINOR" == "$DEFAULT_MINOR" ]] || { echo "build.sh: --kubernetes is for the node set (--node)" >&2; exit 2; }

if [[ "$SET" == "node" && "$K8S_BUILD" == "source" ]]; then
  # shellcheck source=tools/kube/from-source.sh
  source "$HERE/from-source.sh"
  build_node_from_source
  exit 0
fi

if [[ "$SET" == "node" ]]; then
  SET_ETCD_VERSION="$NODE_ETCD_VERSION"
  ETCD_WRAPPER="$HERE/etcd-node"
  KEY="node-k8s-${K8S_VERSION}_etcd-${NODE_ETCD_VERSION}"
  K8S_PROGRAMS=(kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
else
  SET_ETCD_VERSION="$ETCD_VERSION"
  ETCD_WRAPPER="$HERE/etcd"
  KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}"
  K8S_PROGRAMS=(kube-apiserver)
  [[ "$WITH_KUBECTL" == "1" ]] && K8S_PROGRAMS+=(kubectl)
fi

CACHE_ROOT="$(cache_root)/kube"
OUT="$CACHE_ROOT/$KEY"
STAMP="$OUT/stamp"

# Uniform error for anything set -e catches that we did not anticipate.
# shellcheck disable=SC2154  # rc is assigned by the trap itself
trap 'rc=$?; [[ $rc -ne 0 ]] && printf "[kube-build] ERROR: failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

programs() { echo etcd "${K8S_PROGRAMS[@]}"; }

# The stamp records everything that determines the binaries. A build is reused only when the
# stamp matches exactly, so editing a wrapper go.mod/go.sum or the recipe triggers a rebuild.
expected_stamp() {
  local sums
  sums="$(cd "$HERE" && sha256sum kubernetes/go.mod kubernetes/go.sum "$(basename "$ETCD_WRAPPER")/go.mod" \
            "$(basename "$ETCD_WRAPPER")/go.sum" 2>/dev/null | awk '{print substr($1,1,16), $2}')"
  printf 'recipe=%s\nkubernetes=%s\netcd=%s\nprograms=%s\n%s\n' \
    "$RECIPE" "$K8S_VERSION" "$SET_ETCD_VERSION" "$(programs)" "$sums"
}

is_warm() {
  [[ -f "$STAMP" ]] || return 1
  # the stamp carries one extra trailing line (go version, build time) that is informational only
  [[ "$(grep -v '^built=' "$STAMP")" == "$(expected_stamp)" ]] || return 1
  local p
  for p in $(programs); do [[ -x "$OUT/bin/$p" ]] || return 1; done
  return 0
}


wrapper_version() { # <go.mod> <module> -> version required there (empty if none)
  [[ -f "$1" ]] || return 0
  awk -v m="$2" '$1 == "require" && $2 == m { print $3 } $1 == m && NF >= 2 && $2 ~ /^v/ { print $2 }' "$1" | head -n1
}

wrappers_current() {
  [[ -f "$K8S_WRAPPER/go.sum" && -f "$ETCD_WRAPPER/go.sum" ]] || return 1
  [[ "$(wrapper_version "$K8S_WRAPPER/go.mod" "$K8S_MODULE")" == "$K8S_VERSION" ]] || return 1
  [[ "$(wrapper_version "$ETCD_WRAPPER/go.mod" "$ETCD_MODULE")" == "$SET_ETCD_VERSION" ]] || return 1
  # the Kubernetes wrapper must have been resolved for every program either set builds
  grep -q "^// programs: ${K8S_PROGRAMS_ALL[*]}\$" "$K8S_WRAPPER/go.mod" || return 1
}

# ---- warm path: no go invocation, no lock --------------------------------------------------------
if [[ "$REGEN" == "0" ]] && wrappers_current && is_warm; then
  log "up to date: $OUT/bin"
  emit_path "$OUT/bin"
  exit 0
fi
if [[ "$CHECK" == "1" ]]; then
  printf '[kube-build] not built or out of date: %s\n[kube-build] run: %s\n' "$OUT" "$HERE/build.sh" >&2
  exit 3
fi

need_go "'go' not found on PATH; install Go >= 1.26 (https://go.dev/dl/)"
export GOWORK=off GOFLAGS="${GOFLAGS:-}"
export CGO_ENABLED=0

mkdir -p "$CACHE_ROOT"
build_lock "$CACHE_ROOT/.lock" "another build holds $CACHE_ROOT/.lock; waiting"

# ---- wrapper generation -------------------------------------------------------------------------
SCRATCH="$(mktemp -d "$CACHE_ROOT/.scratch.XXXXXX")"
cleanup() { rm -rf "$SCRATCH"; [[ -n "${TMP_OUT:-}" ]] && rm -rf "$TMP_OUT"; return 0; }
trap cleanup EXIT

# shellcheck source=tools/lib/gowrap.sh
source "$HERE/../lib/gowrap.sh"

gen_k8s_wrapper() {
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
  log "kubernetes wrapper: $n staging replaces at $staging"
  local pkgs=() p
  for p in "${K8S_PROGRAMS_ALL[@]}"; do pkgs+=("$K8S_MODULE/cmd/$p@$K8S_VERSION"); done
  write_wrapper "$K8S_WRAPPER" \
    "// Generated by tools/kube/build.sh --regen from $K8S_MODULE@$K8S_VERSION's go.mod; do not edit by hand.
// programs: ${K8S_PROGRAMS_ALL[*]}
module kslab/tools/kube/kubernetes
" "$body" "${pkgs[@]}"
}

if [[ "$REGEN" == "1" ]] || ! wrappers_current; then
  log "generating wrapper modules (kubernetes $K8S_VERSION, etcd $SET_ETCD_VERSION)"
  gen_sibling_wrapper "$ETCD_WRAPPER" "$ETCD_MODULE" "$SET_ETCD_VERSION" "kslab/tools/kube/$(basename "$ETCD_WRAPPER")" \
    "tools/kube/build.sh --regen"
  gen_k8s_wrapper
fi

# Re-check under the lock: another build may have finished meanwhile.
if is_warm; then
  log "up to date: $OUT/bin"
  emit_path "$OUT/bin"
  exit 0
fi

# ---- build -----------------------------------------------------------------------------------------
K8S_COMMIT="$(info_field "$K8S_MODULE" "$K8S_VERSION" Hash)"
K8S_DATE="$(info_field "$K8S_MODULE" "$K8S_VERSION" Time)"
ETCD_COMMIT="$(info_field "$ETCD_MODULE" "$SET_ETCD_VERSION" Hash)"
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

T_START=$(date +%s)
build_one etcd "$ETCD_WRAPPER" "$ETCD_MODULE" "$ETCD_LDFLAGS"
for p in "${K8S_PROGRAMS[@]}"; do
  build_one "$p" "$K8S_WRAPPER" "$K8S_MODULE/cmd/$p" "$(k8s_ldflags)"
done

# sanity: the versions the programs will report
v="$("$TMP_OUT/bin/${K8S_PROGRAMS[0]}" --version 2>&1 || true)"
[[ "$v" == "Kubernetes $K8S_VERSION" ]] || die "built ${K8S_PROGRAMS[0]} reports '$v', expected 'Kubernetes $K8S_VERSION'"
v="$("$TMP_OUT/bin/etcd" --version 2>&1 | head -n1 || true)"
[[ "$v" == "etcd Version: ${SET_ETCD_VERSION#v}" ]] || die "built etcd reports '$v', expected 'etcd Version: ${SET_ETCD_VERSION#v}'"

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
emit_path "$OUT/bin"
