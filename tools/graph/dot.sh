#!/usr/bin/env bash
# Make sure Graphviz's `dot` (which `make graph` and its tests draw with) is installed: as it is, or as root
# from Debian's package `graphviz`; otherwise say how to install it.
set -euo pipefail
command -v dot >/dev/null 2>&1 && exit 0
if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "[graph] installing Debian's graphviz (for \`dot\`)" >&2
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q graphviz; } >/dev/null \
    || { echo "[graph] ERROR: apt-get install graphviz failed" >&2; exit 1; }
  exit 0
fi
echo "[graph] ERROR: Graphviz's \`dot\` is not installed: apt-get install graphviz (Debian/Ubuntu) or brew install graphviz (macOS)" >&2
exit 1
