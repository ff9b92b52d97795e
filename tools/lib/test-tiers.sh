#!/usr/bin/env bash
# `make test`: the real-kind tier beside the other tests, as two pytest runs side by side. Each tier runs its tests one
# after another as before (a tier's tests share the machine's ports, its Docker engine and the lab registry's names);
# their waits overlap (kind nodes boot while API servers answer). The kind tier's report follows the other's.
#   tools/lib/test-tiers.sh <python> [pytest args...]
# Each tier has its own temporary folder and pytest cache; both are kept, and named, when a tier fails. An interrupt
# (Ctrl-C, or a TERM) reaches the kind tier too, which then tears its clusters down before the script ends.
set -uo pipefail
python=$1; shift
scratch=$(mktemp -d "${TMPDIR:-/tmp}/kslab-tiers.XXXXXX")
# A background job of a non-interactive shell ignores SIGINT, and Python then installs no KeyboardInterrupt handler:
# the kind tier restores it, so that an interrupt runs its teardowns.
"$python" -c 'import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); sys.exit(pytest.main())' \
  -m kind --basetemp="$scratch/kind" -o cache_dir="$scratch/kind-cache" "$@" >"$scratch/kind.log" 2>&1 &
kind_pid=$!
stop_kind() {
  kill -INT "$kind_pid" 2>/dev/null
  wait "$kind_pid"
  cat "$scratch/kind.log"
  echo "== interrupted; the tiers' files: $scratch"
  exit 130
}
trap stop_kind INT TERM
"$python" -m pytest -m "not kind" --basetemp="$scratch/rest" "$@"
rest=$?
wait "$kind_pid"
kind=$?
trap - INT TERM
echo "== the real-kind tier (pytest -m kind, run beside the above): exit $kind"
cat "$scratch/kind.log"
# "no test selected" (5) in one tier is no failure of the run: a selection may fall in one tier only
(( rest == 5 )) && rest=0
(( kind == 5 )) && kind=0
if (( rest || kind )); then
  echo "== the tiers' temporary files are kept: $scratch"
  exit $(( rest ? rest : kind ))
fi
rm -rf "$scratch"
