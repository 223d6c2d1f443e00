"""The GIL in numbers: the same CPU-bound work (counting primes, pure
Python) on a thread pool and on a process pool of the same size. Threads
take turns holding the GIL, so they run the work one at a time; processes
each have their own interpreter and run it side by side.

The one-line migration from the standard library: `from concurrent import
futures` becomes `from tress import futures`.
"""

import os
import time

from tress import futures

TASKS = 8
LIMIT = 60_000


def count_primes(limit):
    count = 0
    for n in range(2, limit):
        d = 2
        while d * d <= n:
            if n % d == 0:
                break
            d += 1
        else:
            count += 1
    return count


def timed(pool_class, workers):
    start = time.perf_counter()
    with pool_class(max_workers=workers) as pool:
        results = list(pool.map(count_primes, [LIMIT] * TASKS, timeout=300))
    return results, time.perf_counter() - start


if __name__ == "__main__":
    workers = min(4, os.cpu_count() or 1)
    by_threads, t_threads = timed(futures.ThreadPoolExecutor, workers)
    by_processes, t_processes = timed(futures.ProcessPoolExecutor, workers)
    assert by_threads == by_processes == [count_primes(LIMIT)] * TASKS
    print(f"{TASKS} tasks counting {by_threads[0]} primes, {workers} workers: "
          f"threads {t_threads:.2f} s, processes {t_processes:.2f} s "
          f"({t_threads / t_processes:.1f}x: one thread at a time runs Python)")
