"""A Semaphore limiting concurrency: 12 jobs, at most 3 at a time (think:
a connection pool of 3).  Prints and checks the peak concurrency."""

import sys
import time

from tress import threading

LIMIT = 3
JOBS = 12

slots = threading.BoundedSemaphore(LIMIT)
guard = threading.Lock()
active = 0
peak = 0
done = []


def job(n):
    global active, peak
    with slots:  # at most LIMIT threads get past this line at once
        with guard:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)  # the "IO" the semaphore is rationing
        with guard:
            active -= 1
            done.append(n)


def main():
    threads = [threading.Thread(target=job, args=(n,)) for n in range(JOBS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        if t.is_alive():
            sys.exit(f"{t.name} did not finish")
    elapsed = time.perf_counter() - t0
    print(f"{JOBS} jobs, limit {LIMIT}: peak concurrency {peak}, {elapsed:.2f} s")
    assert sorted(done) == list(range(JOBS))
    assert 1 <= peak <= LIMIT, "the semaphore let too many in"


if __name__ == "__main__":
    main()
