#!/usr/bin/env bash
# Run a Pulumi command on a kslab stack with the project's defaults:
#   tools/lab.sh <preview|up|destroy|refresh|output> <stack> [extra pulumi args]
#   tools/lab.sh <status|graph> <stack> [options of python -m kslab.cli.status]
#   tools/lab.sh images <stack> [--check] [--json]   the image plan (python -m kslab.cli.images)
#   tools/lab.sh registry <stack> <list|size|status|remove [--yes]>   the lab registry (kslab/cli/registry.py)
#   tools/lab.sh config <stack> <pulumi config args>   settings of your own, kept in .kslab/stacks (not the stack file)
#   tools/lab.sh config <stack> set [--secret] KEY --from-file PATH | --from-stdin   a value never on the command line
#   tools/lab.sh cancel <stack>   remove the lock of a run you know is gone (pulumi cancel)
#   tools/lab.sh forget <stack>   drop the stack's state, keeping its stack file (pulumi stack rm --preserve-config)
# - state: a local file backend under .kslab/state (PULUMI_BACKEND_URL overrides it);
# - secrets: passphrase from PULUMI_CONFIG_PASSPHRASE, else the file .kslab/passphrase
#   (created once, mode 600: keep it, the state's secrets cannot be read without it);
# - the pulumi CLI from PATH, else the engine kslab builds (tools/engine/build.sh);
# - the policy pack is always applied to preview/up.
set -euo pipefail
caller=$PWD  # where a relative --from-file path is meant
cd "$(dirname "$0")/.."
root=$PWD
action=${1:?usage: tools/lab.sh <preview|up|destroy|refresh|output|config|status|graph|images|registry|cancel|forget> <stack>}
stack=${2:?usage: tools/lab.sh <action> <stack>}
shift 2
# `config <stack> set [--secret] KEY --from-file PATH | --from-stdin`: the value goes to `pulumi config set` on its
# standard input (it reads the value from there when none is given), never as an argument, which any user can read
# in /proc/<pid>/cmdline and which stays in the shell's history.
value_from=
if [[ "$action" == config ]]; then
  config_args=()
  while (($#)); do
    case $1 in
      --from-file) [[ $# -ge 2 ]] || { echo "kslab: --from-file needs the file that holds the value" >&2; exit 2; }
                   value_from=$2; shift 2 ;;
      --from-file=*) value_from=${1#*=}; shift ;;
      --from-stdin) value_from=-; shift ;;
      *) config_args+=("$1"); shift ;;
    esac
  done
  set -- ${config_args[@]+"${config_args[@]}"}
  if [[ -n $value_from && "${1:-}" != set ]]; then
    echo "kslab: --from-file and --from-stdin go with 'set' only: tools/lab.sh config $stack set [--secret] KEY --from-file PATH" >&2
    exit 2
  fi
  if [[ -n $value_from ]]; then  # KEY alone: with a value argument too, pulumi would take that one
    words=0 skip=
    for arg in "${@:2}"; do
      if [[ -n $skip ]]; then skip=; continue; fi
      case $arg in
        --type|--config-file|-s|--stack|-C|--cwd) skip=1 ;;  # options that take a value
        -*) ;;
        *) words=$((words + 1)) ;;
      esac
    done
    if ((words != 1)); then
      echo "kslab: with --from-file or --from-stdin give the KEY alone, not its value: tools/lab.sh config $stack set [--secret] KEY --from-file PATH" >&2
      exit 2
    fi
  fi
  [[ -z $value_from || $value_from == - || $value_from == /* ]] || value_from=$caller/$value_from
  if [[ -n $value_from && $value_from != - && ! ( -f $value_from && -r $value_from ) ]]; then
    echo "kslab: --from-file $value_from: no such readable file (it holds the value, e.g. the credentials JSON)" >&2
    exit 2
  fi
fi
extra=()
# Every stack runs in a scratch copy of the project under .kslab/projects, whose stack file is made anew from
# the stack file you edit and the lab's own settings (.kslab/stacks), so Pulumi never writes a tracked file
# (kslab/cli/stack_files.py): not the passphrase's encryption salt, not `tools/lab.sh config` values.
source_file=stacks/Pulumi.${stack}.yaml
if [[ ! -f "$source_file" ]]; then
  source_file=tests/stacks/Pulumi.${stack}.yaml  # a test stack (e.g. against `make harness-up`)
  [[ -f "$source_file" ]] || { echo "kslab: no stack file stacks/Pulumi.${stack}.yaml" >&2; exit 2; }
  [[ "$stack" != live-* ]] || extra=(--policy-pack-config "$PWD/tests/stacks/policy-config.live.json")
  # kind test stacks run on the Docker, kind and node image kslab builds (tools/kind/tier.sh).
  if [[ "$stack" == kind-* && "$action" != images ]]; then eval "$(tools/kind/tier.sh)"; fi
fi
work=.kslab/projects/$stack
settings=.kslab/stacks/Pulumi.${stack}.yaml
scratch=$work/stacks/Pulumi.${stack}.yaml
mkdir -p "$work/stacks"
for item in Pulumi.yaml __main__.py kslab components provider policies venv tests; do ln -sfn "$PWD/$item" "$work/$item"; done
py=$root/venv/bin/python; [[ -x $py ]] || py=python3
# The policy pack imports the installed kslab package (`make venv`); a virtualenv from before the package has none.
# The same call tells the version of the kubernetes SDK the program asks the engine for (used below).
sdk=
if [[ -x $root/venv/bin/python ]] && ! sdk=$(cd / && "$py" -c 'import kslab; from importlib.metadata import version
print(version("pulumi_kubernetes"))' 2>/dev/null); then
  echo "kslab: the virtualenv predates the kslab package; run 'make venv' (or any make target) first" >&2; exit 2
fi
"$py" -m kslab.cli.stack_files compose "$source_file" "$settings" "$scratch"
# A command that may write the stack file (stack select --create: the salt; config), under the stack's settings
# lock, then what it wrote is kept in .kslab/stacks.
then_keep() { "$py" -m kslab.cli.stack_files run "$root/$source_file" "$root/$settings" "$root/$scratch" -- "$@"; }

# The image plan reads the stack file alone: no state, no engine. Saving an archive pulls with crane.
if [[ "$action" == images && " $* " == *" --save "* ]]; then eval "$(tools/registry/build.sh)"; fi
[[ "$action" != images ]] || exec "$py" -m kslab.cli.images --stack "$stack" --project-dir "$work" "$@"
[[ "$action" != registry ]] || exec "$py" -m kslab.cli.registry --stack "$stack" --project-dir "$work" "$@"
# A lab with image sources copies its images with crane into a lab registry run from distribution's binary; both
# are built once from their Go modules (tools/registry/build.sh, cached).
if [[ "$action" == up ]] && grep -qsE '^ *kslab:image(Sources|Archives):' "$source_file" "$settings"; then
  eval "$(tools/registry/build.sh)"
fi

mkdir -p .kslab/state
export PULUMI_BACKEND_URL=${PULUMI_BACKEND_URL:-file://$PWD/.kslab/state}
if [[ -z "${PULUMI_CONFIG_PASSPHRASE:-}" && -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]]; then
  if [[ ! -s .kslab/passphrase ]]; then
    (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > .kslab/passphrase)
    echo "kslab: created .kslab/passphrase (keep it: it encrypts this lab's secrets)" >&2
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE=$PWD/.kslab/passphrase
fi
if ! command -v pulumi >/dev/null 2>&1; then
  eval "$(tools/engine/build.sh)"
fi
cd "$work"
export PULUMI_SKIP_UPDATE_CHECK=true
pack=policies
# kslab's own engine build (tools/engine/build.sh), wherever KSLAB_CACHE put it: the build's stamp beside its bin/
# folder, and the language host wrapper only that build installs. Its Python language host predates running packs
# itself.
engine_bin=$(dirname "$(readlink -f "$(command -v pulumi)")")
if [[ -f $engine_bin/../.complete && -x $engine_bin/pulumi-language-python-host ]]; then
    pack=policies/analyzer; export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
    # Its kubernetes plugin as an installed plugin (tools/engine/build.sh installs it into the engine's cache, no
    # download): runs use a Pulumi home of kslab's own whose plugins are those, so the engine takes it from there
    # instead of warning that it uses it from PATH, and nothing is written into ~/.pulumi. Only when the plugin is
    # the version the program's SDK asks for (the engine then looks up that exact version) and complete.
    if [[ -n ${KSLAB_ENGINE_PLUGIN_HOME:-} && -z ${PULUMI_HOME:-} ]]; then
      built=$KSLAB_ENGINE_PLUGIN_HOME/plugins/resource-kubernetes-v$sdk
      if [[ -n $sdk && -d $built && ! -e $built.partial ]]; then
        mkdir -p "$root/.kslab/pulumi-home"
        ln -sfn "$KSLAB_ENGINE_PLUGIN_HOME/plugins" "$root/.kslab/pulumi-home/plugins"
        export PULUMI_HOME=$root/.kslab/pulumi-home PULUMI_IGNORE_AMBIENT_PLUGINS=true
      fi
    fi
fi

# One command per stack at a time, for the whole of recovery plus the run: a holder process of its own keeps the
# lock until this process (pulumi, after exec) ends; a second command is told at once (kslab/cli/stack_lock.py).
case "$action" in
  preview|up|destroy|refresh|cancel|forget)
    exec {lock_out}< <(exec "$py" -m kslab.cli.stack_lock hold "$root/.kslab/locks/$stack.lock" $$ \
                         "tools/lab.sh $action $stack")
    read -r -u "$lock_out" locked || true
    exec {lock_out}<&-
    [[ "${locked:-}" == locked ]] || exit 3 ;;
esac
# What an interrupted run left (a stale lock, a cut-off file, an unreadable state, pending operations) is
# repaired or named with its fix before anything else reads the state: kslab/cli/recovery.py.
case "$action" in
  preview|up|destroy|refresh)
    "$py" -m kslab.cli.recovery "$action" "$stack" || exit $? ;;
esac
# status and graph only read: they must not create a stack (which writes an encryption salt into its file).
if [[ "$action" != status && "$action" != graph && "$action" != cancel && "$action" != forget ]]; then
  then_keep pulumi stack select "$stack" --create >/dev/null </dev/null  # a new stack's salt: to .kslab/stacks
fi
case "$action" in
  preview|up) exec pulumi "$action" --stack "$stack" --policy-pack "$pack" "${extra[@]}" "$@" ;;
  destroy|refresh) exec pulumi "$action" --stack "$stack" "$@" ;;
  output) exec pulumi stack output --stack "$stack" "$@" ;;
  # Stack settings of your own (e.g. `config <stack> set --secret kslab:jwtSecret`): kept in .kslab/stacks.
  # A value from --from-file or --from-stdin reaches `pulumi config set` on its standard input only.
  config) if [[ -n $value_from && $value_from != - ]]; then then_keep pulumi config --stack "$stack" "$@" <"$value_from"
          else then_keep pulumi config --stack "$stack" "$@"; fi
          exit $? ;;
  cancel) exec pulumi cancel --stack "$stack" --yes "$@" ;;
  forget) exec pulumi stack rm --stack "$stack" --force --preserve-config --yes "$@" ;;
  # Read-only views of the lab (kslab/cli/status.py); the pictures go to the repository root by default.
  status) exec venv/bin/python -m kslab.cli.status status --stack "$stack" "$@" ;;
  graph) "$root/tools/graph/dot.sh"
         exec venv/bin/python -m kslab.cli.status graph --stack "$stack" --out-dir "$root" "$@" ;;
  *) echo "kslab: unknown action $action" >&2; exit 2 ;;
esac
