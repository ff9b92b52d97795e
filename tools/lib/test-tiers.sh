#!/usr/bin/env bash
# `make test`: the real-kind tier beside the other tests, as two pytest runs side by side. Each tier runs its tests one
# after another as before (a tier's tests share the machine's ports, its Docker engine and the lab registry's names);
# their waits overlap (kind nodes boot while API servers answer). The kind tier's report follows the other's.
#   tools/lib/test-tiers.sh <python> [pytest args...]
set -uo pipefail
python=$1; shift
scratch=$(mktemp -d "${TMPDIR:-/tmp}/kslab-tiers.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
"$python" -m pytest -m kind --basetemp="$scratch/kind" -p no:cacheprovider "$@" >"$scratch/kind.log" 2>&1 &
kind_pid=$!
"$python" -m pytest -m "not kind" --basetemp="$scratch/rest" "$@"
rest=$?
wait "$kind_pid"
kind=$?
echo "== the real-kind tier (pytest -m kind, run beside the above): exit $kind"
cat "$scratch/kind.log"
[[ $rest -eq 0 && $kind -eq 0 ]]
