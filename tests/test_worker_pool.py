"""WorkerPool: ThreadPoolExecutor compatibility, priorities, backpressure,
autoscaling, shutdown, asyncio, interpreter exit and fork."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures as cf
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import overdrive as od
from isolated import run_isolated
from overdrive.exceptions import (
    ConfigurationError,
    InputTypeError,
    WorkerPoolShutdown,
    WorkerQueueFull,
)


@pytest.fixture
def pool() -> Iterator[od.WorkerPool]:
    p = od.WorkerPool(min_workers=2, max_workers=4)
    yield p
    p.shutdown(wait=True)


def _blocked_single_worker(**kwargs: object) -> tuple[od.WorkerPool, threading.Event]:
    """A one-worker pool whose worker is parked on an event, so tasks queue up."""
    p = od.WorkerPool(min_workers=1, max_workers=1, **kwargs)  # type: ignore[arg-type]
    gate = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        gate.wait(30)

    p.submit(block)
    assert started.wait(10)
    return p, gate


def test_submit_returns_a_concurrent_future(pool: od.WorkerPool) -> None:
    fut = pool.submit(pow, 2, 10)
    assert isinstance(fut, cf.Future)
    assert fut.result(timeout=10) == 1024
    assert pool.submit(sorted, [3, 1, 2], reverse=True).result(10) == [3, 2, 1]


def test_same_results_as_thread_pool_executor(pool: od.WorkerPool) -> None:
    data = list(range(-50, 50))
    with cf.ThreadPoolExecutor(4) as tpe:
        want = list(tpe.map(abs, data))
        want2 = list(tpe.map(pow, data, [2] * len(data)))
    assert list(pool.map(abs, data)) == want
    assert list(pool.map(pow, data, [2] * len(data))) == want2


def test_a_raising_task_fails_only_its_future(pool: od.WorkerPool) -> None:
    def maybe(i: int) -> int:
        if i == 3:
            raise ValueError(f"bad {i}")
        return i

    futs = [pool.submit(maybe, i) for i in range(8)]
    cf.wait(futs, timeout=10)
    for i, f in enumerate(futs):
        if i == 3:
            assert isinstance(f.exception(), ValueError)
            with pytest.raises(ValueError, match="bad 3"):
                f.result()
        else:
            assert f.result() == i


def test_context_manager_runs_everything_then_refuses() -> None:
    done = []
    with od.WorkerPool(min_workers=1, max_workers=2) as p:
        for i in range(50):
            p.submit(done.append, i)
    assert sorted(done) == list(range(50))
    with pytest.raises(WorkerPoolShutdown):
        p.submit(print)
    assert isinstance(WorkerPoolShutdown("x"), RuntimeError)


def test_priorities_then_fifo_without_aging() -> None:
    p, gate = _blocked_single_worker(aging_s=None)
    order: list[tuple[int, int]] = []
    prios = [0, 5, -1, 5, 0, 9, -1, 0]
    futs = [p.submit(order.append, (pr, i), priority=pr) for i, pr in enumerate(prios)]
    gate.set()
    cf.wait(futs, timeout=10)
    assert order == sorted(order, key=lambda t: (-t[0], t[1]))
    p.shutdown()


@settings(max_examples=15, deadline=None)
@given(prios=st.lists(st.integers(-3, 3), min_size=1, max_size=40))
def test_priority_order_property(prios: list[int]) -> None:
    p, gate = _blocked_single_worker(aging_s=None, help_on_wait=False)
    order: list[int] = []
    futs = [p.submit(order.append, i, priority=pr) for i, pr in enumerate(prios)]
    gate.set()
    cf.wait(futs, timeout=10)
    p.shutdown()
    assert order == sorted(range(len(prios)), key=lambda i: (-prios[i], i))


def test_aging_lets_old_tasks_overtake() -> None:
    p, gate = _blocked_single_worker(aging_s=0.02)
    order: list[str] = []
    old = p.submit(order.append, "old-low", priority=0)
    time.sleep(0.1)  # five aging steps: "old" is now worth priority 5
    new = p.submit(order.append, "new-high", priority=2)
    gate.set()
    cf.wait([old, new], timeout=10)
    p.shutdown()
    assert order == ["old-low", "new-high"]


def test_bounded_queue_rejects_or_blocks() -> None:
    p, gate = _blocked_single_worker(max_queue=2, on_full="reject")
    p.submit(int)
    p.submit(int)
    with pytest.raises(WorkerQueueFull, match="max_queue=2"):
        p.submit(int)
    gate.set()
    p.shutdown()
    assert p.stats()["rejected"] == 1

    q, gate2 = _blocked_single_worker(max_queue=1, on_full="block", full_timeout_s=0.05)
    q.submit(int)
    with pytest.raises(WorkerQueueFull):
        q.submit(int)  # waited 50 ms for room, then gave up
    gate2.set()
    q.shutdown()

    # Without a timeout a submit waits (GIL released) until a worker makes room.
    w, gate3 = _blocked_single_worker(max_queue=1, on_full="block")
    first = w.submit(int, "6")
    threading.Timer(0.05, gate3.set).start()
    second = w.submit(int, "7")
    assert (first.result(10), second.result(10)) == (6, 7)
    w.shutdown()


def test_shutdown_runs_pending_tasks() -> None:
    p, gate = _blocked_single_worker()
    futs = [p.submit(int, str(i)) for i in range(100)]
    threading.Timer(0.05, gate.set).start()
    p.shutdown(wait=True)
    assert [f.result(0) for f in futs] == list(range(100))
    assert p.stats()["workers"] == 0


def test_shutdown_cancel_futures() -> None:
    p, gate = _blocked_single_worker()
    futs = [p.submit(int, str(i)) for i in range(10)]
    p.shutdown(wait=False, cancel_futures=True)
    assert all(f.cancelled() for f in futs)
    gate.set()
    p.shutdown(wait=True)
    s = p.stats()
    assert s["cancelled"] == 10
    assert s["completed"] == 1


def test_cancelled_future_does_not_run() -> None:
    p, gate = _blocked_single_worker(help_on_wait=False)
    ran: list[int] = []
    f = p.submit(ran.append, 1)
    assert f.cancel()
    g = p.submit(ran.append, 2)
    gate.set()
    assert g.result(10) is None
    p.shutdown()
    assert ran == [2]


def test_help_on_wait_runs_a_queued_task_on_the_caller() -> None:
    p, gate = _blocked_single_worker()
    f = p.submit(threading.get_ident)
    assert f.result(10) == threading.get_ident()  # the only worker is still blocked
    gate.set()
    p.shutdown()

    q, gate2 = _blocked_single_worker(help_on_wait=False)
    g = q.submit(threading.get_ident)
    with pytest.raises(cf.TimeoutError):
        g.result(timeout=0.05)
    gate2.set()
    assert g.result(10) != threading.get_ident()
    q.shutdown()


def test_nested_waits_do_not_deadlock_a_full_pool() -> None:
    with od.WorkerPool(min_workers=1, max_workers=1) as p:

        def outer() -> int:
            return p.submit(lambda: 41).result(10) + 1

        assert p.submit(outer).result(10) == 42


def test_asyncio_submit_async_and_wrap_future(pool: od.WorkerPool) -> None:
    async def main() -> list[int]:
        a = await pool.submit_async(sum, [1, 2, 3])
        b = await asyncio.wrap_future(pool.submit(max, 4, 9))
        many = await asyncio.gather(*(pool.submit_async(abs, -i) for i in range(20)))
        return [a, b, *many]

    assert asyncio.run(main()) == [6, 9, *range(20)]


def test_hundred_thousand_mixed_priority_tasks_counts_exact() -> None:
    n, batch = 100_000, 5_000  # in batches, so 100k futures never live at once
    counts: collections.Counter[int] = collections.Counter()
    lock = threading.Lock()

    def task(pr: int) -> int:
        with lock:
            counts[pr] += 1
        return pr

    total = 0
    with od.WorkerPool(min_workers=2, max_workers=4) as p:
        for start in range(0, n, batch):
            futs = [p.submit(task, i % 5, priority=i % 5) for i in range(start, start + batch)]
            _, not_done = cf.wait(futs, timeout=60)
            assert not not_done
            total += sum(f.result() for f in futs)
            del futs
    assert total == sum(i % 5 for i in range(n))
    assert counts == collections.Counter({k: n // 5 for k in range(5)})
    s = p.stats()
    assert s["submitted"] == n
    assert s["completed"] == n


def test_many_producers_counts_exact() -> None:
    results: list[int] = []
    lock = threading.Lock()

    def record(v: int) -> None:
        with lock:
            results.append(v)

    with od.WorkerPool(min_workers=2, max_workers=8) as p:

        def produce(t: int) -> None:
            for i in range(2_000):
                p.submit(record, t * 10_000 + i, priority=i % 3)

        producers = [threading.Thread(target=produce, args=(t,)) for t in range(8)]
        for th in producers:
            th.start()
        for th in producers:
            th.join(60)
            assert not th.is_alive()
    assert sorted(results) == sorted(t * 10_000 + i for t in range(8) for i in range(2_000))


def test_autoscaling_up_then_down() -> None:
    p = od.WorkerPool(min_workers=1, max_workers=4, scale_down_window_s=0.1)
    futs = [p.submit(time.sleep, 0.002) for _ in range(300)]
    cf.wait(futs, timeout=30)
    s = p.stats()
    assert s["scale_ups"] >= 2
    assert any(e["reason"] in ("queue depth", "utilisation") for e in s["scaling_events"])
    deadline = time.monotonic() + 20
    while p.stats()["workers"] > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    s = p.stats()
    assert s["workers"] == 1
    assert s["scale_downs"] >= 1
    assert s["scaling_events"][-1]["delta"] == -1
    assert s["workers"] <= s["max_workers"]
    p.shutdown()


def test_defaults_follow_cpu_count() -> None:
    import os

    cores = os.cpu_count() or 1
    p = od.WorkerPool()
    assert (p.min_workers, p.max_workers) == (2 * cores, 4 * cores)
    p.shutdown()
    q = od.WorkerPool(max_workers=1)
    assert (q.min_workers, q.max_workers) == (1, 1)
    q.shutdown()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_workers": 0}, "max_workers"),
        ({"min_workers": 5, "max_workers": 2}, "min_workers"),
        ({"max_queue": -1}, "max_queue"),
        ({"aging_s": 0.0}, "aging_s"),
        ({"scale_up_util": 2.0}, "scale_up_util"),
        ({"on_full": "drop"}, "on_full"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        od.WorkerPool(**kwargs)  # type: ignore[arg-type]


def _run_script(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_interpreter_exit_runs_queued_tasks_and_joins() -> None:
    out = _run_script(
        """
        import time, overdrive as od
        p = od.WorkerPool(min_workers=1, max_workers=1)
        for i in range(20):
            p.submit(lambda i=i: (time.sleep(0.001), print(i, flush=True)))
        # no shutdown(): atexit must run the queue and join the worker
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(i) for i in range(20)]


def test_fork_child_gets_a_clear_error() -> None:
    out = _run_script(
        """
        import os, overdrive as od
        p = od.WorkerPool(min_workers=1, max_workers=2)
        assert p.submit(int, "1").result(10) == 1
        pid = os.fork()
        if pid == 0:
            try:
                p.submit(int, "2")
            except od.WorkerPoolShutdown as e:
                assert "fork" in str(e)
                try:
                    p.stats()
                    os._exit(2)
                except od.WorkerPoolShutdown:
                    pass
                assert "fork" in repr(p)
                q = od.WorkerPool(min_workers=1, max_workers=1)
                assert q.submit(int, "3").result(10) == 3
                q.shutdown()
                p.shutdown()
                # A normal exit: atexit and finalisation must not touch the
                # parent's pool (its workers do not exist here).
                raise SystemExit(0) from None
            os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert p.submit(int, "4").result(10) == 4
        p.shutdown()
        print("ok")
        """
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_shutdown_from_inside_a_task_does_not_deadlock() -> None:
    p = od.WorkerPool(min_workers=1, max_workers=1, help_on_wait=False)
    f = p.submit(lambda: p.shutdown(wait=True))
    assert f.result(timeout=10) is None
    p.shutdown(wait=True)
    assert p.stats()["workers"] == 0


class _Interrupted(Exception):
    pass


def test_blocked_submit_and_join_are_interruptible_by_signals() -> None:
    # A submit waiting for room in a full queue (no timeout) and a join of a
    # busy worker wait in slices and check signals between them.
    import signal

    def on_alarm(signum: int, frame: object) -> None:
        raise _Interrupted

    p, gate = _blocked_single_worker(max_queue=1, on_full="block", help_on_wait=False)
    queued = p.submit(int, "7")  # fills the queue
    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(_Interrupted):
            p.submit(int, "8")
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(_Interrupted):
            p._core.join(None)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    gate.set()
    assert queued.result(10) == 7
    p.shutdown()


def test_bad_thread_name_and_huge_timeouts() -> None:
    with pytest.raises(ConfigurationError, match="thread_name_prefix"):
        od.WorkerPool(thread_name_prefix="a\0b")
    p, gate = _blocked_single_worker(max_queue=1, on_full="block", full_timeout_s=1e19)
    p.submit(int, "1")
    gate.set()  # room appears: the huge timeout means "wait", never a crash
    assert p.submit(int, "2").result(10) == 2
    p.shutdown()
    assert p._core.join(1e19) is True


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_full_timeout_is_checked_up_front(bad: float) -> None:
    with pytest.raises(ConfigurationError, match="full_timeout_s"):
        od.WorkerPool(max_queue=1, full_timeout_s=bad)
    od.WorkerPool(max_queue=1, full_timeout_s=float("inf")).shutdown()


def test_a_dropped_pool_closes_and_still_runs_its_tasks() -> None:
    import gc

    gate = threading.Event()
    p = od.WorkerPool(min_workers=1, max_workers=1, help_on_wait=False)
    futs = [p.submit(gate.wait, 10) for _ in range(3)]
    del p
    gc.collect()
    gate.set()
    assert [f.result(10) for f in futs] == [True, True, True]


# --- arguments: every bad number or type is an overdrive error ----------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_workers": 2**64}, "max_workers=18446744073709551616"),
        ({"min_workers": -(2**70), "max_workers": 2}, "min_workers=-1180591620717411303424"),
        ({"max_queue": 2**64}, "max_queue=18446744073709551616"),
        ({"scale_up_depth": -1}, "scale_up_depth=-1"),
        ({"aging_s": 10**400}, "aging_s="),
        ({"scale_down_window_s": 10**400}, "scale_down_window_s="),
        ({"full_timeout_s": 10**400}, "full_timeout_s="),
    ],
)
def test_huge_numbers_are_configuration_errors(kwargs: dict[str, object], match: str) -> None:
    # pyo3's own conversion raised OverflowError.
    with pytest.raises(ConfigurationError, match=match):
        od.WorkerPool(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_workers": "4"}, "max_workers must be an int or None, not str"),
        ({"min_workers": 1.5}, "min_workers must be an int or None, not float"),
        ({"max_queue": None}, "max_queue must be an int, not NoneType"),
        ({"aging_s": "1"}, "aging_s must be a number or None, not str"),
        ({"scale_up_util": []}, "scale_up_util must be a number, not list"),
        ({"full_timeout_s": "1"}, "full_timeout_s must be a number of seconds or None"),
        ({"thread_name_prefix": None}, "thread_name_prefix must be a str, not NoneType"),
    ],
)
def test_wrong_types_are_input_type_errors(kwargs: dict[str, object], match: str) -> None:
    # A bare TypeError before: from pyo3, or from the facade's own arithmetic.
    with pytest.raises(InputTypeError, match=match):
        od.WorkerPool(**kwargs)  # type: ignore[arg-type]


def test_submit_and_map_check_their_arguments(pool: od.WorkerPool) -> None:
    with pytest.raises(ConfigurationError, match="priority=9223372036854775808"):
        pool.submit(int, "1", priority=2**63)
    with pytest.raises(InputTypeError, match="priority must be an int, not str"):
        pool.submit(int, "1", priority="high")
    with pytest.raises(InputTypeError, match="fn must be callable, not NoneType"):
        pool.submit(None)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="timeout must be a number of seconds or None"):
        pool.map(abs, [1], timeout="1")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="timeout=nan"):
        pool.map(abs, [1], timeout=float("nan"))
    with pytest.raises(InputTypeError, match=r"iterables\[1\] must be iterable, not NoneType"):
        pool.map(pow, [1], None)  # type: ignore[arg-type]
    assert list(pool.map(abs, [-1, -2], timeout=float("inf"))) == [1, 2]


def test_map_with_a_timeout_too_long_for_threading_waits() -> None:
    # map(timeout=1e300) handed ~1e300 s to Future.result on a task a worker
    # was running: threading raised OverflowError ("timeout value is too large").
    p = od.WorkerPool(min_workers=1, max_workers=1, help_on_wait=False)
    assert list(p.map(time.sleep, [0.05, 0], timeout=1e300)) == [None, None]
    p.shutdown()


def test_a_submit_no_worker_can_run_raises_and_leaks_nothing() -> None:
    # When the system refuses the first worker thread (here: the address
    # space is full, so its stack cannot be mapped), the task used to sit in
    # the queue forever, unrun, and its callable (which refers to the pool)
    # kept the pool and its future alive: an uncollectable cycle through the
    # native queue. Now submit raises and queues nothing.
    out = run_isolated(
        """
        import gc, resource, weakref
        import overdrive as od

        def vm_bytes():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        return int(line.split()[1]) * 1024

        pool = od.WorkerPool(1, 1)
        ref = weakref.ref(pool)
        gc.collect()
        limit = resource.getrlimit(resource.RLIMIT_AS)
        full = vm_bytes() + (1 << 20)  # less than one thread stack left
        resource.setrlimit(resource.RLIMIT_AS, (full, limit[1]))
        try:
            fut = pool.submit(lambda p=pool: p)
            print("queued", pool.stats()["workers"], pool.stats()["queued"])
        except od.WorkerStartError as e:
            print("WorkerStartError:", e)
        resource.setrlimit(resource.RLIMIT_AS, limit)
        print("queued after:", pool.stats()["queued"])
        fut = None
        del pool
        gc.collect()
        print("pool alive:", ref() is not None)
        """
    )
    assert "WorkerStartError: could not start a worker thread" in out, out
    assert "queued after: 0" in out
    assert "pool alive: False" in out


def test_a_task_handle_reports_its_callable_to_the_garbage_collector() -> None:
    # TaskHandle held the future, the callable and its arguments with no
    # GC support: gc could not see (or break) a cycle through a task.
    import gc

    p, gate = _blocked_single_worker(help_on_wait=True)
    arg = object()
    fut = p.submit(id, arg)
    handle = fut._od_task  # type: ignore[attr-defined]
    assert gc.is_tracked(handle)
    referents = gc.get_referents(handle)
    assert any(r is fut for r in referents)
    assert any(r is id for r in referents)
    assert any(isinstance(r, tuple) and r and r[0] is arg for r in referents)
    gate.set()
    assert fut.result(10) == id(arg)
    # Ran: the payload is gone (only the handle's heap type is left).
    assert [r for r in gc.get_referents(handle) if not isinstance(r, type)] == []
    p.shutdown()


def test_a_dropped_pool_whose_pending_tasks_refer_to_it_is_collected_once_they_ran() -> None:
    # The queue belongs to the worker threads while they live (they will run
    # it, as ThreadPoolExecutor's do), so the pool stays until its tasks ran;
    # then nothing keeps it.
    import gc
    import weakref

    p, gate = _blocked_single_worker(help_on_wait=False)
    ran = threading.Event()

    def uses(pool: od.WorkerPool) -> None:
        ran.set()

    for _ in range(3):
        p.submit(uses, p)
    ref = weakref.ref(p)
    del p
    gc.collect()
    assert ref() is not None  # its tasks are still to run
    gate.set()
    assert ran.wait(10)
    deadline = time.monotonic() + 10
    while ref() is not None and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.01)
    assert ref() is None
