"""The kslab command (main.py: `kslab`, `python -m kslab`, tools/lab.sh, the make targets) and what it runs: status
and its findings, graph, images, registry, recovery, locks, the stack's settings outside the repository."""
