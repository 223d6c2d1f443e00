"""tress.asyncio: asyncio's event loop with its scheduling core in Rust.

``EventLoop`` is asyncio's own Unix selector loop (its transports, sockets,
servers, TLS, subprocesses and signal handling, unchanged) with the parts
that every callback goes through replaced by ``tress._tress.LoopCore``
(``crates/tress-python/src/asyncio.rs`` over ``tress::event_loop``):

- timers live in one native heap: cancelling a ``TimerHandle`` takes it out
  at once (a cancelled one-hour ``wait_for`` lets go of its callback now),
  and no timer runs before its deadline (asyncio's runs up to the clock's
  resolution early);
- ``call_soon_threadsafe`` from another thread puts the handle in the
  core's inbox and writes the loop's eventfd only while the loop is parked
  in its selector (asyncio writes its self-pipe on every call);
- ``call_soon`` makes a native ``Handle`` (asyncio's methods and failure
  semantics) in a native ready queue, and each iteration runs natively,
  calling the selector and running the callbacks without a Python frame of
  its own. In debug mode the loop uses asyncio's Python handles and
  iteration instead, with their source tracebacks and slow-callback
  warnings.

Use it through ``tress.asyncio.run(main())``, ``new_event_loop()``,
``asyncio.Runner(loop_factory=tress.asyncio.new_event_loop)`` (3.11+), or
``install()``, which makes it the loop of ``asyncio.run`` and
``asyncio.new_event_loop``. Linux only (epoll and eventfd).

This is the first step of the native loop (docs/ARCHITECTURE.md, "The
core: tress::event_loop"): the selector's bookkeeping and the transports
are still asyncio's Python.
"""

import asyncio
import selectors
import sys
import threading
from asyncio import base_events, events
from asyncio.log import logger

from tress import futures as _futures
from tress._tress import Handle, TimerHandle
from tress._tress import LoopCore as _LoopCore

__all__ = ["EventLoop", "EventLoopPolicy", "Handle", "TimerHandle", "new_event_loop", "install", "run"]

_MAXIMUM_SELECT_TIMEOUT = base_events.MAXIMUM_SELECT_TIMEOUT


class _TimerHandle(events.TimerHandle):
    """asyncio's ``TimerHandle``, with the id of its native timer."""

    __slots__ = ("_tress_id",)


class EventLoop(asyncio.SelectorEventLoop):
    """asyncio's Unix selector event loop, scheduled by tress's native core
    (see the module's documentation)."""

    def __init__(self, selector=None):
        self._core = core = _LoopCore()
        core.bind(self)
        super().__init__(selector)
        # BaseEventLoop's own uses of its ready deque and timer list (append,
        # len, clear) go to the native core.
        self._ready = core.ready
        self._scheduled = core
        self._add_reader(core.waker_fd(), core.drain_waker)
        selector = self._selector
        if type(selector) is selectors.EpollSelector:
            # the core waits on its epoll descriptor and looks events up in
            # its map itself (a selector of another kind, or a subclass, is
            # called as asyncio calls it)
            core.use_epoll(selector._selector.fileno(), selector, selector._fd_to_key)
        core.set_native_clock(type(self).time is base_events.BaseEventLoop.time)
        self._native(not self._debug)

    # the native iterations read these two flags from the core
    @property
    def _stopping(self):
        return self._core.stopping

    @_stopping.setter
    def _stopping(self, value):
        self._core.stopping = value

    @property
    def _debug(self):
        return self._core.debug

    @_debug.setter
    def _debug(self, value):
        self._core.debug = value

    def _native(self, on):
        """Binds ``call_soon``, ``call_soon_threadsafe``, ``call_at``,
        ``call_later`` and ``create_task`` to the native core (handles made
        and run without Python frames), or, in debug mode, back to the
        Python methods (asyncio's handles, with their source tracebacks and
        checks)."""
        for name in ("call_soon", "call_soon_threadsafe", "call_at", "call_later", "create_task"):
            if on:
                setattr(self, name, getattr(self._core, name))
            else:
                self.__dict__.pop(name, None)

    def set_debug(self, enabled):
        super().set_debug(enabled)
        if "_core" in self.__dict__:
            self._native(not enabled)

    def close(self):
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        self._remove_reader(self._core.waker_fd())
        super().close()
        self._core.close()

    # -- scheduling ---------------------------------------------------------

    def call_at(self, when, callback, *args, context=None):
        """Like call_later(), but uses an absolute time.

        Absolute time corresponds to the event loop's time() method.
        """
        if when is None:
            raise TypeError("when cannot be None")
        self._check_closed()
        if self._debug:
            self._check_thread()
            self._check_callback(callback, "call_at")
        timer = _TimerHandle(when, callback, args, self, context)
        if timer._source_traceback:
            del timer._source_traceback[-1]
        timer._tress_id = self._core.schedule(when, timer)
        timer._scheduled = True
        return timer

    def _timer_handle_cancelled(self, handle):
        # asyncio's TimerHandle made in debug mode (a native one takes
        # itself out of the core's timers)
        if handle._scheduled:
            self._core.cancel(handle._tress_id)
            handle._scheduled = False

    def call_soon_threadsafe(self, callback, *args, context=None):
        """Like call_soon(), but thread-safe."""
        self._check_closed()
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        thread = self._thread_id
        if thread is not None and thread != threading.get_ident():
            # another thread, the loop running: through the inbox
            handle = events.Handle(callback, args, self, context)
            if handle._source_traceback:
                del handle._source_traceback[-1]
            self._core.send(handle)
            return handle
        handle = self._call_soon(callback, args, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]
        if thread is None:
            # the loop may be starting on another thread right now
            self._core.nudge()
        return handle

    def _add_reader(self, fd, callback, *args):
        if self._debug:
            return super()._add_reader(fd, callback, *args)
        self._check_closed()
        handle = self._core.make_handle(callback, *args)
        key = self._selector.get_map().get(fd)
        if key is None:
            self._selector.register(fd, selectors.EVENT_READ, (handle, None))
        else:
            mask, (reader, writer) = key.events, key.data
            self._selector.modify(fd, mask | selectors.EVENT_READ, (handle, writer))
            if reader is not None:
                reader.cancel()
        return handle

    def _add_writer(self, fd, callback, *args):
        if self._debug:
            return super()._add_writer(fd, callback, *args)
        self._check_closed()
        handle = self._core.make_handle(callback, *args)
        key = self._selector.get_map().get(fd)
        if key is None:
            self._selector.register(fd, selectors.EVENT_WRITE, (None, handle))
        else:
            mask, (reader, writer) = key.events, key.data
            self._selector.modify(fd, mask | selectors.EVENT_WRITE, (reader, handle))
            if writer is not None:
                writer.cancel()
        return handle

    def run_in_executor(self, executor, func, *args):
        if (
            executor is None
            and self._default_executor is None
            and not self._executor_shutdown_called
            and not self.is_closed()
        ):
            self._default_executor = _futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
        return super().run_in_executor(executor, func, *args)

    # -- running --------------------------------------------------------------

    def run_forever(self):
        """Run until stop() is called."""
        if self._debug or "_run_once" in self.__dict__:
            # asyncio's loop, calling _run_once (debug mode, or a test that
            # wraps it)
            return super().run_forever()
        if hasattr(base_events.BaseEventLoop, "_run_forever_setup"):  # 3.13+
            self._run_forever_setup()
            try:
                self._core.run_forever()
            finally:
                self._run_forever_cleanup()
            return
        # 3.11 and 3.12: BaseEventLoop.run_forever's set-up and clean-up,
        # with the native iterations between them
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        old_agen_hooks = sys.get_asyncgen_hooks()
        try:
            self._thread_id = threading.get_ident()
            sys.set_asyncgen_hooks(
                firstiter=self._asyncgen_firstiter_hook,
                finalizer=self._asyncgen_finalizer_hook,
            )
            events._set_running_loop(self)
            self._core.run_forever()
        finally:
            self._stopping = False
            self._thread_id = None
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_agen_hooks)

    # -- one iteration ------------------------------------------------------

    def _run_once(self):
        """Run one full iteration of the event loop: poll for I/O (blocking
        only when nothing is ready), make the I/O callbacks, what other
        threads sent and the due timers ready, then run what is ready at
        that point (natively, but in debug mode)."""
        if not self._debug:
            self._core.run_once()
            return
        core = self._core
        ready = self._ready
        if ready or self._stopping:
            timeout = 0
        else:
            when = core.next_when()
            if when is None:
                timeout = None
            else:
                timeout = when - self.time()
                if timeout > _MAXIMUM_SELECT_TIMEOUT:
                    timeout = _MAXIMUM_SELECT_TIMEOUT
                elif timeout < 0:
                    timeout = 0
        if timeout == 0:
            event_list = self._selector.select(0)
        elif core.park():
            try:
                event_list = self._selector.select(timeout)
            finally:
                core.unpark()
        else:
            event_list = self._selector.select(0)
        self._process_events(event_list)
        # Needed to break cycles when an exception occurs.
        event_list = None

        if core.pending():
            core.take(ready)
        core.expire(self.time(), ready)

        # Only the callbacks ready now run; those they schedule wait for the
        # next iteration (after another poll).
        ntodo = len(ready)
        for _ in range(ntodo):
            handle = ready.popleft()
            if handle._cancelled:
                continue
            try:
                self._current_handle = handle
                t0 = self.time()
                handle._run()
                dt = self.time() - t0
                if dt >= self.slow_callback_duration:
                    logger.warning("Executing %s took %.3f seconds", base_events._format_handle(handle), dt)
            finally:
                self._current_handle = None
        handle = None  # Needed to break cycles when an exception occurs.


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default policy, making tress's ``EventLoop``."""

    _loop_factory = EventLoop


def new_event_loop():
    """A new tress ``EventLoop``."""
    return EventLoop()


def install():
    """Makes tress's loop the one ``asyncio.run`` and
    ``asyncio.new_event_loop`` create (sets the event loop policy)."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None, **kwargs):
    """``asyncio.run(main)`` on a new tress ``EventLoop`` (on 3.12+ the
    same as ``asyncio.run(main, loop_factory=tress.asyncio.new_event_loop)``).
    """
    if kwargs:
        raise TypeError(f"run() got an unexpected keyword argument {next(iter(kwargs))!r}")
    if events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)


if sys.version_info < (3, 12):
    # 3.12's semantics in a forked child on 3.11 too: no current loop of the
    # parent's, no wake-up descriptor of the parent's loop
    def _after_fork_in_child():
        policy = events._event_loop_policy
        if isinstance(policy, events.BaseDefaultEventLoopPolicy):
            policy._local = events.BaseDefaultEventLoopPolicy._Local()
        events._set_running_loop(None)
        try:
            import signal

            signal.set_wakeup_fd(-1)
        except ValueError:  # not the main thread
            pass

    import os as _os

    _os.register_at_fork(after_in_child=_after_fork_in_child)


if sys.platform != "linux":  # pragma: no cover - the core is Linux-only
    raise ImportError("tress.asyncio needs Linux (epoll and eventfd)")
