"""pytest wiring for the live-cluster harness (tests/harness)."""

import sys
from pathlib import Path

# Make `import live_cluster` work whatever pytest's import mode or rootdir is.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "live: starts real etcd + kube-apiserver processes (binaries from tools/kube/build.sh)",
    )
