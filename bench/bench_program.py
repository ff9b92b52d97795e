"""Program evaluation time and memory under mocks (no engine): how the program itself scales.

    venv/bin/python -m bench.bench_program
"""
from __future__ import annotations

import statistics
import time
import tracemalloc

from bench.topology import as_config, topology
from tests.support.mock_run import run_program, stack_config


def measure(config: dict[str, str], repeat: int = 3) -> tuple[float, float, int]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run = run_program(config)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    run_program(config)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(times), peak / 2**20, len(run.resources)


def main() -> None:
    print(f"{'topology':<16}{'resources':>10}{'eval (median s)':>18}{'peak MiB':>10}")
    for name in ("standalone", "host-member", "dual-host"):
        t, mem, count = measure(stack_config(name))
        print(f"{name:<16}{count:>10}{t:>18.3f}{mem:>10.1f}")
    for n in (1, 3, 10, 30):
        t, mem, count = measure(as_config(topology(n)))
        print(f"{f'generated-{n}':<16}{count:>10}{t:>18.3f}{mem:>10.1f}")


if __name__ == "__main__":
    main()
