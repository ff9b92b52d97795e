# shellcheck shell=bash
# The facts of one Kubernetes minor (tools/kube/minors/<minor>.env), read the same way by tools/kube/build.sh and
# tools/kind/node-image/build.sh.

KUBE_MINORS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../kube/minors" && pwd)"
DEFAULT_MINOR="$(cat "$KUBE_MINORS_DIR/DEFAULT")"

# load_kube_minor [version]: sets MINOR and MINOR_FILE and sources the minor's facts (the default minor's without a
# version). A malformed version, a minor without facts or another patch of a known minor: a message, exit 2.
load_kube_minor() {
  local wanted=${1:-} known
  MINOR=$DEFAULT_MINOR
  if [[ -n $wanted ]]; then
    [[ $wanted =~ ^v?([0-9]+\.[0-9]+)\.[0-9]+$ ]] || { echo "build.sh: --kubernetes needs a version such as v1.19.16" >&2; exit 2; }
    MINOR=${BASH_REMATCH[1]}
  fi
  MINOR_FILE="$KUBE_MINORS_DIR/$MINOR.env"
  if [[ ! -f $MINOR_FILE ]]; then
    known=("$KUBE_MINORS_DIR"/*.env); known=("${known[@]##*/}")
    echo "build.sh: no facts for Kubernetes $MINOR (tools/kube/minors has: ${known[*]%.env})" >&2; exit 2
  fi
  unset COREDNS_GO_TOOLCHAIN K8S_GO_TOOLCHAIN K8S_GOMOD_REPLACES K8S_UNPUBLISHED_STAGING  # facts come from the file only
  # shellcheck source=tools/kube/minors/1.26.env
  source "$MINOR_FILE"
  [[ -z $wanted || v${wanted#v} == "$K8S_VERSION" ]] \
    || { echo "build.sh: kslab builds Kubernetes $K8S_VERSION of the $MINOR line, not v${wanted#v}" >&2; exit 2; }
}
