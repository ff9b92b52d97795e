# shellcheck shell=bash
# Shared by kslab's build scripts (tools/engine, tools/kube, tools/registry, tools/kind): a tool built once from
# its published Go module into a cache outside the repository keyed by its version, checked, and announced by
# one line on stdout, `export PATH="<cache>/.../bin:$PATH"`, for the caller to eval. Progress goes to stderr.
#
# The caller sets LOG_TAG (its log prefix, e.g. registry-build) before sourcing this file.

# The cache root: KSLAB_CACHE, else ~/.cache/kslab.
cache_root() { printf '%s\n' "${KSLAB_CACHE:-$HOME/.cache/kslab}"; }

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() { printf '[%s] ERROR: %s\n' "$LOG_TAG" "$*" >&2; exit 1; }

# need_go <message>: die with the message unless Go is installed.
need_go() { command -v go >/dev/null 2>&1 || die "$1"; }

# emit_path <bin dir>: the one stdout line that puts the tool on PATH.
emit_path() { printf 'export PATH="%s:$PATH"\n' "$1"; }

# build_lock <lock file> <message>: one builder at a time; a second caller says the message, then waits.
build_lock() {
  exec 9>"$1"
  command -v flock >/dev/null 2>&1 || return 0
  flock -n 9 || { log "$2"; flock 9; }
}

# go_install <bin dir> <ldflags or ""> <package@version>: a static, path-trimmed `go install` of a module whose
# go.mod has no replace directives (then `go install module/cmd@version` works).
go_install() {
  local flags=()
  [[ -z $2 ]] || flags=(-ldflags "$2")
  mkdir -p "$1"
  GOWORK=off CGO_ENABLED=0 GOBIN="$1" go install -trimpath "${flags[@]}" "$3" >&2
}

# go_tool <bin dir> <is_cached> <build> <cached message> <built message>: when the function is_cached says the
# cache holds the tool, say so and build nothing; else run the function build (it checks what it built) and say
# how long it took. Either way, print the export line.
go_tool() {
  local dest=$1 is_cached=$2 build=$3 t0
  if "$is_cached"; then
    log "$4"
    emit_path "$dest"
    return 0
  fi
  t0=$(date +%s)
  "$build"
  log "$5 in $(( $(date +%s) - t0 )) s"
  emit_path "$dest"
}
