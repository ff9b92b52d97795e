#!/usr/bin/env bash
# Run a Pulumi command on a kslab stack with the project's defaults: the kslab command (kslab/cli/main.py), for
# those who type tools/lab.sh (same arguments as ever; `make <target>`, `kslab` and `python -m kslab` run the same).
#   tools/lab.sh <preview|up|destroy|refresh|output> <stack> [extra pulumi args]
#   tools/lab.sh <status|graph> <stack> [options of python -m kslab.cli.status]
#   tools/lab.sh images <stack> [--check] [--json]   the image plan (python -m kslab.cli.images)
#   tools/lab.sh registry <stack> <list|size|status|remove [--yes]>   the lab registry (kslab/cli/registry.py)
#   tools/lab.sh config <stack> <pulumi config args>   settings of your own, kept in .kslab/stacks (not the stack file)
#   tools/lab.sh config <stack> set [--secret] KEY --from-file PATH | --from-stdin   a value never on the command line
#   tools/lab.sh cancel <stack>   remove the lock of a run you know is gone (pulumi cancel)
#   tools/lab.sh forget <stack>   drop the stack's state, keeping its stack file (pulumi stack rm --preserve-config)
# `tools/lab.sh --help` tells the rest (state, passphrase, engine, policy pack, lock, recovery, exit status).
set -euo pipefail
caller=$PWD  # where a relative --from-file path is meant
cd "$(dirname "$0")/.."
py=$PWD/venv/bin/python
[[ -x $py ]] || py=python3
# From the checkout, so this checkout's kslab package runs; the command becomes pulumi in turn (the same pid).
KSLAB_CALLER_DIR=$caller KSLAB_PROG=tools/lab.sh exec "$py" -m kslab "$@"
