"""CircuitBreaker: the state machine against a model (hypothesis, injected clock),
no serialisation of concurrent calls, decorators / context managers, typed errors."""

from __future__ import annotations

import asyncio
import math
import pickle
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import overdrive as od
from overdrive.exceptions import CircuitOpen, ConfigurationError, InputTypeError, OverdriveError
from overdrive.resilience import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Counted(Exception):
    pass


class Other(Exception):
    pass


class Ignored(Exception):
    pass


@dataclass
class Model:
    """The specification, written plainly (one call at a time)."""

    window: str
    size: float
    min_calls: int
    fr: float
    slow_s: float | None
    sr: float
    open_s: float
    probes: int
    state: str = "closed"
    open_until: float = 0.0
    calls: list[tuple[float, bool, bool]] = field(default_factory=list)  # (time, fail, slow)
    p_done: int = 0
    p_fail: int = 0
    p_slow: int = 0
    successes: int = 0
    failures: int = 0
    slow_calls: int = 0
    ignored: int = 0
    rejected: int = 0
    opened: int = 0

    def to_open(self, now: float, seconds: float) -> None:
        if self.state != "open":
            self.opened += 1
        self.state = "open"
        self.open_until = now + seconds
        self.calls = []

    def to_closed(self) -> None:
        self.state = "closed"
        self.calls = []

    def call(self, start: float, duration: float, outcome: str) -> str:
        """Returns "rejected" or "ran"."""
        if self.state == "open":
            if start < self.open_until:
                self.rejected += 1
                return "rejected"
            self.state = "half_open"
            self.p_done = self.p_fail = self.p_slow = 0
        end = start + duration
        slow = self.slow_s is not None and duration >= self.slow_s
        fail = outcome == "counted"
        if outcome == "ignored":
            self.ignored += 1
        elif fail:
            self.failures += 1
        else:
            self.successes += 1
        if slow and outcome != "ignored":
            self.slow_calls += 1
        if outcome == "ignored":
            return "ran"
        if self.state == "half_open":
            self.p_done += 1
            self.p_fail += fail
            self.p_slow += slow
            if self.p_done >= self.probes:
                n = self.p_done
                if self.p_fail >= self.fr * n or self.p_slow >= self.sr * n:
                    self.to_open(end, self.open_s)
                else:
                    self.to_closed()
            return "ran"
        self.calls.append((end, fail, slow))
        if self.window == "count":
            self.calls = self.calls[-int(self.size) :]
            n = len(self.calls)
            enough = n >= min(self.min_calls, int(self.size))
        else:
            bucket = self.size / 10
            cur = math.floor(end / bucket)
            self.calls = [c for c in self.calls if math.floor(c[0] / bucket) > cur - 10]
            n = len(self.calls)
            enough = n >= self.min_calls
        fails = sum(c[1] for c in self.calls)
        slows = sum(c[2] for c in self.calls)
        if enough and (fails >= self.fr * n or slows >= self.sr * n):
            self.to_open(end, self.open_s)
        return "ran"


configs = st.fixed_dictionaries(
    {
        "window": st.sampled_from(["count", "time"]),
        "min_calls": st.integers(1, 6),
        "fr": st.sampled_from([0.25, 0.5, 1.0]),
        "slow_s": st.sampled_from([None, 1.0]),
        "sr": st.sampled_from([0.5, 1.0]),
        "open_s": st.sampled_from([2.0, 5.0]),
        "probes": st.integers(1, 3),
    }
)
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("call"),
            st.sampled_from([0.0, 0.5, 1.5]),
            st.sampled_from(["ok", "counted", "other", "ignored"]),
        ),
        st.tuples(st.just("advance"), st.sampled_from([0.25, 1.0, 3.0, 7.0]), st.just("")),
        st.tuples(st.just("reset"), st.just(0.0), st.just("")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(cfg=configs, size=st.integers(1, 8), program=ops)
def test_state_machine_matches_model(cfg: dict[str, Any], size: int, program: list[Any]) -> None:
    clock = Clock()
    window_size = float(size) if cfg["window"] == "time" else size
    model = Model(
        cfg["window"],
        window_size,
        cfg["min_calls"],
        cfg["fr"],
        cfg["slow_s"],
        cfg["sr"],
        cfg["open_s"],
        cfg["probes"],
    )
    transitions: list[tuple[str, str]] = []
    cb = CircuitBreaker(
        "m",
        window=cfg["window"],
        window_size=window_size,
        min_calls=cfg["min_calls"],
        failure_rate=cfg["fr"],
        slow_call_s=cfg["slow_s"],
        slow_call_rate=cfg["sr"],
        open_s=cfg["open_s"],
        half_open_probes=cfg["probes"],
        counted=(Counted,),
        ignored=(Ignored,),
        clock=clock,
        listeners=[lambda b, old, new: transitions.append((old, new))],
    )
    exc_of = {"counted": Counted, "other": Other, "ignored": Ignored}
    for op, arg, outcome in program:
        if op == "advance":
            clock.t += arg
            continue
        if op == "reset":
            cb.reset()
            model.to_closed()
            continue

        def fn(duration: float = arg, outcome: str = outcome) -> str:
            clock.t += duration
            if outcome in exc_of:
                raise exc_of[outcome]()
            return "value"

        start = clock.t
        expected = model.call(start, arg, outcome)
        try:
            got = cb.call(fn)
            assert got == "value" and outcome == "ok"
            actual = "ran"
        except CircuitOpen as e:
            actual = "rejected"
            rejection = (e.name, e.retry_after)
            assert rejection == ("m", pytest.approx(model.open_until - start))
        except (Counted, Other, Ignored):
            actual = "ran"
        assert actual == expected
        assert cb.state == model.state
    s = cb.stats()
    assert s["state"] == model.state
    for k in ("successes", "failures", "slow_calls", "ignored", "rejected", "opened"):
        assert s[k] == getattr(model, k), k
    assert (
        transitions.count(("closed", "open")) + transitions.count(("half_open", "open"))
        == model.opened
    )


def test_trips_on_failure_rate_only_after_min_calls() -> None:
    cb = CircuitBreaker(window_size=10, min_calls=5, failure_rate=0.5)

    def boom() -> None:
        raise ValueError("down")

    for _ in range(4):
        with pytest.raises(ValueError, match="down"):
            cb.call(boom)
    assert cb.state == "closed"  # 4 calls < min_calls
    assert cb.call(lambda: 1) == 1  # the 5th call: 4/5 failed
    assert cb.state == "open"
    with pytest.raises(CircuitOpen) as ei:
        cb.call(lambda: 1)
    assert 0 < ei.value.retry_after <= 30.0
    assert isinstance(ei.value, RuntimeError) and isinstance(ei.value, OverdriveError)
    assert "open" in str(ei.value) and "breaker" in str(ei.value)


def test_half_open_admits_at_most_probes_concurrently() -> None:
    clock = Clock()
    cb = CircuitBreaker(min_calls=1, window_size=1, open_s=1.0, half_open_probes=2, clock=clock)
    with pytest.raises(ZeroDivisionError):
        cb.call(lambda: 1 / 0)
    assert cb.state == "open"
    clock.t += 1.0
    inside = threading.Barrier(3, timeout=10)
    release = threading.Event()
    results: list[str] = []

    def probe() -> None:
        def slow() -> str:
            inside.wait()
            release.wait(10)
            return "ok"

        results.append(cb.call(slow))

    threads = [threading.Thread(target=probe) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait()  # both probes are in flight
    assert cb.state == "half_open"
    with pytest.raises(CircuitOpen) as ei:
        cb.call(lambda: "third")
    assert ei.value.retry_after == 0.0
    release.set()
    for t in threads:
        t.join(10)
    assert results == ["ok", "ok"]
    assert cb.state == "closed"
    assert cb.call(lambda: 5) == 5


def test_concurrent_calls_are_not_serialised() -> None:
    """8 threads of 50 ms calls through a closed breaker finish in about one call's time."""
    cb = CircuitBreaker()
    start = threading.Barrier(8, timeout=10)
    done: list[float] = []

    def worker() -> None:
        start.wait()
        cb.call(time.sleep, 0.05)
        done.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(done) == 8
    assert max(done) - t0 < 4 * 0.05  # serialised calls would take 8 x 50 ms
    assert cb.stats()["successes"] == 8


def test_concurrent_calls_count_exactly() -> None:
    cb = CircuitBreaker(window_size=1000, min_calls=1000)
    n_threads, per = 8, 2000

    def worker(i: int) -> None:
        for j in range(per):
            if j % 10 == 0:
                with pytest.raises(KeyError):
                    cb.call({}.__getitem__, j)
            else:
                cb.call(int, j)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    s = cb.stats()
    assert s["failures"] == n_threads * per // 10
    assert s["successes"] == n_threads * per * 9 // 10
    assert s["state"] == "closed"


def test_decorator_and_context_managers_sync_and_async() -> None:
    clock = Clock()
    cb = CircuitBreaker("deco", min_calls=4, window_size=4, open_s=5, clock=clock)

    @cb
    def double(x: int) -> int:
        """doc"""
        return 2 * x

    @cb
    async def triple(x: int) -> int:
        await asyncio.sleep(0)
        return 3 * x

    assert double(2) == 4 and double.__doc__ == "doc"
    assert asyncio.run(triple(2)) == 6
    with cb:
        pass
    with pytest.raises(ValueError, match="inside"), cb:
        raise ValueError("inside")

    async def block() -> None:
        async with cb:
            raise ValueError("async inside")

    with pytest.raises(ValueError, match="async inside"):
        asyncio.run(block())
    assert cb.state == "open"
    with pytest.raises(CircuitOpen):
        double(1)
    with pytest.raises(CircuitOpen):
        asyncio.run(triple(1))
    with pytest.raises(CircuitOpen), cb:
        pass
    s = cb.stats()
    assert s["failures"] == 2 and s["rejected"] == 3 and s["successes"] == 3


def test_acall_records_outcomes() -> None:
    cb = CircuitBreaker(min_calls=1, window_size=1)

    async def ok(x: int) -> int:
        return x

    async def bad() -> None:
        raise ValueError("no")

    async def main() -> None:
        assert await cb.acall(ok, 7) == 7
        with pytest.raises(ValueError, match="no"):
            await cb.acall(bad)
        with pytest.raises(CircuitOpen):
            await cb.acall(ok, 1)

    asyncio.run(main())
    assert cb.stats()["failures"] == 1


def test_force_open_reset_and_listeners() -> None:
    seen: list[tuple[str, str]] = []

    def bad_listener(b: CircuitBreaker, old: str, new: str) -> None:
        raise RuntimeError("listener bug")  # logged, never raised to the caller

    cb = CircuitBreaker(listeners=[lambda b, o, n: seen.append((o, n)), bad_listener])
    cb.force_open()
    with pytest.raises(CircuitOpen) as ei:
        cb.call(lambda: 1)
    assert ei.value.retry_after == math.inf
    cb.reset()
    assert cb.call(lambda: 1) == 1
    cb.force_open(0.0)
    assert cb.call(lambda: 2) == 2  # open_s passed at once: a probe
    assert seen[:2] == [("closed", "open"), ("open", "closed")]
    assert ("open", "half_open") in seen


def test_uncounted_exceptions() -> None:
    cb = CircuitBreaker(min_calls=1, window_size=1, counted=(OSError,), ignored=(KeyError,))
    with pytest.raises(ValueError, match="invalid literal"):
        cb.call(int, "x")  # not counted: a success for the breaker
    with pytest.raises(KeyError):
        cb.call({}.__getitem__, 1)  # ignored
    assert cb.state == "closed"
    s = cb.stats()
    assert s["successes"] == 1 and s["ignored"] == 1 and s["failures"] == 0
    with pytest.raises(FileNotFoundError):
        cb.call(open, "/nonexistent/overdrive")
    assert cb.state == "open"


def test_slow_calls_trip() -> None:
    clock = Clock()
    cb = CircuitBreaker(
        min_calls=2, window_size=4, slow_call_s=1.0, slow_call_rate=0.5, clock=clock
    )

    def slow() -> str:
        clock.t += 2.0
        return "late"

    assert cb.call(slow) == "late"
    assert cb.call(lambda: "fast") == "fast"
    assert cb.state == "open"
    assert cb.stats()["slow_calls"] == 1


def test_stats_are_numbers_with_a_name() -> None:
    s = CircuitBreaker("svc").stats()
    assert s["name"] == "svc" and s["state"] == "closed"
    for k, v in s.items():
        if k not in ("name", "state"):
            assert isinstance(v, int | float) and not isinstance(v, bool), k


def test_circuit_open_pickles_and_exports() -> None:
    e = CircuitOpen("svc", 1.5)
    e2 = pickle.loads(pickle.dumps(e))
    assert (e2.name, e2.retry_after) == ("svc", 1.5)
    assert od.CircuitOpen is CircuitOpen and "CircuitOpen" in od.__all__
    assert "LimitExceeded" in od.exceptions.__all__


@pytest.mark.parametrize(
    ("kwargs", "exc", "names"),
    [
        ({"window": "sliding"}, ConfigurationError, "window"),
        ({"window": 3}, InputTypeError, "window"),
        ({"window_size": 0}, ConfigurationError, "window_size"),
        ({"window_size": 2.5}, InputTypeError, "window_size"),
        ({"window": "time", "window_size": -1.0}, ConfigurationError, "window_size"),
        ({"min_calls": 0}, ConfigurationError, "min_calls"),
        ({"failure_rate": 0.0}, ConfigurationError, "failure_rate"),
        ({"failure_rate": 1.5}, ConfigurationError, "failure_rate"),
        ({"failure_rate": "half"}, InputTypeError, "failure_rate"),
        ({"slow_call_s": -1}, ConfigurationError, "slow_call_s"),
        ({"slow_call_rate": float("nan")}, ConfigurationError, "slow_call_rate"),
        ({"open_s": float("inf")}, ConfigurationError, "open_s"),
        ({"half_open_probes": 0}, ConfigurationError, "half_open_probes"),
        ({"counted": ValueError("x")}, InputTypeError, "counted"),
        ({"ignored": (int,)}, InputTypeError, "ignored"),
        ({"clock": 3}, InputTypeError, "clock"),
        ({"listeners": [1]}, InputTypeError, "listeners"),
        ({"redis": 42}, InputTypeError, "redis"),
        ({"redis": "http://x"}, ConfigurationError, "redis"),
        ({"name": 1}, InputTypeError, "name"),
        ({"fallback": "default"}, InputTypeError, "fallback"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], exc: type[Exception], names: str) -> None:
    with pytest.raises(exc, match=names):
        CircuitBreaker(**kwargs)


def test_decorating_a_non_callable_is_a_type_error() -> None:
    with pytest.raises(InputTypeError):
        CircuitBreaker()(42)  # type: ignore[call-overload]


def test_fallback_replaces_the_rejection() -> None:
    clock = Clock()
    cb = CircuitBreaker(
        min_calls=1, window_size=1, half_open_probes=1, clock=clock, fallback=lambda x: -x
    )

    @cb
    def f(x: int) -> int:
        if x == 0:
            raise ValueError("zero")
        return x

    @cb
    async def g(x: int) -> int:
        return x

    with pytest.raises(ValueError, match="zero"):
        f(0)
    assert f(5) == -5  # open: the fallback answers
    assert asyncio.run(g(6)) == -6
    with pytest.raises(CircuitOpen), cb:
        pass
    assert cb.stats()["rejected"] == 3

    async def afallback(x: int) -> int:
        return 100 + x

    cb2 = CircuitBreaker(fallback=afallback)
    cb2.force_open()
    assert asyncio.run(cb2.acall(g, 1)) == 101


def test_trips_under_threads_and_counts_add_up() -> None:
    cb = CircuitBreaker(window_size=50, min_calls=20, failure_rate=0.5, open_s=60.0)
    n_threads, per = 8, 300
    results: list[tuple[int, int, int]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        ok = failed = rejected = 0
        for j in range(per):
            try:
                if (i + j) % 3 == 0:
                    cb.call(lambda: 1)
                    ok += 1
                else:
                    cb.call(_raise_conn)
            except ConnectionError:
                failed += 1
            except CircuitOpen:
                rejected += 1
        with lock:
            results.append((ok, failed, rejected))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ok, failed, rejected = (sum(r[k] for r in results) for k in range(3))
    assert ok + failed + rejected == n_threads * per
    s = cb.stats()
    assert s["state"] == "open" and s["opened"] == 1
    assert (s["successes"], s["failures"], s["rejected"]) == (ok, failed, rejected)


def _raise_conn() -> None:
    raise ConnectionError("down")


def test_native_clock_rejection_carries_name_and_retry_after() -> None:
    # time.monotonic is read in Rust on the rejection path: same timeline
    cb = CircuitBreaker("native", min_calls=1, window_size=1, open_s=30.0)
    with pytest.raises(ZeroDivisionError):
        cb.call(lambda: 1 / 0)
    assert cb.state == "open"
    with pytest.raises(CircuitOpen) as info:
        cb.call(lambda: 1)
    assert info.value.name == "native"
    assert 29.0 < info.value.retry_after <= 30.0
    assert cb.stats()["rejected"] == 1


def test_an_exception_from_the_closed_path_keeps_its_traceback() -> None:
    cb = CircuitBreaker("tb")

    def boom() -> None:
        raise KeyError("inner")

    with pytest.raises(KeyError) as info:
        cb.call(boom)
    names = [entry.name for entry in info.traceback]
    assert "boom" in names  # the function's own frame is kept


def test_a_breaker_whose_fallback_refers_to_it_is_collected() -> None:
    import gc
    import weakref

    def make() -> weakref.ref[CircuitBreaker]:
        holder: list[CircuitBreaker] = []
        cb = CircuitBreaker("cycle", fallback=lambda: holder[0].name)
        holder.append(cb)
        cb.force_open()
        assert cb.call(lambda: 1) == "cycle"  # answered by the fallback, in Rust
        return weakref.ref(cb)

    ref = make()
    gc.collect()
    assert ref() is None


def test_call_passes_positional_and_keyword_arguments_on_every_path() -> None:
    def f(a: int, b: int = 0, *, c: int = 0) -> tuple[int, int, int]:
        return (a, b, c)

    clock = [0.0]
    closed = CircuitBreaker("fast")  # closed, lock-free path
    timed = CircuitBreaker("slow", slow_call_s=10.0, clock=lambda: clock[0])  # Python path
    for cb in (closed, timed):
        assert cb.call(f, 1) == (1, 0, 0)
        assert cb.call(f, 1, 2, c=3) == (1, 2, 3)
        assert cb.call(f, a=4) == (4, 0, 0)
    fb = CircuitBreaker("fb", fallback=lambda *a, **k: (a, k))
    fb.force_open()
    assert fb.call(f, 1, c=2) == ((1,), {"c": 2})
