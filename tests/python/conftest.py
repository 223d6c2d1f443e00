"""Fixtures of the binding tests (tests/python): ``children``, child
processes that are always reaped."""

import pytest


@pytest.fixture
def children():
    """start(ctx, target, *args) -> a started daemon Process of context
    ``ctx``; whatever is still alive at teardown (a failed test) is killed
    and reaped."""
    started = []

    def start(ctx, target, *args):
        p = ctx.Process(target=target, args=args, daemon=True)
        p.start()
        started.append(p)
        return p

    yield start
    for p in started:
        if p._closed:
            continue  # reaped and closed by the test
        if p.is_alive():
            p.kill()
        p.join(5)
