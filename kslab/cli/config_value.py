"""`config <stack> set [--secret] KEY --from-file PATH | --from-stdin`: the value goes to `pulumi config set` on
its standard input (it reads the value from there when none is given), never as an argument, which any user can
read in /proc/<pid>/cmdline and which stays in the shell's history."""
from __future__ import annotations

import os

STDIN = "-"
CREDENTIALS = "kslab:registryCredentials"  # the one setting that holds passwords (model/image_sources.py)
# `pulumi config` options that take a value (the value is not a word of the command).
_TAKES_VALUE = {"--type", "--config-file", "-s", "--stack", "-C", "--cwd"}


class UsageError(Exception):
    """A command used wrongly: said as it is, exit status 2, before anything runs."""


def split_value_source(args: list[str], how: str, caller_dir: str) -> tuple[list[str], str | None]:
    """The `pulumi config` arguments without --from-file/--from-stdin, and where the value comes from: a readable
    file's absolute path (a relative one is meant from `caller_dir`), STDIN, or None. `how` is the command the
    fixes name, e.g. `tools/lab.sh config standalone`."""
    rest: list[str] = []
    source: str | None = None
    items = iter(args)
    for arg in items:
        if arg == "--from-file":
            source = next(items, None)
            if not source:
                raise UsageError("--from-file needs the file that holds the value")
        elif arg.startswith("--from-file="):
            source = arg.split("=", 1)[1]
            if not source:
                raise UsageError("--from-file needs the file that holds the value")
        elif arg == "--from-stdin":
            source = STDIN
        else:
            rest.append(arg)
    usage = f"{how} set [--secret] KEY --from-file PATH"
    if source is None:
        if rest[:1] == ["set"] and CREDENTIALS in rest and _words(rest[1:]) > 1:
            raise UsageError(f"{CREDENTIALS} is never given on the command line (any user can read it in /proc, and "
                             f"it stays in your shell's history): {usage} (a file of yours, chmod 600), or "
                             "--from-stdin")
        return rest, None
    if rest[:1] != ["set"]:
        raise UsageError(f"--from-file and --from-stdin go with 'set' only: {usage}")
    if _words(rest[1:]) != 1:  # KEY alone: with a value argument too, pulumi would take that one
        raise UsageError(f"with --from-file or --from-stdin give the KEY alone, not its value: {usage}")
    if source != STDIN:
        source = os.path.join(caller_dir, source)
        if not (os.path.isfile(source) and os.access(source, os.R_OK)):
            raise UsageError(f"--from-file {source}: no such readable file (it holds the value, e.g. the "
                             "credentials JSON)")
    return rest, source


def _words(args: list[str]) -> int:
    """How many plain words (not options, not an option's value) the arguments hold."""
    words, skip = 0, False
    for arg in args:
        if skip:
            skip = False
        elif arg in _TAKES_VALUE:
            skip = True
        elif not arg.startswith("-"):
            words += 1
    return words
