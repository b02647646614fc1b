"""BatchFuture: the awaitable of ``Batcher.submit_async`` behaves like an
``asyncio.Future`` for everything asyncio and user code do with one, and a
batch settled at once (``_core._settle`` as one loop callback) gives each
awaiting task exactly what per-future ``set_result`` would."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import sys
import threading
import weakref
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import overdrive as od
from overdrive import _core
from overdrive._core import BatchFuture
from overdrive.exceptions import QueueFull

WAIT = 30.0

# --- a differential model: BatchFuture vs asyncio.Future ---------------------

# Operations on one future; each returns what a caller would observe.
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2)),
        st.tuples(st.just("remove"), st.integers(0, 2)),
        st.tuples(st.just("result"), st.integers()),
        st.tuples(st.just("exception"), st.sampled_from(["ValueError", "KeyError"])),
        st.tuples(st.just("cancel"), st.sampled_from([None, "why"])),
        st.tuples(st.just("query"), st.just(0)),
        st.tuples(st.just("spin"), st.just(0)),
    ),
    max_size=25,
)


def _observe(fut: Any) -> tuple[Any, ...]:
    def outcome(call: Any) -> Any:
        try:
            return ("ok", call())
        except BaseException as e:  # the exception type and text are the observation
            return ("raise", type(e).__name__, str(e.args[0]) if e.args else None)

    return (
        fut.done(),
        fut.cancelled(),
        outcome(fut.result),
        outcome(lambda: repr(fut.exception())),
    )


async def _drive(fut: Any, ops: list[tuple[str, Any]]) -> list[Any]:
    seen: list[Any] = []
    callbacks = [lambda f, i=i: seen.append(("cb", i, f.done(), f.cancelled())) for i in range(3)]
    for op, arg in ops:
        if op == "add":
            fut.add_done_callback(callbacks[arg])
        elif op == "remove":
            seen.append(("removed", fut.remove_done_callback(callbacks[arg])))
        elif op == "result":
            try:
                fut.set_result(arg)
                seen.append("set")
            except asyncio.InvalidStateError:
                seen.append("invalid")
        elif op == "exception":
            try:
                fut.set_exception(ValueError if arg == "ValueError" else KeyError("k"))
                seen.append("set")
            except asyncio.InvalidStateError:
                seen.append("invalid")
        elif op == "cancel":
            seen.append(("cancel", fut.cancel(arg)))
        elif op == "query":
            seen.append(_observe(fut))
        else:
            await asyncio.sleep(0)
    await asyncio.sleep(0)
    seen.append(_observe(fut))
    return seen


@settings(max_examples=150, deadline=None)
@given(ops=OPS)
def test_batch_future_matches_asyncio_future(ops: list[tuple[str, Any]]) -> None:
    async def both() -> tuple[list[Any], list[Any]]:
        loop = asyncio.get_running_loop()
        ours = await _drive(BatchFuture(loop=loop), ops)
        theirs = await _drive(loop.create_future(), ops)
        return ours, theirs

    ours, theirs = asyncio.run(both())
    assert ours == theirs


@settings(max_examples=60, deadline=None)
@given(
    outcomes=st.lists(
        st.one_of(st.integers(), st.text(max_size=5), st.just("!err")), min_size=1, max_size=40
    ),
    cancel=st.sets(st.integers(0, 39)),
)
def test_a_settled_batch_wakes_tasks_like_per_future_set_result(
    outcomes: list[Any], cancel: set[int]
) -> None:
    """Tasks awaiting a batch settled by one ``_settle`` callback see what
    tasks awaiting asyncio futures settled one by one see, in the same order,
    and each finds the whole batch already done."""
    values = [ValueError(o) if o == "!err" else o for o in outcomes]

    async def run(make: Any, settle: Any) -> list[Any]:
        loop = asyncio.get_running_loop()
        futs = [make(loop) for _ in values]
        log: list[Any] = []

        async def waiter(i: int) -> None:
            try:
                log.append((i, "ok", await futs[i], all(f.done() for f in futs)))
            except asyncio.CancelledError:
                log.append((i, "cancelled"))
            except ValueError as e:
                log.append((i, "err", str(e), all(f.done() for f in futs)))

        tasks = [loop.create_task(waiter(i)) for i in range(len(futs))]
        await asyncio.sleep(0)
        for i in cancel:
            if i < len(futs):
                futs[i].cancel()
        settle(loop, futs, values)
        await asyncio.gather(*tasks)
        return log

    def batch_settle(loop: Any, futs: list[Any], vals: list[Any]) -> None:
        loop.call_soon(_core._settle, futs, vals)

    def one_by_one(loop: Any, futs: list[Any], vals: list[Any]) -> None:
        def go() -> None:
            for f, v in zip(futs, vals, strict=True):
                if f.done():
                    continue
                if isinstance(v, BaseException):
                    f.set_exception(v)
                else:
                    f.set_result(v)

        loop.call_soon(go)

    ours = asyncio.run(run(lambda lp: BatchFuture(loop=lp), batch_settle))
    theirs = asyncio.run(run(lambda lp: lp.create_future(), one_by_one))
    assert ours == theirs


# --- asyncio's own helpers accept it ---------------------------------------------


class Gate:
    """An identity handler that waits for ``open`` before each batch."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.seen: list[list[Any]] = []

    def __call__(self, items: list[Any]) -> list[Any]:
        self.open.wait(WAIT)
        self.seen.append(list(items))
        return [x * 2 for x in items]


def test_is_an_asyncio_future_for_asyncio() -> None:
    async def main() -> None:
        with od.Batcher(lambda xs: [x + 1 for x in xs], max_wait_ms=1) as b:
            fut = b.submit_async(1)
            assert isinstance(fut, BatchFuture)
            assert asyncio.isfuture(fut)
            assert fut.get_loop() is asyncio.get_running_loop()
            assert await fut == 2
            assert fut.done() and fut.result() == 2 and fut.exception() is None
            # gather, wait, as_completed, shield and ensure_future take it as is.
            futs = [b.submit_async(i) for i in range(10)]
            assert await asyncio.gather(*futs) == list(range(1, 11))
            done, pending = await asyncio.wait([b.submit_async(i) for i in range(5)])
            assert sorted(f.result() for f in done) == [1, 2, 3, 4, 5] and not pending
            got = [await f for f in asyncio.as_completed([b.submit_async(i) for i in range(4)])]
            assert sorted(got) == [1, 2, 3, 4]
            assert await asyncio.shield(b.submit_async(41)) == 42
            f2 = b.submit_async(0)
            assert asyncio.ensure_future(f2) is f2
            await f2

    asyncio.run(main())


def test_wait_for_timeout_cancels_the_item() -> None:
    gate = Gate()

    async def main() -> None:
        b = od.Batcher(gate, max_batch_size=1, max_wait_ms=1)
        first = b.submit_async(1)  # occupies the handler
        late = b.submit_async(2)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(late, timeout=0.05)
        assert late.cancelled()
        gate.open.set()
        assert await first == 2
        await b.aclose()

    asyncio.run(main())
    assert [2] not in gate.seen  # the cancelled item never reached the handler


def test_cancelling_the_awaiting_task_cancels_the_future() -> None:
    gate = Gate()

    async def main() -> None:
        b = od.Batcher(gate, max_batch_size=1, max_wait_ms=1)
        first = b.submit_async(1)
        fut = b.submit_async(2)
        task = asyncio.get_running_loop().create_task(_await(fut))
        await asyncio.sleep(0.01)
        task.cancel("stop")
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fut.cancelled()
        with pytest.raises(asyncio.CancelledError):
            fut.result()
        gate.open.set()
        await first
        await b.aclose()

    asyncio.run(main())


async def _await(fut: Any) -> Any:
    return await fut


def test_gather_propagates_a_cancelled_child_message() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a, c = BatchFuture(loop=loop), BatchFuture(loop=loop)
        g = asyncio.gather(a, c)
        a.cancel("because")
        with pytest.raises(asyncio.CancelledError) as info:
            await g
        assert "because" in str(info.value)

    asyncio.run(main())


def test_callbacks_run_in_their_context_with_the_future() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        futs = [BatchFuture(loop=loop) for _ in range(3)]
        seen: list[Any] = []
        for i, f in enumerate(futs):
            var.set(f"ctx{i}")
            f.add_done_callback(lambda fut, i=i: seen.append((i, var.get(), fut.result())))
        explicit = contextvars.copy_context()
        explicit.run(var.set, "explicit")
        futs[0].add_done_callback(lambda fut: seen.append(("e", var.get())), context=explicit)
        var.set("after")
        loop.call_soon(_core._settle, futs, [10, 11, 12])
        await asyncio.sleep(0.01)
        # A callback added once done is scheduled, as asyncio does.
        futs[1].add_done_callback(lambda fut: seen.append(("late", fut.result())))
        await asyncio.sleep(0.01)
        return seen

    seen = asyncio.run(main())
    assert seen == [
        (0, "ctx0", 10),
        ("e", "explicit"),
        (1, "ctx1", 11),
        (2, "ctx2", 12),
        ("late", 11),
    ]


def test_a_failing_callback_goes_to_the_exception_handler_and_the_rest_still_run() -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        loop = asyncio.get_running_loop()
        reported: list[Any] = []
        loop.set_exception_handler(lambda _lp, ctx: reported.append(ctx))
        futs = [BatchFuture(loop=loop) for _ in range(2)]
        seen: list[Any] = []

        def bad(_f: Any) -> None:
            raise RuntimeError("callback failed")

        futs[0].add_done_callback(bad)
        futs[0].add_done_callback(lambda f: seen.append(f.result()))
        futs[1].add_done_callback(lambda f: seen.append(f.result()))
        loop.call_soon(_core._settle, futs, ["a", "b"])
        await asyncio.sleep(0.01)
        return seen, reported

    seen, reported = asyncio.run(main())
    assert seen == ["a", "b"]
    assert len(reported) == 1
    assert isinstance(reported[0]["exception"], RuntimeError)
    assert isinstance(reported[0]["future"], BatchFuture)


def test_keyboard_interrupt_in_a_callback_propagates_and_the_rest_still_run() -> None:
    loop = asyncio.new_event_loop()
    try:
        futs = [BatchFuture(loop=loop) for _ in range(3)]
        seen: list[Any] = []

        def interrupt(_f: Any) -> None:
            raise KeyboardInterrupt

        futs[0].add_done_callback(interrupt)
        futs[0].add_done_callback(lambda f: seen.append(f.result()))
        futs[1].add_done_callback(lambda f: seen.append(f.result()))
        futs[2].add_done_callback(lambda f: seen.append(f.result()))
        loop.call_soon(_core._settle, futs, [1, 2, 3])
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(asyncio.sleep(0.01))
        loop.run_until_complete(asyncio.sleep(0.01))
        assert seen == [1, 2, 3]
    finally:
        loop.close()


def test_settling_on_a_closed_loop_records_the_outcomes() -> None:
    loop = asyncio.new_event_loop()
    futs = [BatchFuture(loop=loop) for _ in range(2)]
    loop.close()
    boom = ValueError("x")
    _core._settle(futs, [5, boom])  # on a closed loop: outcomes recorded, nothing run
    assert futs[0].result() == 5
    assert futs[1].exception() is boom


def test_results_reach_a_loop_that_closed_before_the_batch_finished() -> None:
    gate = Gate()
    b = od.Batcher(gate, max_wait_ms=1)

    async def submit() -> Any:
        return b.submit_async(3)

    fut = asyncio.run(submit())  # asyncio.run closes its loop on return
    gate.open.set()
    b.close()
    assert fut.result() == 6


def test_pending_and_cancelled_states_raise_like_asyncio() -> None:
    async def main() -> None:
        fut = BatchFuture()
        with pytest.raises(asyncio.InvalidStateError):
            fut.result()
        with pytest.raises(asyncio.InvalidStateError):
            fut.exception()
        assert "pending" in repr(fut)
        assert fut.cancel("m") is True
        assert fut.cancel() is False
        with pytest.raises(asyncio.CancelledError, match="m"):
            fut.exception()
        assert "cancelled" in repr(fut)
        with pytest.raises(asyncio.InvalidStateError):
            fut.set_result(1)
        with pytest.raises(TypeError):
            BatchFuture().set_exception(StopIteration())
        with pytest.raises(TypeError):
            BatchFuture().set_exception(3)

    asyncio.run(main())


def test_needs_a_loop_outside_a_coroutine() -> None:
    with pytest.raises(RuntimeError):
        BatchFuture()


def test_a_future_in_a_cycle_is_collected() -> None:
    async def main() -> weakref.ref[Any]:
        fut = BatchFuture()

        class Holder:
            pass

        h = Holder()
        h.fut = fut  # type: ignore[attr-defined]
        fut.add_done_callback(lambda _f, h=h: h)  # fut -> callback -> h -> fut
        return weakref.ref(h)

    ref = asyncio.run(main())
    gc.collect()
    assert ref() is None


# --- regressions from review ---------------------------------------------------------


def test_a_full_block_queue_gives_a_future_and_honours_block_timeout() -> None:
    gate = Gate()

    async def main() -> None:
        b = od.Batcher(gate, max_queue=1, max_batch_size=1, max_wait_ms=0, block_timeout=0.2)
        first = b.submit_async(1)
        await asyncio.sleep(0.05)  # item 1 is in the handler
        queued = b.submit_async(2)
        waiting = b.submit_async(3)  # the queue is full
        assert asyncio.isfuture(waiting)
        with pytest.raises(QueueFull):
            await asyncio.wait_for(waiting, WAIT)  # QueueFull after block_timeout, no recursion
        gate.open.set()
        assert await first == 2
        assert await queued == 4
        done, _ = await asyncio.wait([b.submit_async(5)])  # a future: asyncio.wait takes it
        assert [f.result() for f in done] == [10]
        await b.aclose()

    asyncio.run(main())


def _traceback_length(e: BaseException) -> int:
    n, tb = 0, e.__traceback__
    while tb is not None:
        n, tb = n + 1, tb.tb_next
    return n


def test_a_shared_exception_keeps_its_own_traceback() -> None:
    """One exception failing a batch of 30 awaiting tasks: each raise restores
    the traceback it had when set, as asyncio does, so it never chains every
    awaiting task's frames (and locals)."""

    async def run(make: Any, settle: Any) -> int:
        loop = asyncio.get_running_loop()
        err = ValueError("shared")
        futs = [make(loop) for _ in range(30)]

        async def waiter(f: Any) -> None:
            with pytest.raises(ValueError, match="shared"):
                await f

        tasks = [loop.create_task(waiter(f)) for f in futs]
        await asyncio.sleep(0)
        settle(loop, futs, err)
        await asyncio.gather(*tasks)
        return _traceback_length(err)

    def batch(loop: Any, futs: list[Any], err: BaseException) -> None:
        loop.call_soon(_core._settle, futs, [err] * len(futs))

    def each(loop: Any, futs: list[Any], err: BaseException) -> None:
        loop.call_soon(lambda: [f.set_exception(err) for f in futs])

    ours = asyncio.run(run(lambda lp: BatchFuture(loop=lp), batch))
    theirs = asyncio.run(run(lambda lp: lp.create_future(), each))
    assert ours == theirs <= 1


def test_remove_done_callback_survives_a_raising_eq_and_matches_by_identity() -> None:
    class RaisingEq:
        def __eq__(self, other: object) -> bool:
            raise ZeroDivisionError("eq")

        __hash__ = object.__hash__

    class NeverEqual:
        def __call__(self, _f: Any) -> None:
            pass

        def __eq__(self, other: object) -> bool:
            return False

        __hash__ = object.__hash__

    async def main() -> None:
        loop = asyncio.get_running_loop()
        fut = BatchFuture(loop=loop)
        task = loop.create_task(_await(fut))
        await asyncio.sleep(0)  # the task waits on fut: its wake-up is registered
        with pytest.raises(ZeroDivisionError):
            fut.remove_done_callback(RaisingEq())
        ne = NeverEqual()
        fut.add_done_callback(ne)
        assert fut.remove_done_callback(ne) == 1
        loop.call_soon(_core._settle, [fut], [7])
        assert await asyncio.wait_for(task, WAIT) == 7  # the wake-up was kept

    asyncio.run(main())


def test_system_exit_from_the_exception_handler_stops_the_loop_like_asyncio() -> None:
    def run(kind: str) -> str:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda _lp, _ctx: sys.exit(3))
        fut = BatchFuture(loop=loop) if kind == "ours" else loop.create_future()

        def bad(_f: Any) -> None:
            raise ValueError("callback failed")

        fut.add_done_callback(bad)
        if kind == "ours":
            loop.call_soon(_core._settle, [fut], [1])
        else:
            loop.call_soon(fut.set_result, 1)
        try:
            loop.run_until_complete(asyncio.sleep(0.05))
            return "kept running"
        except SystemExit as e:
            return f"SystemExit {e.code}"
        finally:
            for t in asyncio.all_tasks(loop):
                t.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    assert run("ours") == run("asyncio") == "SystemExit 3"


def test_settle_called_inside_a_task_schedules_the_wake_ups() -> None:
    async def main() -> Any:
        loop = asyncio.get_running_loop()
        fut = BatchFuture(loop=loop)
        task = loop.create_task(_await(fut))
        await asyncio.sleep(0)
        _core._settle([fut], [1])  # inline, inside the main task: nothing may run here
        return await asyncio.wait_for(task, WAIT)

    assert asyncio.run(main()) == 1
