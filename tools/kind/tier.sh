#!/usr/bin/env bash
# Everything the real-kind tier needs, each from its own cached tool: a Docker engine (tools/docker), kind
# (tools/kind/build.sh), the node image (tools/kind/node-image) and inotify limits for several clusters.
#
#   eval "$(tools/kind/tier.sh)"   # last stdout line: the three tools' exports, joined
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
docker_env=$("$HERE/../docker/docker.sh" start | tail -n1)
eval "$docker_env"
kind_env=$("$HERE/build.sh" | tail -n1)
image_env=$("$HERE/node-image/build.sh" | tail -n1)
# and a node image of every other Kubernetes minor kslab knows (the original notes' 1.19: tests/stacks run it)
default_minor=$(cat "$HERE/../kube/minors/DEFAULT")
for facts in "$HERE"/../kube/minors/*.env; do
  [[ $(basename "$facts" .env) == "$default_minor" ]] && continue
  version=$(bash -c 'source "$1"; printf "%s" "$K8S_VERSION"' _ "$facts")
  image_env+="; $("$HERE/node-image/build.sh" --kubernetes "$version" | tail -n1)"
done
"$HERE/host-limits.sh"
printf '%s; %s; %s\n' "$docker_env" "$kind_env" "$image_env"
