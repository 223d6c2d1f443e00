"""A shared counter guarded by a Lock: 8 threads x 20 000 increments.

The one-line migration from the standard library: `import threading`
becomes `from tress import threading`; threading.Thread still comes from
the stdlib (tress.threading re-exports it).
"""

import sys
import time

from tress import threading

THREADS = 8
INCREMENTS = 20_000

counter = 0
lock = threading.Lock()


def work():
    global counter
    for i in range(INCREMENTS):
        with lock:
            value = counter
            if i % 1000 == 0:
                time.sleep(0)  # invite a thread switch inside the critical section
            counter = value + 1


def main():
    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
        if t.is_alive():
            sys.exit(f"{t.name} did not finish")
    elapsed = time.perf_counter() - start
    expected = THREADS * INCREMENTS
    print(f"counter = {counter} (expected {expected}) in {elapsed:.3f} s")
    assert counter == expected, "lost updates: the lock did not exclude"
    assert not lock.locked()


if __name__ == "__main__":
    main()
