"""Producer-consumer through a Queue: a baker thread puts buns on a shelf
that holds 5, three eaters take them off.  task_done()/join() tell the baker
when every bun has been eaten; then one None per eater closes the shop.

The one-line migration from the standard library: `import queue` becomes
`from tress import queue`; the threads are the stdlib's.
"""

import sys
import threading
import time

from tress import queue

BUNS = 30
EATERS = 3

shelf = queue.Queue(maxsize=5)  # the baker waits while the shelf is full
eaten = {}  # eater name -> the buns it ate


def baker():
    for bun in range(BUNS):
        shelf.put(bun, timeout=30)
    shelf.join()  # returns once every bun put so far is task_done()
    print(f"baker: all {BUNS} buns eaten, closing")
    for _ in range(EATERS):
        shelf.put(None, timeout=30)  # closing time, once for each eater


def eater(name):
    mine = eaten[name] = []
    while (bun := shelf.get(timeout=30)) is not None:
        time.sleep(0.001)  # eating takes a moment
        mine.append(bun)
        shelf.task_done()
    shelf.task_done()  # the None too


def main():
    threads = [threading.Thread(target=baker)]
    threads += [threading.Thread(target=eater, args=(f"eater-{i}",)) for i in range(EATERS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        if t.is_alive():
            sys.exit(f"{t.name} did not finish")
    elapsed = time.perf_counter() - start
    buns = sorted(bun for mine in eaten.values() for bun in mine)
    shares = ", ".join(f"{name} {len(mine)}" for name, mine in sorted(eaten.items()))
    print(f"{BUNS} buns baked, {len(buns)} eaten ({shares}) in {elapsed:.3f} s")
    assert buns == list(range(BUNS)), "a bun was lost or eaten twice"
    assert shelf.empty()


if __name__ == "__main__":
    main()
