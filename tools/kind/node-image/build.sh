#!/usr/bin/env bash
# Build kslab's kind node image with no container registry: a Debian base from Debian's packages, the
# Kubernetes programs and every image kubeadm and the node's manifests run built here from Go modules, and
# those images preloaded into the node's containerd (k8s.io namespace), so nothing is ever pulled.
#
#   eval "$(tools/kind/node-image/build.sh)"   # last stdout line: export KSLAB_NODE_IMAGE=<image>
#   tools/kind/node-image/build.sh --kubernetes v1.19.16   # another minor's node (tools/kube/minors/<minor>.env)
#
# Needs a Docker engine (DOCKER_HOST from tools/docker/docker.sh) and, for a cold build, root (debootstrap)
# and Go. A warm run (the image present with this recipe's digest in its label) builds nothing.
# Env: KSLAB_CACHE (default ~/.cache/kslab); KSLAB_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS=$(cd "$HERE/../.." && pwd)
CACHE_ROOT=${KSLAB_CACHE:-$HOME/.cache/kslab}
WORK_ROOT=$CACHE_ROOT/kind/node-image
MIRROR=${KSLAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}

# ---- pinned versions -------------------------------------------------------------------------------------
# What kubeadm deploys differs by Kubernetes minor (image repository, pause, etcd, CoreDNS, the cgroup driver):
# tools/kube/minors/<minor>.env holds it, for this script and tools/kube/build.sh alike.
KUBE_ARGS=()
if [[ ${1:-} == --kubernetes && $# -eq 2 ]]; then
  KUBE_ARGS=(--kubernetes "$2")
elif [[ $# -gt 0 ]]; then
  echo "build.sh: unknown argument: $1 (usage: build.sh [--kubernetes v1.19.16])" >&2; exit 2
fi
# shellcheck source=tools/lib/kubeminor.sh
source "$TOOLS/lib/kubeminor.sh"
load_kube_minor "${KUBE_ARGS[1]:-}"
# The export the caller evals: KSLAB_NODE_IMAGE for the default minor, KSLAB_NODE_IMAGE_1_19 and so on for another.
IMAGE_VAR=KSLAB_NODE_IMAGE
[[ $MINOR == "$DEFAULT_MINOR" ]] || IMAGE_VAR=KSLAB_NODE_IMAGE_${MINOR/./_}
LOCAL_PATH_VERSION=v0.0.30        # rancher/local-path-provisioner: the node's default StorageClass
DEBIAN_SUITE=bookworm             # systemd 252 boots on cgroup v1 hosts (systemd >= 258 has no cgroup v1)
NODE_PACKAGES=systemd,systemd-sysv,dbus,iproute2,procps,iptables,conntrack,ebtables,ethtool,socat,kmod,mount,util-linux,containerd,runc,containernetworking-plugins,ca-certificates,busybox-static
IMAGE_REPO=kslab.local/kind-node
# Bump when the recipe changes in a way the digest below does not see.
RECIPE=1

log() { printf '[node-image] %s\n' "$*" >&2; }
die() { printf '[node-image] ERROR: %s\n' "$*" >&2; exit 1; }
# shellcheck source=tools/lib/gotoolchain.sh
source "$TOOLS/lib/gotoolchain.sh"
now() { date +%s; }
timed() { # <label> <command...>: run, and record the seconds it took
  local label=$1 t0; shift; t0=$(now)
  "$@"
  printf '%s=%ss\n' "$label" "$(( $(now) - t0 ))" >>"$TIMES"
  log "$label took $(( $(now) - t0 )) s"
}

command -v docker >/dev/null || die "docker is not installed (tools/docker/docker.sh start installs and starts one)"
docker info >/dev/null 2>&1 || die "no Docker engine answers (DOCKER_HOST=${DOCKER_HOST:-unset}). Fix: eval \"\$(tools/docker/docker.sh start)\""

# The Kubernetes programs (kubelet, kubeadm, control plane, etcd) for this image.
NODE_BIN=$("$TOOLS/kube/build.sh" --node "${KUBE_ARGS[@]}" | sed -n 's/^export PATH="\(.*\):\$PATH"$/\1/p')
[[ -x $NODE_BIN/kubelet ]] || die "tools/kube/build.sh --node did not produce kubelet"
K8S_VERSION=$("$NODE_BIN/kubelet" --version | awk '{print $2}')
IMAGE=$IMAGE_REPO:$K8S_VERSION

digest=$( { cat "${BASH_SOURCE[0]}"; find "$HERE/files" "$HERE/cmd" "$HERE/go.mod" "$TOOLS/docker/runtime-wrapper" "$TOOLS/lib/gotoolchain.sh" -type f \
            -print0 | sort -z | xargs -0 cat; sha256sum "$NODE_BIN"/* | awk '{print $1}'; \
            cat "$MINOR_FILE"; echo "$LOCAL_PATH_VERSION $DEBIAN_SUITE $NODE_PACKAGES $RECIPE"; } \
          | sha256sum | cut -c1-16)

current=$(docker image inspect "$IMAGE" --format '{{ index .Config.Labels "kslab.recipe" }}' 2>/dev/null || true)
if [[ $current == "$digest" ]]; then
  log "$IMAGE is current (recipe $digest)"
  printf 'export %s=%s\n' "$IMAGE_VAR" "$IMAGE"
  exit 0
fi

mkdir -p "$WORK_ROOT"
exec 9>"$WORK_ROOT/.lock"
flock 9
WORK=$(mktemp -d "$WORK_ROOT/build.XXXXXX")
STAGE_CONTAINER=""
cleanup() {
  [[ -n $STAGE_CONTAINER ]] && docker rm -f "$STAGE_CONTAINER" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
TIMES=$WORK_ROOT/build-times.$digest
: >"$TIMES"
T_START=$(now)
log "building $IMAGE (recipe $digest) in $WORK"

# ---- programs of our own and from Go modules ----------------------------------------------------------
mkdir -p "$WORK/bin"
build_programs() {
  (cd "$HERE" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$WORK/bin/pause" ./cmd/pause \
    && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$WORK/bin/cni-config" ./cmd/cni-config)
  (cd "$TOOLS/docker/runtime-wrapper" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$WORK/bin/kslab-runc" .)
  # Neither module has replace directives, so `go install module@version` builds them as published; an older
  # CoreDNS builds with the Go its minor names (COREDNS_GO_TOOLCHAIN).
  if [[ -n ${COREDNS_GO_TOOLCHAIN:-} ]]; then
    toolchain_build "$COREDNS_GO_TOOLCHAIN" github.com/coredns/coredns "$COREDNS_VERSION" github.com/coredns/coredns \
      "$WORK/bin/coredns" "$COREDNS_LDFLAGS" "$WORK/coredns-module"
  else
    GOBIN=$WORK/bin CGO_ENABLED=0 GOWORK=off go install -trimpath -ldflags="$COREDNS_LDFLAGS" \
      "github.com/coredns/coredns@$COREDNS_VERSION"
  fi
  GOBIN=$WORK/bin CGO_ENABLED=0 GOWORK=off go install -trimpath -ldflags='-s -w' \
    "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION"
}
timed programs build_programs >&2

# ---- the Debian base ------------------------------------------------------------------------------------
ROOTFS_IMAGE=kslab.local/node-rootfs:$(printf '%s %s' "$DEBIAN_SUITE" "$NODE_PACKAGES" | sha256sum | cut -c1-12)
build_rootfs() {
  [[ $(id -u) == 0 ]] || die "building the Debian base needs root (debootstrap); run this once as root"
  command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >&2
  debootstrap --variant=minbase --include="$NODE_PACKAGES" "$DEBIAN_SUITE" "$WORK/rootfs" "$MIRROR" >&2 \
    || die "debootstrap failed (mirror $MIRROR)"
  rm -rf "$WORK/rootfs/var/lib/apt/lists/"* "$WORK/rootfs/var/cache/apt/"*.bin
  tar -C "$WORK/rootfs" -c . | docker import - "$ROOTFS_IMAGE" >/dev/null
}
if docker image inspect "$ROOTFS_IMAGE" >/dev/null 2>&1; then
  log "Debian base $ROOTFS_IMAGE is cached"
else
  timed rootfs build_rootfs
fi

# ---- component images, named as kubeadm and the node's manifests ask for them ---------------------------
image() { # <name> <dockerfile text>: build from $CTX
  printf '%s\n' "$2" >"$CTX/Dockerfile"
  docker build -q -t "$1" "$CTX" >/dev/null || die "docker build of $1 failed"
  IMAGES+=("$1")
}
IMAGES=()
build_images() {
  local name
  for name in kube-apiserver kube-controller-manager kube-scheduler; do
    CTX=$WORK/ctx-$name; mkdir -p "$CTX"; cp "$NODE_BIN/$name" "$CTX/"
    image "$IMAGE_REPOSITORY/$name:$K8S_VERSION" "FROM scratch
COPY $name /usr/local/bin/$name
ENV PATH=/usr/local/bin
ENTRYPOINT [\"/usr/local/bin/$name\"]"
  done
  CTX=$WORK/ctx-etcd; mkdir -p "$CTX"; cp "$NODE_BIN/etcd" "$CTX/"
  image "$IMAGE_REPOSITORY/etcd:$ETCD_TAG" "FROM scratch
COPY etcd /usr/local/bin/etcd
ENV PATH=/usr/local/bin
ENTRYPOINT [\"/usr/local/bin/etcd\"]"
  # kube-proxy runs iptables: its image carries the node base's iptables/conntrack and their libraries, and the
  # libraries of the iptables extensions they load (kube-proxy's `-m statistic`, for a Service with two or more
  # endpoints, loads libxt_statistic.so, which needs libm: without it every such sync fails).
  CTX=$WORK/ctx-kube-proxy; mkdir -p "$CTX/usr/local/bin"; cp "$NODE_BIN/kube-proxy" "$CTX/usr/local/bin/"
  docker run --rm --entrypoint /bin/bash "$ROOTFS_IMAGE" -c '
    set -e
    files=(/usr/sbin/xtables-nft-multi /usr/sbin/xtables-legacy-multi /usr/sbin/conntrack)
    for f in "${files[@]}" /usr/lib/x86_64-linux-gnu/xtables/*.so; do
      ldd "$f" | awk "/=>/ {print \$3} /^\t\// {print \$1}"
    done | sort -u > /tmp/libs
    tar -ch -f - "${files[@]}" $(cat /tmp/libs) /usr/lib/x86_64-linux-gnu/xtables 2>/dev/null' \
    | tar -C "$CTX" -x
  mkdir -p "$CTX/usr/sbin"
  for name in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    ln -sf xtables-nft-multi "$CTX/usr/sbin/$name"
  done
  image "$IMAGE_REPOSITORY/kube-proxy:$K8S_VERSION" "FROM scratch
COPY . /
ENV PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ENTRYPOINT [\"/usr/local/bin/kube-proxy\"]"
  CTX=$WORK/ctx-coredns; mkdir -p "$CTX"; cp "$WORK/bin/coredns" "$CTX/"
  image "$COREDNS_IMAGE" 'FROM scratch
COPY coredns /coredns
EXPOSE 53 53/udp
ENTRYPOINT ["/coredns"]'
  CTX=$WORK/ctx-pause; mkdir -p "$CTX"; cp "$WORK/bin/pause" "$CTX/"
  image "$IMAGE_REPOSITORY/pause:$PAUSE_TAG" 'FROM scratch
COPY pause /pause
ENTRYPOINT ["/pause"]'
  CTX=$WORK/ctx-cni; mkdir -p "$CTX"; cp "$WORK/bin/cni-config" "$CTX/"
  image "kslab.local/cni-config:v1" 'FROM scratch
COPY cni-config /cni-config
ENTRYPOINT ["/cni-config"]'
  CTX=$WORK/ctx-lpp; mkdir -p "$CTX"; cp "$WORK/bin/local-path-provisioner" "$CTX/"
  image "kslab.local/local-path-provisioner:$LOCAL_PATH_VERSION" 'FROM scratch
COPY local-path-provisioner /local-path-provisioner
ENTRYPOINT ["/local-path-provisioner"]'
  # The provisioner's helper pods run its setup/teardown shell scripts: busybox from Debian's busybox-static.
  CTX=$WORK/ctx-helper; mkdir -p "$CTX/bin"
  docker run --rm --entrypoint /bin/cat "$ROOTFS_IMAGE" /bin/busybox >"$CTX/bin/busybox"
  chmod 755 "$CTX/bin/busybox"
  for name in sh mkdir rm rmdir chmod ls cat; do ln -sf busybox "$CTX/bin/$name"; done
  image "kslab.local/local-path-helper:v1" 'FROM scratch
COPY bin /bin
ENV PATH=/bin'
}
timed images build_images

# ---- the node: Debian base + kubelet/kubeadm/kubectl + our systemd units, containerd config, entrypoint --
build_node() {
  CTX=$WORK/ctx-node; mkdir -p "$CTX"
  cp "$NODE_BIN/kubelet" "$NODE_BIN/kubeadm" "$NODE_BIN/kubectl" "$WORK/bin/kslab-runc" "$HERE"/files/* "$CTX/"
  # containerd's sandbox image and cgroup driver are the minor's (kind sets the kubelet's driver by minor)
  sed -e "s|@SANDBOX_IMAGE@|$IMAGE_REPOSITORY/pause:$PAUSE_TAG|" -e "s|@SYSTEMD_CGROUP@|$SYSTEMD_CGROUP|" \
    "$HERE/files/containerd-config.toml" >"$CTX/containerd-config.toml"
  ! grep -q @ "$CTX/containerd-config.toml" || die "containerd-config.toml has a placeholder left"
  printf '%s\n' "$K8S_VERSION" >"$CTX/version"
  cat >"$CTX/Dockerfile" <<EOF
FROM $ROOTFS_IMAGE
COPY kubelet kubeadm kubectl /usr/bin/
COPY kslab-runc /usr/local/sbin/kslab-runc
COPY entrypoint /usr/local/bin/entrypoint
COPY containerd-config.toml /etc/containerd/config.toml
COPY kubelet.service /etc/systemd/system/kubelet.service
COPY 10-kubeadm.conf /etc/systemd/system/kubelet.service.d/10-kubeadm.conf
COPY kubelet.default /etc/default/kubelet
COPY version /kind/version
COPY default-cni.yaml default-storage.yaml /kind/manifests/
RUN systemctl enable containerd.service kubelet.service \\
 && systemctl mask systemd-binfmt.service getty.target console-getty.service \\
 && mkdir -p /etc/cni/net.d /var/lib/kubelet /etc/kubernetes/manifests \\
 && rm -f /etc/cni/net.d/*
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
EOF
  docker build -q -t "$IMAGE_REPO:stage-$digest" "$CTX" >/dev/null || die "docker build of the node stage failed"
}
timed node build_node

# ---- preload every image into the node's containerd, then commit ----------------------------------------
preload() {
  STAGE_CONTAINER=$(docker run -d --privileged --entrypoint /bin/sleep "$IMAGE_REPO:stage-$digest" infinity)
  docker exec "$STAGE_CONTAINER" mkdir -p /run/containerd
  docker exec -d "$STAGE_CONTAINER" /usr/bin/containerd
  for _ in $(seq 1 100); do
    docker exec "$STAGE_CONTAINER" ctr version >/dev/null 2>&1 && break
    sleep 0.2
  done
  local img
  for img in "${IMAGES[@]}"; do
    docker save "$img" | docker exec -i "$STAGE_CONTAINER" ctr --namespace=k8s.io images import --no-unpack - >/dev/null \
      || die "importing $img into the node's containerd failed"
  done
  local listed
  listed=$(docker exec "$STAGE_CONTAINER" ctr --namespace=k8s.io images ls -q)
  for img in "${IMAGES[@]}"; do
    grep -qx "docker.io/$img\|$img" <<<"$listed" || die "$img is not in the node's containerd after the import"
  done
  docker exec "$STAGE_CONTAINER" pkill -x containerd || true
  sleep 1
  docker exec "$STAGE_CONTAINER" rm -rf /run/containerd
  docker commit \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
    --change "LABEL kslab.recipe=$digest kslab.kubernetes=$K8S_VERSION" \
    "$STAGE_CONTAINER" "$IMAGE" >/dev/null
  docker rm -f "$STAGE_CONTAINER" >/dev/null
  STAGE_CONTAINER=""
  docker rmi "$IMAGE_REPO:stage-$digest" >/dev/null 2>&1 || true
}
timed preload preload

printf 'total=%ss\n' "$(( $(now) - T_START ))" >>"$TIMES"
log "built $IMAGE in $(( $(now) - T_START )) s ($(docker image inspect "$IMAGE" --format '{{.Size}}' | awk '{printf "%.0f MB", $1/1e6}'))"
printf 'export %s=%s\n' "$IMAGE_VAR" "$IMAGE"
