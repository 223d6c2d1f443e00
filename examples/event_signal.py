"""Threads coordinated by Events: workers wait for a start signal, report
ready on their own Event, and the main thread waits for all of them."""

import sys
import time

from tress import threading

WORKERS = 5

start = threading.Event()
ready = [threading.Event() for _ in range(WORKERS)]
results = [None] * WORKERS


def worker(i):
    if not start.wait(timeout=30):  # every worker blocks until the signal
        return
    results[i] = i * i
    ready[i].set()  # tell the main thread this one is done


def main():
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    assert not any(ev.is_set() for ev in ready)  # nobody ran before the signal
    t0 = time.perf_counter()
    start.set()
    for i, ev in enumerate(ready):
        if not ev.wait(timeout=30):
            sys.exit(f"worker {i} never signalled")
    for t in threads:
        t.join(30)
    elapsed = time.perf_counter() - t0
    print(f"{WORKERS} workers released by one Event, all done in {elapsed * 1000:.1f} ms")
    print("results:", results)
    assert results == [i * i for i in range(WORKERS)]


if __name__ == "__main__":
    main()
