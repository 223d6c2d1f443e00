"""The child-process side of test_mp_arena.py (importable by name, so its
targets pickle by reference under every start method)."""

import os
import time

CHILD = 30.0  # seconds: bound on a child's own waits


def arena_descriptors():
    """The memory files of tress arenas this process holds open."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:tress-arena"):
                n += 1
        except OSError:
            pass
    return n


def use_many(locks, events, sems, out):
    """Use what the parent made; report how many arena descriptors this
    child holds for them and what it found."""
    time.sleep(0.2)  # the parent drops its handles and allocates meanwhile
    ok = all(lk.acquire(timeout=CHILD) for lk in locks)
    for lk in locks:
        lk.release()
    files = {os.fstat(x.fileno())[1:3] for x in [*(lk._semlock for lk in locks),
                                                 *(e._event for e in events),
                                                 *(s._semlock for s in sems)]}
    out.put({
        "arenas": arena_descriptors(),
        "distinct": len(files),
        "locks": ok,
        "events": [e.is_set() for e in events],
        "sems": [s.get_value() for s in sems],
    })
