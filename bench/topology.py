"""Generated lab topologies for benchmarks: one host and N-1 members joined to it."""
from __future__ import annotations

import json


def topology(n: int) -> dict:
    clusters = [{"name": "host", "role": "host" if n > 1 else "none", "consoleHostPort": 30880}]
    clusters += [{"name": f"member{i}", "role": "member", "consoleHostPort": 30880 + i} for i in range(1, n)]
    return {
        "kslab:clusters": clusters,
        "kslab:joins": [{"member": c["name"], "host": "host"} for c in clusters[1:]],
    }


def as_config(doc: dict) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in doc.items()}
