# shellcheck shell=bash
# The node set of a Kubernetes minor whose module cannot be built as published (tools/kube/minors/<minor>.env
# K8S_BUILD=source): sourced by tools/kube/build.sh, which has read the minor's facts and set HERE, LOG_TAG and the
# helpers of tools/lib/gocache.sh.
#
# 1.19 commits no pkg/generated/openapi, which kube-apiserver imports: kslab builds in a writable copy of the
# release's module in the cache, makes that package there the way build/root/Makefile.generated_files does
# (openapi-gen from the release's k8s.io/kube-openapi, over every package that asks with a `+k8s:openapi-gen=` tag,
# without code-generator and sample-apiserver; the report of API rule violations must equal the release's
# api/api-rules/violation_exceptions.list), and builds with the release's own Go. Nothing of it enters the repository.

# shellcheck source=tools/lib/gotoolchain.sh
source "$HERE/../lib/gotoolchain.sh"
# shellcheck source=tools/lib/gowrap.sh
source "$HERE/../lib/gowrap.sh"

SOURCE_RECIPE=1
NODE_PROGRAMS=(kubelet kubeadm kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)

source_stamp() {
  printf 'recipe=%s\nkubernetes=%s\ntoolchain=%s\netcd=%s@%s\nfacts=%s\nbuilder=%s\n' "$SOURCE_RECIPE" "$K8S_VERSION" \
    "$K8S_GO_TOOLCHAIN" "$NODE_ETCD_MODULE" "$NODE_ETCD_VERSION" "$(sha256sum <"$MINOR_FILE" | cut -c1-16)" \
    "$(cat "${BASH_SOURCE[0]}" "$HERE/../lib/gotoolchain.sh" | sha256sum | cut -c1-16)"
}

source_is_warm() { # <out dir>
  [[ -f "$1/stamp" && "$(grep -v '^built=' "$1/stamp")" == "$(source_stamp)" ]] || return 1
  local p
  for p in etcd "${NODE_PROGRAMS[@]}"; do [[ -x "$1/bin/$p" ]] || return 1; done
}

# The release's module, writable, with its go.mod pointed at what the proxy serves: each ./staging replace at the
# staging modules' published tag, and the minor's K8S_GOMOD_REPLACES (old=new, same version).
prepare_source() { # <dir>
  local src=$1 dir staging pair
  dir=$( (cd "$SCRATCH" && go mod download -json "$K8S_MODULE@$K8S_VERSION") | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  [[ -d "$dir" ]] || die "could not download $K8S_MODULE@$K8S_VERSION from the Go module proxy"
  cp -r "$dir/." "$src/" && chmod -R u+w "$src"
  rm -rf "$src/vendor"   # only its modules.txt is in the module; with it, go would build in vendor mode
  staging="v0.${K8S_VERSION#v1.}"
  sed -i -E "s#^([[:space:]]*)(k8s\\.io/[a-z0-9-]+) => \\./staging/src/k8s\\.io/[a-z0-9-]+\$#\\1\\2 => \\2 $staging#" "$src/go.mod"
  ! grep -q '=> \./' "$src/go.mod" || die "a local replace is left in $K8S_MODULE@$K8S_VERSION's go.mod"
  for pair in $K8S_GOMOD_REPLACES; do
    sed -i -E "s#^([[:space:]]*)${pair%%=*} => ${pair%%=*} #\\1${pair%%=*} => ${pair#*=} #" "$src/go.mod"
    grep -q "${pair%%=*} => ${pair#*=} " "$src/go.mod" || die "no replace of ${pair%%=*} to point at ${pair#*=} in $K8S_MODULE's go.mod"
  done
}

# Import paths of the packages under <root> that ask for OpenAPI definitions (Makefile.generated_files: the .go files
# with a `// +k8s:` tag, and of those, the ones naming +k8s:openapi-gen=).
openapi_packages() { # <root> <import prefix>
  (cd "$1" && find -H . \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune -o -type f -name '*.go' -print0 \
    | xargs -0r grep --color=never -l '^// *+k8s:' | xargs -r grep --color=never -l '+k8s:openapi-gen=' \
    | xargs -rn1 dirname | sed 's|^\./\{0,1\}||' | LC_ALL=C sort -u | sed "s|^|$2/|; s|/\$||") || true
}

generate_openapi() { # <src dir> <go>
  local src=$1 gobin=$2 modcache inputs module staging out
  modcache=$(go env GOMODCACHE)
  staging="v0.${K8S_VERSION#v1.}"
  inputs=$(openapi_packages "$src" "$K8S_MODULE")
  while IFS= read -r module; do
    case $module in k8s.io/code-generator|k8s.io/sample-apiserver) continue ;; esac
    # a staging module nothing builds on may not be published (the minor's K8S_UNPUBLISHED_STAGING); any other that
    # cannot be had is an error, not a package less
    if [[ " ${K8S_UNPUBLISHED_STAGING:-} " == *" $module "* ]]; then log "openapi: $module@$staging is not published; skipped"; continue; fi
    (cd "$SCRATCH" && go mod download "$module@$staging") || die "could not download $module@$staging for openapi-gen"
    inputs+=$'\n'$(openapi_packages "$modcache/$module@$staging" "$module")
  done < <(sed -n -E "s#^[[:space:]]*(k8s\\.io/[a-z0-9-]+) => k8s\\.io/[a-z0-9-]+ $staging\$#\\1#p" "$src/go.mod")
  out="$SCRATCH/openapi"
  (cd "$src" && old_go_env "$K8S_GO_TOOLCHAIN" "$gobin" build -o "$SCRATCH/openapi-gen" k8s.io/kube-openapi/cmd/openapi-gen) \
    || die "building openapi-gen failed"
  (cd "$src" && PATH="$(dirname "$gobin"):$PATH" old_go_env "$K8S_GO_TOOLCHAIN" "$SCRATCH/openapi-gen" \
    -i "$(grep . <<<"$inputs" | paste -sd, -)" -p "$K8S_MODULE/pkg/generated/openapi" -O zz_generated.openapi \
    -h "$modcache/k8s.io/code-generator@$staging/hack/boilerplate.go.txt" -r "$out/report" --output-base "$out" >&2) \
    || die "openapi-gen failed"
  diff -q "$out/report" "$src/api/api-rules/violation_exceptions.list" >/dev/null \
    || die "openapi-gen's API rule report differs from the release's api/api-rules/violation_exceptions.list"
  mkdir -p "$src/pkg/generated/openapi"
  cp "$out/$K8S_MODULE/pkg/generated/openapi/zz_generated.openapi.go" "$src/pkg/generated/openapi/"
  local made; made=$(grep -c '^		"k8s.io' "$src/pkg/generated/openapi/zz_generated.openapi.go")
  log "openapi: $(grep -c . <<<"$inputs") packages, $made definitions"
  [[ "$made" == "$K8S_OPENAPI_DEFINITIONS" ]] || die "openapi-gen made $made definitions, not the release's $K8S_OPENAPI_DEFINITIONS"
}

build_node_from_source() {
  local key out tmp src gobin t0 ldflags p major minor date v
  key="node-k8s-${K8S_VERSION}_etcd-${NODE_ETCD_REPORTS}"
  out="$(cache_root)/kube/$key"
  if source_is_warm "$out"; then
    log "up to date: $out/bin"; emit_path "$out/bin"; return 0
  fi
  [[ "$CHECK" == "1" ]] && { log "not built or out of date: $out (run: $HERE/build.sh --node --kubernetes $K8S_VERSION)"; exit 3; }
  need_go "'go' not found on PATH; install Go >= 1.26 (https://go.dev/dl/)"
  mkdir -p "$(cache_root)/kube"
  build_lock "$(cache_root)/kube/.lock" "another build holds $(cache_root)/kube/.lock; waiting"
  source_is_warm "$out" && { log "up to date: $out/bin"; emit_path "$out/bin"; return 0; }
  SCRATCH=$(mktemp -d "$(cache_root)/kube/.src-$key.XXXXXX")
  trap 'rm -rf "$SCRATCH"' EXIT
  t0=$(date +%s)
  gobin=$(toolchain_go "$K8S_GO_TOOLCHAIN")
  log "building Kubernetes $K8S_VERSION's node set with $(old_go_env "$K8S_GO_TOOLCHAIN" "$gobin" version | cut -d' ' -f3) in $SCRATCH"
  src="$SCRATCH/kubernetes"; mkdir -p "$src"
  prepare_source "$src"
  (cd "$src" && old_go_env "$K8S_GO_TOOLCHAIN" "$gobin" mod download) || die "go mod download failed for $K8S_MODULE@$K8S_VERSION"
  generate_openapi "$src" "$gobin"
  echo "prepare+openapi=$(( $(date +%s) - t0 ))s" >"$SCRATCH/build-times"
  major=${K8S_VERSION#v}; major=${major%%.*}; minor=${K8S_VERSION#v*.}; minor=${minor%%.*}
  date=$(info_field "$K8S_MODULE" "$K8S_VERSION" Time)
  ldflags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do   # as hack/lib/version.sh sets them
    ldflags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitCommit=unknown"
    ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=${date:-1970-01-01T00:00:00Z}"
  done
  tmp="$SCRATCH/out"; mkdir -p "$tmp/bin"
  for p in "${NODE_PROGRAMS[@]}"; do
    local t1; t1=$(date +%s)
    (cd "$src" && old_go_env "$K8S_GO_TOOLCHAIN" "$gobin" build -trimpath -ldflags="$ldflags" -o "$tmp/bin/$p" "./cmd/$p") \
      || die "go build of $p failed"
    echo "$p=$(( $(date +%s) - t1 ))s" >>"$SCRATCH/build-times"; log "built $p in $(( $(date +%s) - t1 )) s"
  done
  toolchain_build "$K8S_GO_TOOLCHAIN" "$NODE_ETCD_MODULE" "$NODE_ETCD_VERSION" "$NODE_ETCD_MODULE" "$tmp/bin/etcd" "-s -w" \
    "$SCRATCH/etcd"
  v=$("$tmp/bin/kubelet" --version 2>&1 || true)
  [[ "$v" == "Kubernetes $K8S_VERSION" ]] || die "built kubelet reports '$v', expected 'Kubernetes $K8S_VERSION'"
  v=$("$tmp/bin/etcd" --version 2>&1 | head -n1 || true)
  [[ "$v" == "etcd Version: $NODE_ETCD_REPORTS" ]] || die "built etcd reports '$v', expected 'etcd Version: $NODE_ETCD_REPORTS'"
  cp "$SCRATCH/build-times" "$tmp/"
  rm -rf "$out.old"; [[ -e "$out" ]] && mv "$out" "$out.old"
  mv "$tmp" "$out"; rm -rf "$out.old"
  { source_stamp; printf 'built=%s total=%ss\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(( $(date +%s) - t0 ))"; } >"$out/stamp.tmp"
  mv -f "$out/stamp.tmp" "$out/stamp"
  log "done in $(( $(date +%s) - t0 )) s: $out/bin"
  emit_path "$out/bin"
}
