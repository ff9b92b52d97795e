"""Operator commands run by tools/lab.sh: status and its findings, graph, images, registry, recovery, locks."""
