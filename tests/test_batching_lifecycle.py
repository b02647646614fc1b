"""Batcher and MessageBatcher lifecycles: Ctrl-C while blocked, garbage
collection (closed or just dropped), BaseException from user code, and the
drain at interpreter exit."""

from __future__ import annotations

import asyncio
import gc
import re
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import overdrive as od
from batching_support import (
    WAIT,
    Captured,
    Interrupted,
    f,
    fill_until_queued,
    held_batcher,
    interrupted_after,
    join_threads,
    run_python,
)
from overdrive.exceptions import ConfigurationError, InputTypeError

MODES = ["thread", "async-loop", "async-private-loop"]


def make_handler(body: Callable[[list[Any]], list[Any]], mode: str) -> Any:
    """``body`` as a sync handler (thread mode) or an ``async def`` one."""
    if mode == "thread":
        return body

    async def handler(xs: list[Any]) -> list[Any]:
        await asyncio.sleep(0)
        return body(xs)

    return handler


def call(
    b: od.Batcher[Any, Any],
    mode: str,
    steps: Callable[[Any], Awaitable[Any]],
    aclose: bool = False,
) -> Any:
    """Run ``steps(submit)`` where ``submit(item)`` awaits one result: from
    asyncio (async-loop; then ``aclose`` there if asked) or from this thread
    through futures."""
    if mode == "async-loop":

        async def main() -> Any:
            res = await steps(b.submit_async)
            if aclose:
                await b.aclose()
            return res

        return asyncio.run(main())

    async def via_futures(item: Any) -> Any:
        return b.submit(item).result(WAIT)

    return asyncio.run(steps(via_futures))


# --- 1. a producer blocked on a full queue gets Ctrl-C ----------------------------


def test_blocked_submit_is_interrupted_by_a_signal_and_the_batcher_stays_usable() -> None:
    b, rec, gate, first = held_batcher(max_queue=1)
    queued = b.submit(0)  # the queue is full now: the next submit blocks
    watchdog = threading.Timer(10.0, gate.set)  # without the fix, the submit never returns
    watchdog.start()
    try:
        with interrupted_after(0.1), pytest.raises(Interrupted):
            b.submit(1)
    finally:
        watchdog.cancel()
    assert b.stats()["submitted"] == 2, "the interrupted item was never queued"
    gate.set()
    assert first.result(WAIT) == f(-1)
    assert queued.result(WAIT) == f(0)
    assert b.submit(2).result(WAIT) == f(2)
    b.close()
    assert 1 not in rec.seen()


def test_blocked_put_is_interrupted_by_a_signal_and_the_batcher_stays_usable() -> None:
    gate = threading.Event()
    delivered: list[bytes] = []

    def sink(frame: bytes) -> None:
        assert gate.wait(WAIT)
        delivered.extend(od.decode_batch(frame))

    mb = od.MessageBatcher(sink, max_queue=1, max_pending_frames=1, max_batch_size=1)
    sent = fill_until_queued(mb, 1)
    submitted = mb.stats()["submitted"]
    watchdog = threading.Timer(10.0, gate.set)
    watchdog.start()
    try:
        with interrupted_after(0.1), pytest.raises(Interrupted):
            mb.put(b"blocked")
    finally:
        watchdog.cancel()
    assert mb.stats()["submitted"] == submitted, "the interrupted message was never queued"
    gate.set()
    mb.put(b"after")
    mb.close()
    assert delivered == [*sent, b"after"]


# --- 2. garbage collection -------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_closed_batcher_and_what_its_handler_captures_are_collected(mode: str) -> None:
    captured = Captured()
    captured_ref = weakref.ref(captured)
    handler = make_handler(lambda xs, _keep=captured: xs, mode)
    b: od.Batcher[Any, Any] = od.Batcher(handler)

    async def steps(submit: Any) -> Any:
        return await submit(1)

    assert call(b, mode, steps, aclose=True) == 1
    b.close()
    b_ref = weakref.ref(b)
    del b, handler, captured
    gc.collect()
    assert b_ref() is None
    assert captured_ref() is None


def test_closed_message_batcher_and_what_its_sink_captures_are_collected() -> None:
    captured = Captured()
    captured_ref = weakref.ref(captured)
    frames: list[bytes] = []
    mb = od.MessageBatcher(lambda fr, _keep=captured: frames.append(fr), on_error=print)
    mb.put(b"x")
    mb.close()
    assert [m for fr in frames for m in od.decode_batch(fr)] == [b"x"]
    mb_ref = weakref.ref(mb)
    del mb, captured
    gc.collect()
    assert mb_ref() is None
    assert captured_ref() is None


@pytest.mark.parametrize("mode", ["thread", "async-private-loop"])
def test_batcher_dropped_without_close_runs_what_it_accepted_then_stops(mode: str) -> None:
    """Dropping the last reference closes the batcher, like ThreadPoolExecutor:
    everything accepted still runs and resolves, then its threads stop and
    let go of the handler."""
    gate = threading.Event()
    captured = Captured()
    captured_ref = weakref.ref(captured)

    def body(xs: list[int], _keep: Captured = captured) -> list[int]:
        assert gate.wait(WAIT)
        return [f(x) for x in xs]

    name = f"dropped-{mode}"
    b: od.Batcher[int, int] = od.Batcher(make_handler(body, mode), max_batch_size=2, name=name)
    futs = [b.submit(i) for i in range(5)]
    b_ref = weakref.ref(b)
    del b, body, captured
    gc.collect()
    assert b_ref() is None
    gate.set()
    assert [fu.result(WAIT) for fu in futs] == [f(i) for i in range(5)]
    join_threads(f"overdrive-{name}")
    gc.collect()
    assert captured_ref() is None


def test_batcher_dropped_inside_its_event_loop_drains_there() -> None:
    async def handler(xs: list[int]) -> list[int]:
        await asyncio.sleep(0)
        return [f(x) for x in xs]

    async def main() -> list[int]:
        b: od.Batcher[int, int] = od.Batcher(handler, max_batch_size=2)
        futs = [b.submit_async(i) for i in range(5)]
        b_ref = weakref.ref(b)
        del b
        gc.collect()
        assert b_ref() is None
        return list(await asyncio.gather(*futs))

    assert asyncio.run(main()) == [f(i) for i in range(5)]


def test_message_batcher_dropped_without_close_delivers_then_stops() -> None:
    gate = threading.Event()
    captured = Captured()
    captured_ref = weakref.ref(captured)
    delivered: list[bytes] = []

    def sink(frame: bytes, _keep: Captured = captured) -> None:
        assert gate.wait(WAIT)
        delivered.extend(od.decode_batch(frame))

    mb = od.MessageBatcher(sink, max_batch_size=3, name="dropped-mb")
    sent = [b"m%d" % i for i in range(10)]
    for m in sent:
        mb.put(m)
    mb_ref = weakref.ref(mb)
    del mb, sink, captured
    gc.collect()
    assert mb_ref() is None
    gate.set()
    join_threads("overdrive-dropped-mb")
    assert delivered == sent
    gc.collect()
    assert captured_ref() is None


# --- 5. BaseException from the handler / sink -----------------------------------------


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("mode", MODES)
def test_base_exception_from_the_handler_fails_its_batch_and_the_dispatcher_lives(
    exc_type: type[BaseException], mode: str
) -> None:
    def body(xs: list[Any]) -> list[Any]:
        if "boom" in xs:
            raise exc_type("from the handler")
        return [f(x) for x in xs]

    b: od.Batcher[Any, Any] = od.Batcher(make_handler(body, mode), max_batch_size=1)

    async def steps(submit: Any) -> Any:
        with pytest.raises(exc_type, match="from the handler"):
            await submit("boom")
        return await submit(3)

    assert call(b, mode, steps) == f(3)
    b.close()
    s = b.stats()
    assert (s["completed"], s["failed"]) == (1, 1)


@pytest.mark.parametrize("exc_type", [SystemExit, KeyboardInterrupt])
def test_base_exception_from_the_sink_gives_up_its_frame_and_the_dispatcher_lives(
    exc_type: type[BaseException],
) -> None:
    delivered: list[bytes] = []
    given_up: list[tuple[list[bytes], BaseException]] = []

    def sink(frame: bytes) -> None:
        msgs = od.decode_batch(frame)
        if b"boom" in msgs:
            raise exc_type("from the sink")
        delivered.extend(msgs)

    mb = od.MessageBatcher(
        sink,
        max_batch_size=1,
        max_retries=3,
        on_error=lambda fr, e: given_up.append((od.decode_batch(fr), e)),
    )
    for m in [b"a", b"boom", b"c"]:
        mb.put(m)
    mb.close()
    assert delivered == [b"a", b"c"]
    assert [(ms, type(e)) for ms, e in given_up] == [([b"boom"], exc_type)]
    s = mb.stats()
    assert (s["retries"], s["given_up"], s["completed"], s["failed"]) == (0, 1, 2, 1)


def test_base_exception_from_on_error_is_logged_and_the_dispatcher_lives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    delivered: list[bytes] = []

    def sink(frame: bytes) -> None:
        msgs = od.decode_batch(frame)
        if b"bad" in msgs:
            raise ConnectionError("down")
        delivered.extend(msgs)

    def on_error(frame: bytes, exc: BaseException) -> None:
        raise KeyboardInterrupt("from on_error")

    mb = od.MessageBatcher(sink, max_batch_size=1, max_retries=0, on_error=on_error)
    for m in [b"bad", b"good"]:
        mb.put(m)
    mb.close()
    assert delivered == [b"good"]
    assert "on_error raised" in caplog.text


# --- 6. interpreter exit ---------------------------------------------------------------

SLOW_AT_EXIT = """
import logging, sys, threading
import overdrive as od

logging.basicConfig(stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
started = threading.Event()

def handler(xs):
    if xs != [0]:
        started.set()
        threading.Event().wait()  # stuck: still running at exit
    return xs

b = od.Batcher(handler, max_batch_size=1, atexit_timeout_s=0.2, name="slow-batcher")
assert b.submit(0).result(30) == 0
futs = [b.submit(i) for i in range(1, 10)]
assert started.wait(30)

sink_started = threading.Event()

def sink(frame):
    if od.decode_batch(frame) != [b"m0"]:
        sink_started.set()
        threading.Event().wait()

mb = od.MessageBatcher(sink, max_batch_size=1, atexit_timeout_s=0.0, name="slow-mb")
for i in range(5):
    mb.put(b"m%d" % i)
assert sink_started.wait(30)

fast = od.Batcher(lambda xs: xs, atexit_timeout_s=30, name="fast-batcher")
fast_futs = [fast.submit(i) for i in range(100)]
"""


def test_exit_gives_up_after_atexit_timeout_and_logs_what_it_abandoned() -> None:
    res = run_python(SLOW_AT_EXIT)
    warnings = sorted(ln for ln in res.stderr.splitlines() if "WARNING" in ln)
    assert len(warnings) == 2, res.stderr
    batcher, mb = warnings
    assert re.match(r"overdrive\.batching WARNING slow-batcher: abandoned 9 items ", batcher)
    assert re.search(r"atexit_timeout_s=0\.2\b", batcher)
    assert re.match(r"overdrive\.batching WARNING slow-mb: abandoned 4 messages ", mb)
    assert "fast-batcher" not in res.stderr


FAST_AT_EXIT = """
import asyncio, atexit, logging, sys, time

def report():  # registered first: runs after overdrive's drain
    failed = [type(f.exception()).__name__ for f in afuts if f.done() and f.exception()]
    sys.stdout.write("F%d %s\\n" % (len(failed), sorted(set(failed))))

atexit.register(report)
import overdrive as od

logging.basicConfig(stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")

def handler(xs):
    time.sleep(0.001)
    sys.stdout.write("B%d\\n" % len(xs))
    sys.stdout.flush()
    return xs

b = od.Batcher(handler, max_batch_size=8, atexit_timeout_s=60)
futs = [b.submit(i) for i in range(100)]
mb = od.MessageBatcher(
    lambda fr: sys.stdout.write("M%d\\n" % len(od.decode_batch(fr))), atexit_timeout_s=60
)
for i in range(1000):
    mb.put(b"m%d" % i)

async def ahandler(xs):
    await asyncio.sleep(0)
    sys.stdout.write("A%d\\n" % len(xs))
    sys.stdout.flush()
    return xs

ab = od.Batcher(ahandler, max_batch_size=8, atexit_timeout_s=60)

async def submit_and_leave():
    return [ab.submit_async(i) for i in range(50)]

# The loop ends at once: asyncio.run cancels the dispatcher task in the
# middle of the first batch (8 items: they fail with BatcherClosed).
afuts = asyncio.run(submit_and_leave())
# no close(): the atexit hook drains all three (the last on a private loop)
"""


def test_exit_drains_fast_batchers_completely_without_warnings() -> None:
    res = run_python(FAST_AT_EXIT)
    lines = res.stdout.split()
    assert sum(int(x[1:]) for x in lines if x.startswith("B")) == 100
    assert sum(int(x[1:]) for x in lines if x.startswith("M")) == 1000
    assert sum(int(x[1:]) for x in lines if x.startswith("A")) == 50 - 8
    assert "F8 ['BatcherClosed']" in res.stdout
    assert res.stderr == ""


@pytest.mark.parametrize(
    ("value", "error"),
    [
        (float("nan"), ConfigurationError),
        (float("inf"), ConfigurationError),
        (-1, ConfigurationError),
        (-0.5, ConfigurationError),
        (2**1100, ConfigurationError),
        ("10", InputTypeError),
        (None, InputTypeError),
        (True, InputTypeError),
    ],
    ids=["nan", "inf", "-1", "-0.5", "2**1100", "str", "None", "bool"],
)
def test_atexit_timeout_is_validated(value: Any, error: type[Exception]) -> None:
    with pytest.raises(error, match="atexit_timeout_s"):
        od.Batcher(lambda xs: xs, atexit_timeout_s=value)
    with pytest.raises(error, match="atexit_timeout_s"):
        od.batched(atexit_timeout_s=value)(lambda xs: xs)
    with pytest.raises(error, match="atexit_timeout_s"):
        od.MessageBatcher(print, atexit_timeout_s=value)
