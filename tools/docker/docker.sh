#!/usr/bin/env bash
# A Docker engine for kslab's real-kind tests, without touching the user's own Docker.
#
#   eval "$(tools/docker/docker.sh start)"   # last stdout line: export DOCKER_HOST=... (and
#                                            # KSLAB_DOCKER_STARTED=1 when this call started dockerd)
#   tools/docker/docker.sh stop              # stops only a dockerd this script started
#   tools/docker/docker.sh status
#   eval "$(tools/docker/docker.sh env)"     # DOCKER_HOST of kslab's dockerd if it runs (else nothing)
#
# start:
#   - If `docker info` already works (the user's Docker, or one started earlier by this script),
#     it is used as it is: nothing is installed or configured, and stdout says which one.
#   - Otherwise, and only as root on a Debian-like machine, it installs Debian's `docker.io` if
#     dockerd is missing, and starts a private dockerd: its own config file, socket, data root and
#     exec root under $KSLAB_CACHE/docker (never /etc/docker, never /var/run/docker.sock).
#   - If this machine's capability bounding set lacks capabilities a privileged container asks for
#     (some VMs lack CAP_SYS_RESOURCE), the private dockerd's default runtime is kslab-runc
#     (tools/docker/runtime-wrapper), which drops exactly those before running runc.
#
# Env: KSLAB_CACHE (default ~/.cache/kslab); KSLAB_DOCKER_GROUP (socket group, default docker).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${KSLAB_CACHE:-$HOME/.cache/kslab}
BASE=$CACHE_ROOT/docker
# The socket lives outside $HOME so a non-root member of $GROUP can reach it.
RUN=${KSLAB_DOCKER_RUN:-/run/kslab-docker}
SOCK=$RUN/docker.sock
PIDFILE=$RUN/dockerd.pid
LOG=$BASE/dockerd.log
GROUP=${KSLAB_DOCKER_GROUP:-docker}

log() { printf '[docker] %s\n' "$*" >&2; }
die() { printf '[docker] ERROR: %s\n' "$*" >&2; exit 1; }

ours_running() {
  [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

# The capabilities runc would be asked for that the bounding set cannot grant (0..40).
missing_caps() {
  local bnd; bnd=$(awk '/^CapBnd:/ {print $2}' /proc/self/status)
  python3 - "$bnd" <<'PY'
import sys
bound = int(sys.argv[1], 16)
print(" ".join(str(n) for n in range(41) if not bound >> n & 1))
PY
}

wrapper_binary() {
  local digest out
  digest=$(cat "$HERE"/runtime-wrapper/go.mod "$HERE"/runtime-wrapper/main.go | sha256sum | cut -c1-12)
  out=$CACHE_ROOT/docker/bin/kslab-runc-$digest
  if [[ ! -x $out ]]; then
    command -v go >/dev/null || die "go is needed to build the runtime wrapper"
    mkdir -p "$(dirname "$out")"
    (cd "$HERE/runtime-wrapper" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$out.tmp" .) \
      || die "building the runtime wrapper failed"
    mv -f "$out.tmp" "$out"
  fi
  printf '%s\n' "$out"
}

start() {
  if ours_running && DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1; then
    local wanted=""
    [[ -z $(missing_caps) ]] || wanted=$(wrapper_binary)
    if [[ -z $wanted ]] || grep -qF "\"$wanted\"" "$BASE/daemon.json"; then
      log "kslab's dockerd is running (pid $(cat "$PIDFILE"), socket $SOCK)"
      printf 'export DOCKER_HOST=unix://%s\n' "$SOCK"
      return
    fi
    log "kslab's dockerd runs an older runtime wrapper: restarting it with $wanted"
    stop
  fi
  if docker info >/dev/null 2>&1; then
    log "using the Docker engine that already answers (${DOCKER_HOST:-your docker context}); nothing changed"
    if [[ -n ${DOCKER_HOST:-} ]]; then printf 'export DOCKER_HOST=%s\n' "$DOCKER_HOST"; else echo ':'; fi
    return
  fi
  [[ $(id -u) == 0 ]] || die "no Docker engine answers and starting one needs root. Fix: start your Docker (\`sudo systemctl start docker\`) and add yourself to the docker group, or run this as root"
  if ! command -v dockerd >/dev/null; then
    command -v apt-get >/dev/null || die "dockerd is not installed and apt-get is not available. Fix: install Docker"
    log "installing Debian's docker.io (dockerd, containerd, runc)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >"$BASE.apt.log" 2>&1 \
      || { apt-get update -q >>"$BASE.apt.log" 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io >>"$BASE.apt.log" 2>&1; } \
      || die "apt-get install docker.io failed; see $BASE.apt.log"
  fi
  getent group "$GROUP" >/dev/null || groupadd --system "$GROUP"
  mkdir -p "$RUN" "$BASE/data" "$BASE/exec"
  # kind bind-mounts /lib/modules read-only into every node.
  [[ -d /lib/modules ]] || mkdir -p /lib/modules

  local missing runtime_json=""
  missing=$(missing_caps)
  if [[ -n $missing ]]; then
    local wrapper; wrapper=$(wrapper_binary)
    log "capability bounding set lacks capabilities ($missing): privileged containers run through $wrapper"
    runtime_json=$(printf ',\n  "runtimes": {"kslab-runc": {"path": "%s"}},\n  "default-runtime": "kslab-runc"' "$wrapper")
  fi
  cat >"$BASE/daemon.json" <<EOF
{
  "data-root": "$BASE/data",
  "exec-root": "$BASE/exec",
  "pidfile": "$PIDFILE",
  "hosts": ["unix://$SOCK"],
  "group": "$GROUP"$runtime_json
}
EOF
  log "starting dockerd (config $BASE/daemon.json, log $LOG)"
  # Its own containerd, under the exec root: nothing is shared with a system Docker.
  nohup dockerd --config-file "$BASE/daemon.json" >"$LOG" 2>&1 </dev/null &
  local i
  for i in $(seq 1 120); do
    if DOCKER_HOST=unix://$SOCK docker info >/dev/null 2>&1; then
      log "dockerd is up after ${i}x0.5 s (pid $(cat "$PIDFILE"))"
      printf 'export DOCKER_HOST=unix://%s KSLAB_DOCKER_STARTED=1\n' "$SOCK"
      return
    fi
    sleep 0.5
  done
  tail -n 20 "$LOG" >&2
  die "dockerd did not answer within 60 s; see $LOG"
}

stop() {
  if ! ours_running; then
    log "no dockerd started by kslab is running"
    return
  fi
  local pid; pid=$(cat "$PIDFILE")
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || { log "stopped dockerd (pid $pid)"; return; }; sleep 0.5; done
  die "dockerd (pid $pid) did not stop within 30 s"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) if ours_running; then printf 'export DOCKER_HOST=unix://%s\n' "$SOCK"; else echo ':'; fi ;;
  status) if ours_running; then echo "kslab dockerd running, pid $(cat "$PIDFILE"), DOCKER_HOST=unix://$SOCK"; else echo "kslab dockerd not running"; fi ;;
  *) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
