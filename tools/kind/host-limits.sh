#!/usr/bin/env bash
# Several kind clusters on one machine need more inotify watches and instances than many distributions
# give (kind's "known issues"; karmada#6035). As root, raise them to what kslab's preflight asks for when
# they are lower; otherwise say what to run. Prints what it did on stderr; changes nothing else.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
# The numbers are the preflight's (kslab/model/preflight_rules.py), which refuses a lab below them.
read -r WATCHES INSTANCES < <(cd "$ROOT" && python3 -c \
  'from kslab.model.preflight_rules import INOTIFY_WATCHES as w, INOTIFY_INSTANCES as i; print(w, i)')
watches=$(cat /proc/sys/fs/inotify/max_user_watches)
instances=$(cat /proc/sys/fs/inotify/max_user_instances)
if (( watches >= WATCHES && instances >= INSTANCES )); then
  echo "[host-limits] inotify limits are enough ($watches watches, $instances instances)" >&2
  exit 0
fi
fix="sysctl -w fs.inotify.max_user_watches=$(( watches > WATCHES ? watches : WATCHES )) fs.inotify.max_user_instances=$(( instances > INSTANCES ? instances : INSTANCES ))"
if [[ $(id -u) != 0 ]]; then
  echo "[host-limits] inotify limits are low ($watches watches, $instances instances); several kind clusters need: sudo $fix" >&2
  exit 0
fi
$fix >/dev/null
echo "[host-limits] raised inotify limits: $fix" >&2
