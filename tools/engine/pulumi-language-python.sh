#!/bin/sh
# Launcher for the Python language host (built from sdk/v3 v3.68.0, installed
# next to this script as pulumi-language-python-host). CLIs of that era passed the
# Pulumi.yaml runtime options as flags (-virtualenv=..., -root=...); current
# CLIs send them over gRPC, which this host does not read. Recreate the flags
# from the Pulumi.yaml in the working directory the CLI starts us in.
venv=
if [ -f Pulumi.yaml ]; then
    venv=$(sed -n 's/^[[:space:]]*virtualenv:[[:space:]]*//p' Pulumi.yaml | head -n 1 | sed 's/[[:space:]]*#.*$//; s/^["'\'']//; s/["'\'']$//')
elif [ -f Pulumi.yml ]; then
    venv=$(sed -n 's/^[[:space:]]*virtualenv:[[:space:]]*//p' Pulumi.yml | head -n 1 | sed 's/[[:space:]]*#.*$//; s/^["'\'']//; s/["'\'']$//')
fi
if [ -n "$venv" ]; then
    exec "$(dirname "$0")/pulumi-language-python-host" -root="$PWD" -virtualenv="$venv" "$@"
fi
exec "$(dirname "$0")/pulumi-language-python-host" "$@"
