#!/usr/bin/env bash
# `make check`'s shell lint: shellcheck on every shell script of the repository (each tracked *.sh file, and each
# tracked file whose first line runs bash or sh). Debian's shellcheck is installed as root if missing (as .ci/run
# installs what the tests need); otherwise this says how to install it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if ! command -v shellcheck >/dev/null 2>&1; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "[shellcheck] installing Debian's shellcheck" >&2
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q shellcheck; } >/dev/null \
      || { echo "[shellcheck] ERROR: apt-get install shellcheck failed" >&2; exit 1; }
  else
    echo "[shellcheck] ERROR: shellcheck is not installed: apt-get install shellcheck (Debian/Ubuntu) or brew install shellcheck (macOS)" >&2
    exit 1
  fi
fi
scripts=()
while IFS= read -r -d '' file; do
  [[ -f $file ]] || continue
  if [[ $file == *.sh ]] || head -n1 "$file" | grep -qE '^#!.*[/ ](ba)?sh( |$)'; then scripts+=("$file"); fi
done < <(git ls-files -z 2>/dev/null || find . -path ./venv -prune -o -path ./.kslab -prune -o -type f -print0)
echo "[shellcheck] $(shellcheck --version | sed -n 's/^version: //p'): ${#scripts[@]} scripts" >&2
shellcheck -x "${scripts[@]}"
