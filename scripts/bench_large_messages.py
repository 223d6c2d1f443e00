"""Large messages between two processes: MiB/s of N messages of SIZE
bytes from one producer process to one
consumer (the parent), tress.multiprocessing.Queue vs multiprocessing.Queue.
The clock runs from the go signal to the last get; content is not checked
in the timed loop (the last one's length is checked after)."""
import multiprocessing as mp
import os
import sys
import time
import zlib

import tress.multiprocessing as tmp


def producer(q, go, payload_size, n):
    payload = os.urandom(1 << 20) * (payload_size >> 20) if payload_size >= 1 << 20 else os.urandom(payload_size)
    go.wait()
    for _ in range(n):
        q.put(payload)


def run(kind, size, n, rounds=3):
    ctx = mp.get_context("fork")
    best = 0.0
    for _ in range(rounds):
        q = tmp.Queue(ctx=ctx) if kind == "tress" else ctx.Queue()
        go = ctx.Event()
        p = ctx.Process(target=producer, args=(q, go, size, n))
        p.start()
        time.sleep(0.3 + size / 2e9)  # the producer makes its payload
        t = time.perf_counter()
        go.set()
        for _ in range(n):
            m = q.get(timeout=120)
        d = time.perf_counter() - t
        assert len(m) == size
        p.join(60)
        best = max(best, size * n / d / (1 << 20))
        del m
    return best


if __name__ == "__main__":
    for size, n in [(1 << 20, 400), (16 << 20, 40), (256 << 20, 4)]:
        for kind in sys.argv[1:] or ["tress", "multiprocessing"]:
            print(f"{kind:16} {size >> 20:4} MiB x {n:3}: {run(kind, size, n):8.0f} MiB/s", flush=True)
