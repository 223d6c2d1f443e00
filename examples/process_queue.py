"""Processes exchanging messages through queues: a producer process puts
numbers on a JoinableQueue, three consumer processes square them and put
the results on a Queue, the parent adds them up. task_done()/join() tell
the parent when every number has been handled; one None per consumer then
tells them to stop.

The one-line migration from the standard library: `import multiprocessing`
becomes `from tress import multiprocessing` (the queues are tress's, in
shared memory; Process is the stdlib's).
"""

from tress import multiprocessing

NUMBERS = 2000
CONSUMERS = 3


def produce(jobs):
    for n in range(NUMBERS):
        jobs.put(n, timeout=30)


def consume(jobs, results):
    while True:
        n = jobs.get(timeout=30)
        if n is not None:
            results.put((n, n * n), timeout=30)
        jobs.task_done()
        if n is None:
            return


if __name__ == "__main__":
    jobs = multiprocessing.JoinableQueue()
    results = multiprocessing.Queue()
    producer = multiprocessing.Process(target=produce, args=(jobs,))
    consumers = [
        multiprocessing.Process(target=consume, args=(jobs, results)) for _ in range(CONSUMERS)
    ]
    for p in [producer, *consumers]:
        p.start()
    squares = dict(results.get(timeout=30) for _ in range(NUMBERS))
    producer.join(30)
    for _ in consumers:
        jobs.put(None, timeout=30)
    jobs.join()  # every number and every None handled
    for p in consumers:
        p.join(30)
    total = sum(squares.values())
    expected = sum(n * n for n in range(NUMBERS))
    print(f"{len(squares)} numbers squared by {CONSUMERS} consumer processes: "
          f"sum {total} (expected {expected})")
