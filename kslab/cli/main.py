"""kslab: run a lab's stack with the project's defaults (`kslab`, `python -m kslab`, `make <target>`, tools/lab.sh).

    kslab <preview|up|destroy|refresh|outputs> <stack> [extra pulumi args]
    kslab <status|graph> <stack> [options of python -m kslab.cli.status]
    kslab images <stack> [--check] [--json] [--save FILE]   the image plan (kslab/cli/images.py)
    kslab registry <stack> <list|size|status|remove [--yes]>   the lab registry (kslab/cli/registry.py)
    kslab config <stack> <pulumi config args>   settings of your own, kept in .kslab/stacks (not the stack file)
    kslab config <stack> set [--secret] KEY --from-file PATH | --from-stdin   a value never on the command line
    kslab cancel <stack>   remove the lock of a run you know is gone (pulumi cancel)
    kslab forget <stack>   drop the stack's state, keeping its stack file (pulumi stack rm --preserve-config)

- the stack: stacks/Pulumi.<stack>.yaml, else a test stack of tests/stacks;
- every command runs in a scratch copy of the project under .kslab/projects, whose stack file is made anew from
  the stack file you edit and the lab's own settings (.kslab/stacks), so Pulumi never writes a tracked file
  (kslab/cli/stack_files.py);
- state: a local file backend under .kslab/state (PULUMI_BACKEND_URL overrides it);
- secrets: passphrase from PULUMI_CONFIG_PASSPHRASE, else the file .kslab/passphrase
  (created once, mode 600: keep it, the state's secrets cannot be read without it);
- the pulumi CLI from PATH, else the engine kslab builds (tools/engine/build.sh); the tools a lab needs besides
  (the registry tools, the kind tier) are decided from the lab its stack file declares (kslab/cli/needs.py);
- the policy pack is always applied to preview/up;
- one command per stack at a time for recovery plus the run (kslab/cli/stack_lock.py); what an interrupted run
  left is repaired or named with its fix first (kslab/cli/recovery.py).
Exit status: pulumi's (the run becomes it), 2 for a command used wrongly, 3 when the stack is busy or recovery
stops, or the status of the command that failed.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

from kslab.cli import needs, project, recovery, stack_files
from kslab.cli.config_value import STDIN, UsageError, split_value_source
from kslab.cli.project import Stack

ACTIONS = ("preview", "up", "destroy", "refresh", "outputs", "status", "graph", "images", "registry", "config",
           "cancel", "forget")
ALIASES = {"output": "outputs"}  # tools/lab.sh's name of it
PULUMI_RUNS = ("preview", "up", "destroy", "refresh")
LOCKED = (*PULUMI_RUNS, "cancel", "forget")
# Commands that must not create the stack (which writes an encryption salt into its file): they only read, or
# act on a state that exists.
NO_CREATE = ("status", "graph", "cancel", "forget")
BUSY_EXIT = 3


def usage(prog: str) -> str:
    return f"usage: {prog} <{'|'.join(ACTIONS)}> <stack> [args]  ({prog} --help tells more)"


def main(argv: list[str] | None = None) -> int:
    """The command's exit status; the runs of pulumi (and of status, graph, images, registry) replace this
    process, so their status and signals are the user's as they would be without kslab."""
    prog = os.environ.pop("KSLAB_PROG", "kslab")  # how tools/lab.sh calls it; its fixes name that command
    caller = os.environ.pop("KSLAB_CALLER_DIR", "") or os.getcwd()  # where a relative --from-file is meant
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] in (["-h"], ["--help"], ["help"]):
        print(re.sub(r"^    kslab ", f"    {prog} ", __doc__ or "", flags=re.M).rstrip())
        return 0
    try:
        return _command(prog, caller, args)
    except UsageError as error:
        print(f"kslab: {error}", file=sys.stderr)
        return 2
    except stack_files.PREPARE_ERRORS as error:
        stack_files.say_cannot_prepare(error)
        return 2
    except KeyboardInterrupt:
        print("kslab: interrupted", file=sys.stderr)
        return 130


def parse(prog: str, args: list[str]) -> tuple[str, str, list[str]]:
    """The action, the stack's name and the rest, or UsageError."""
    if len(args) < 2:
        raise UsageError(usage(prog))
    action = ALIASES.get(args[0], args[0])
    if action not in ACTIONS:
        raise UsageError(f"unknown action {args[0]}; {usage(prog)}")
    return action, args[1], args[2:]


def checkout() -> str:
    """The checkout this kslab package belongs to: the one it runs the labs of."""
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _command(prog: str, caller: str, args: list[str]) -> int:
    action, name, rest = parse(prog, args)
    value_from = None
    if action == "config":
        rest, value_from = split_value_source(rest, f"{prog} config {name}", caller)
    stack = project.find_stack(checkout(), name)
    if stack is None:
        raise UsageError(f"no stack file stacks/Pulumi.{name}.yaml")
    project.make_scratch_project(stack)
    stack_files.compose_files(*stack.files)
    status = needs.use_tools(stack.root, needs.tools_for(action, rest, needs.lab_or_none(stack.work, name),
                                                         stack.test))
    if status:
        return status
    if action in ("images", "registry"):  # the stack file alone (and the lab registry): no state, no engine
        os.chdir(stack.root)
        return _python(f"kslab.cli.{action}", "--stack", name, "--project-dir", stack.work, *rest)
    project.use_state(stack.root)
    if shutil.which("pulumi") is None:
        status = needs.use_tools(stack.root, [needs.ENGINE])
        if status:
            return status
    os.chdir(stack.work)
    os.environ["PULUMI_SKIP_UPDATE_CHECK"] = "true"
    pack = project.use_engine(stack.root, shutil.which("pulumi") or "pulumi", sdk_version())
    status = _prepare(prog, action, stack)
    if status:
        return status
    return _run(action, stack, rest, pack, value_from)


def sdk_version() -> str:
    """The kubernetes SDK version the program asks the engine for ("" when unknown)."""
    try:
        return version("pulumi_kubernetes")
    except PackageNotFoundError:
        return ""


def _prepare(prog: str, action: str, stack: Stack) -> int:
    """The stack's lock, recovery and the stack itself, as the action needs them; 0 or the status to exit with."""
    if action in LOCKED and not hold_lock(stack, f"{prog} {action} {stack.name}"):
        return BUSY_EXIT
    if action in PULUMI_RUNS:
        # What an interrupted run left (a stale lock, a cut-off file, an unreadable state, pending operations) is
        # repaired or named with its fix before anything else reads the state.
        status = recovery.main([action, stack.name])
        if status:
            return status
    if action not in NO_CREATE:  # a new stack's salt goes to .kslab/stacks
        return stack_files.run_then_keep(*stack.files, ["pulumi", "stack", "select", stack.name, "--create"],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return 0


def hold_lock(stack: Stack, what: str) -> bool:
    """One command per stack at a time, for the whole of recovery plus the run: a holder process of its own keeps
    the lock until this process (pulumi, after exec: the same pid) ends; a second command is told at once who
    holds it. False when the stack is busy (the holder said so)."""
    lock = os.path.join(stack.root, ".kslab", "locks", f"{stack.name}.lock")
    holder = subprocess.Popen([sys.executable, "-m", "kslab.cli.stack_lock", "hold", lock, str(os.getpid()), what],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    locked = holder.stdout.readline().strip() == "locked"
    holder.stdout.close()
    if not locked:
        holder.wait()
    return locked


def _run(action: str, stack: Stack, rest: list[str], pack: str, value_from: str | None) -> int:
    """The command itself; pulumi's runs replace this process."""
    name = stack.name
    if action in ("preview", "up"):
        return _exec(["pulumi", action, "--stack", name, "--policy-pack", pack, *stack.policy_config(), *rest])
    if action in ("destroy", "refresh"):
        return _exec(["pulumi", action, "--stack", name, *rest])
    if action == "outputs":
        return _exec(["pulumi", "stack", "output", "--stack", name, *rest])
    if action == "config":  # settings of your own, kept in .kslab/stacks; a value reaches pulumi on stdin only
        command = ["pulumi", "config", "--stack", name, *rest]
        if value_from is None or value_from == STDIN:
            return stack_files.run_then_keep(*stack.files, command)
        with open(value_from, "rb") as value:
            return stack_files.run_then_keep(*stack.files, command, stdin=value)
    if action == "cancel":
        return _exec(["pulumi", "cancel", "--stack", name, "--yes", *rest])
    if action == "forget":
        return _exec(["pulumi", "stack", "rm", "--stack", name, "--force", "--preserve-config", "--yes", *rest])
    if action == "graph":  # the pictures go to the checkout by default
        done = subprocess.run([os.path.join(stack.root, "tools", "graph", "dot.sh")])
        if done.returncode:
            return done.returncode
        return _python("kslab.cli.status", "graph", "--stack", name, "--out-dir", stack.root, *rest)
    return _python("kslab.cli.status", "status", "--stack", name, *rest)  # the running lab at a glance


def _python(module: str, *args: str) -> int:
    return _exec([sys.executable, "-m", module, *args])


def _exec(command: list[str]) -> int:
    """Become the command (same pid: the stack's lock holder watches it; signals and the exit status are its)."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(command[0], command)
    except OSError as error:
        print(f"kslab: cannot run {command[0]}: {error.strerror}", file=sys.stderr)
    return 127


if __name__ == "__main__":
    sys.exit(main())
