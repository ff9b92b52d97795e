"""What a process id names, as /proc shows it: the owner and the start time, which a reused pid cannot repeat. The
steps use it (a scratch folder's owner, a webhook saved by a run still alive) and so does recovery
(kslab/cli/processes.py). Only the standard library is used."""
from __future__ import annotations

import os


def process_identity(pid: int) -> tuple[int, int] | None:
    """(owner uid, start time in clock ticks since boot): what a pid names, which a reused pid cannot repeat."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            start = int(fh.read().rsplit(")", 1)[1].split()[19])
        return os.stat(f"/proc/{pid}").st_uid, start
    except (OSError, ValueError, IndexError):
        return None
