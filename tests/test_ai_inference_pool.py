"""overdrive.ai.InferencePool: equivalence with direct model calls, key affinity,
replicas added and removed under load with nothing lost (threads and asyncio),
failures confined to their batch, close() draining, typed argument errors,
stats and telemetry."""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from overdrive import ai, telemetry
from overdrive.exceptions import (
    BatcherClosed,
    ConfigurationError,
    InputTypeError,
    NoBackendAvailable,
)


def f(x: int) -> tuple[int, int]:
    """What the test model computes per item."""
    return (x * 31 + 7, x % 5)


def model(xs: list[int]) -> list[tuple[int, int]]:
    return [f(x) for x in xs]


class PredictModel:
    """An object with predict(list), returning a generator (not a list)."""

    def predict(self, xs: list[int]) -> Any:
        return (f(x) for x in xs)


def tagged(name: str, delay: float = 0.0) -> Any:
    """A model that says which replica ran each item."""

    def run(xs: list[int]) -> list[tuple[str, tuple[int, int]]]:
        if delay:
            time.sleep(delay)
        return [(name, f(x)) for x in xs]

    return run


@pytest.fixture(scope="module")
def pool() -> Iterator[ai.InferencePool[int, tuple[int, int]]]:
    p: ai.InferencePool[int, tuple[int, int]] = ai.InferencePool(
        [model, PredictModel(), model], max_batch_size=8, max_wait_ms=0.5
    )
    yield p
    p.close()


@given(st.lists(st.integers(-(2**40), 2**40), max_size=60))
def test_submit_equals_direct_calls(
    pool: ai.InferencePool[int, tuple[int, int]], xs: list[int]
) -> None:
    futs = [pool.submit(x) for x in xs]
    assert [fu.result(timeout=10) for fu in futs] == model(xs)
    assert pool.predict_many(xs, timeout=10) == model(xs)


@given(st.lists(st.integers(-1000, 1000), max_size=40), st.text(max_size=8))
def test_async_equals_direct_calls(
    pool: ai.InferencePool[int, tuple[int, int]], xs: list[int], key: str
) -> None:
    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        one = [await pool.apredict(x) for x in xs[:5]]
        many = await pool.apredict_many(xs)
        keyed = await pool.apredict_many(xs, key=key)
        return one, many, keyed

    one, many, keyed = asyncio.run(main())
    assert one == model(xs[:5])
    assert many == model(xs)
    assert keyed == model(xs)


def test_numpy_results_and_async_model() -> None:
    import numpy as np

    def np_model(xs: list[int]) -> Any:
        return np.asarray(xs, dtype=np.float64)[:, None] * np.arange(3.0)

    async def amodel(xs: list[int]) -> list[int]:
        await asyncio.sleep(0)
        return [x + 1 for x in xs]

    with ai.InferencePool([np_model]) as p:
        out = p.predict_many([1, 2, 3])
        assert [list(r) for r in out] == [[0.0, 1.0, 2.0], [0.0, 2.0, 4.0], [0.0, 3.0, 6.0]]

    async def main() -> list[int]:
        p2 = ai.InferencePool({"a": amodel, "b": amodel}, max_wait_ms=0.5)
        try:
            return await p2.apredict_many(range(50))
        finally:
            await p2.aclose()

    assert asyncio.run(main()) == list(range(1, 51))


def test_key_routing_sticks_to_one_replica() -> None:
    names = ["r0", "r1", "r2", "r3"]
    with ai.InferencePool({n: tagged(n) for n in names}, max_wait_ms=0.5) as p:
        seen: dict[str, set[str]] = {}
        for i in range(40):
            key = f"session-{i}"
            for _ in range(5):
                name, value = p.predict(i, key=key, timeout=10)
                assert value == f(i)
                seen.setdefault(key, set()).add(name)
        assert all(len(v) == 1 for v in seen.values()), seen
        used = {next(iter(v)) for v in seen.values()}
        assert len(used) >= 2  # 40 keys spread over the replicas
        keyed = {r["name"]: r["keyed"] for r in p.stats()["replicas"]}
        assert sum(keyed.values()) == 200


def test_add_and_remove_under_load_threads() -> None:
    p: ai.InferencePool[int, Any] = ai.InferencePool(
        {"a": tagged("a", 0.0005), "b": tagged("b", 0.0005)}, max_batch_size=16, max_wait_ms=0.5
    )
    per_thread = 400
    results: list[list[tuple[int, cf.Future[Any]]]] = [[] for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(5)

    def producer(t: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                x = t * per_thread + i
                key = f"k{x % 7}" if i % 3 == 0 else None
                results[t].append((x, p.submit(x, key=key)))
                if i % 50 == 0:
                    time.sleep(0.001)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=producer, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    start.wait()
    p.add_replica(tagged("c", 0.0005), name="c")
    time.sleep(0.01)
    p.remove_replica("a")
    p.add_replica(tagged("d", 0.0005), name="d")
    time.sleep(0.01)
    p.remove_replica("b")
    for t in threads:
        t.join(30)
    assert not errors
    ran_on: dict[str, int] = {}
    for lst in results:
        assert len(lst) == per_thread
        for x, fu in lst:
            name, value = fu.result(timeout=10)
            assert value == f(x)
            ran_on[name] = ran_on.get(name, 0) + 1
    assert sum(ran_on.values()) == 4 * per_thread
    stats = p.stats()
    by_name = {r["name"]: r for r in stats["replicas"]}
    assert {n for n, r in by_name.items() if r["alive"]} == {"c", "d"}
    assert sum(r["items"] for r in by_name.values()) == 4 * per_thread
    assert all(r["in_flight"] == 0 for r in by_name.values())
    for name, count in ran_on.items():
        assert by_name[name]["items"] == count
    p.close()


def test_add_and_remove_under_load_asyncio() -> None:
    async def main() -> None:
        p: ai.InferencePool[int, Any] = ai.InferencePool(
            {"a": tagged("a", 0.0005)}, max_batch_size=16, max_wait_ms=0.5
        )

        async def client(c: int) -> list[tuple[int, Any]]:
            out = []
            for i in range(200):
                x = c * 1000 + i
                out.append((x, await p.asubmit(x, key=None if i % 2 else f"s{c}")))
            return out

        tasks = [asyncio.create_task(client(c)) for c in range(8)]
        await asyncio.sleep(0.005)
        p.add_replica(tagged("b", 0.0005), name="b")
        await asyncio.sleep(0.01)
        await p.aremove_replica("a")
        p.add_replica(tagged("c", 0.0005), name="c")
        done = await asyncio.gather(*tasks)
        pairs = [pair for lst in done for pair in lst]
        assert len(pairs) == 8 * 200
        assert all(value == f(x) for x, (_name, value) in pairs)
        stats = p.stats()
        assert sum(r["items"] for r in stats["replicas"]) == 8 * 200
        assert p.replicas == ["b", "c"]
        await p.aclose()

    asyncio.run(main())


def test_failing_batch_fails_only_its_items() -> None:
    calls: list[list[int]] = []
    lock = threading.Lock()

    def picky(xs: list[int]) -> list[tuple[int, int]]:
        with lock:
            calls.append(list(xs))
        time.sleep(0.001)
        if any(x < 0 for x in xs):
            raise ValueError("negative input")
        return model(xs)

    with ai.InferencePool([picky, picky], max_batch_size=8, max_wait_ms=1.0) as p:
        xs = [i if i % 37 else -i - 1 for i in range(300)]
        futs = [(x, p.submit(x)) for x in xs]
        failed = set()
        for x, fu in futs:
            exc = fu.exception(timeout=10)
            if exc is None:
                assert fu.result() == f(x)
            else:
                assert isinstance(exc, ValueError)
                failed.add(x)
        bad_batches = [b for b in calls if any(x < 0 for x in b)]
        assert failed == {x for b in bad_batches for x in b}
        assert len(failed) < len(xs)
        assert p.stats()["errors"] == sum(len(b) for b in bad_batches)


def test_a_failing_replica_fails_only_what_it_ran() -> None:
    def broken(xs: list[int]) -> list[int]:
        raise RuntimeError("replica down")

    with ai.InferencePool({"ok": model, "bad": broken}, max_wait_ms=0.5) as p:
        futs = [(x, p.submit(x)) for x in range(200)]
        bad = 0
        for x, fu in futs:
            exc = fu.exception(timeout=10)
            if exc is None:
                assert fu.result() == f(x)
            else:
                assert isinstance(exc, RuntimeError)
                bad += 1
        by_name = {r["name"]: r for r in p.stats()["replicas"]}
        assert by_name["bad"]["errors"] == by_name["bad"]["items"] == bad
        assert by_name["ok"]["errors"] == 0
        assert by_name["ok"]["items"] == 200 - bad


def test_close_drains_everything() -> None:
    p = ai.InferencePool([tagged("a", 0.002), tagged("b", 0.002)], max_batch_size=4)
    futs = [(x, p.submit(x)) for x in range(300)]
    p.close()
    assert all(fu.done() for _x, fu in futs)
    assert all(fu.result()[1] == f(x) for x, fu in futs)
    with pytest.raises(BatcherClosed):
        p.submit(1)
    with pytest.raises(BatcherClosed):
        p.add_replica(model)
    assert p.stats()["closed"] is True


def test_remove_replica_drains_it() -> None:
    gate = threading.Event()

    def slow(xs: list[int]) -> list[tuple[int, int]]:
        gate.wait(10)
        return model(xs)

    p = ai.InferencePool({"only": slow}, max_batch_size=4)
    futs = [(x, p.submit(x)) for x in range(50)]
    threading.Timer(0.05, gate.set).start()
    p.remove_replica("only")
    assert all(fu.result(timeout=0) == f(x) for x, fu in futs)
    with pytest.raises(NoBackendAvailable):
        p.submit(1)
    with pytest.raises(NoBackendAvailable):
        p.submit(1, key="k")
    p.add_replica(model, name="again")
    assert p.predict(3, key="k") == f(3)
    p.close()


def test_cancelled_items_are_released_from_the_balancer() -> None:
    gate = threading.Event()

    def slow(xs: list[int]) -> list[tuple[int, int]]:
        gate.wait(10)
        return model(xs)

    with ai.InferencePool([slow], max_batch_size=1) as p:
        first = p.submit(0)
        time.sleep(0.02)  # the first item is in the model
        queued = [p.submit(i) for i in range(1, 6)]
        assert all(fu.cancel() for fu in queued)
        gate.set()
        assert first.result(timeout=10) == f(0)
        assert p.predict(9, timeout=10) == f(9)
        stats = p.stats()
        assert stats["in_flight"] == 0
        assert p._lb.stats()["in_flight"] == 0


def _router_load(p: ai.InferencePool[Any, Any]) -> int:
    router = p._router
    assert router is not None
    return int(router.stats()["load"])


def _settles(p: ai.InferencePool[Any, Any]) -> None:
    """The router's load and the balancer's in-flight count come back to 0."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _router_load(p) == 0 and p._lb.stats()["in_flight"] == 0:
            return
        time.sleep(0.01)
    pytest.fail(f"load {_router_load(p)}, in flight {p._lb.stats()['in_flight']}")


def test_cancelled_keyed_items_are_released_from_the_router() -> None:
    gate = threading.Event()

    def slow(xs: list[int]) -> list[tuple[int, int]]:
        gate.wait(10)
        return model(xs)

    with ai.InferencePool([slow], max_batch_size=1) as p:
        first = p.submit(0)
        time.sleep(0.02)  # the first item is in the model
        keyed = [p.submit(i, key="sess") for i in range(1, 4)]
        unkeyed = [p.submit(i) for i in range(4, 7)]
        assert _router_load(p) == 3
        assert all(fu.cancel() for fu in keyed)
        # the cancelled keyed items leave the router, not the balancer
        assert _router_load(p) == 0
        assert p._lb.in_flight(p._by_name["replica-0"].index) == 4
        gate.set()
        assert first.result(timeout=10) == f(0)
        assert [fu.result(timeout=10) for fu in unkeyed] == [f(i) for i in range(4, 7)]
        assert p.predict(9, key="sess", timeout=10) == f(9)
        _settles(p)
        assert p.stats()["in_flight"] == 0
        assert p.stats()["replicas"][0]["keyed"] == 4


def test_mixed_cancellations_under_threads_release_everything() -> None:
    def slowish(xs: list[int]) -> list[tuple[int, int]]:
        time.sleep(0.002)
        return model(xs)

    with ai.InferencePool([slowish, slowish], max_batch_size=4, max_wait_ms=0.5) as p:
        errors: list[BaseException] = []

        def worker(seed: int) -> None:
            try:
                futs = []
                for i in range(60):
                    x = seed * 1000 + i
                    key = f"s{i % 3}" if i % 2 else None
                    futs.append((x, p.submit(x, key=key)))
                for n, (x, fu) in enumerate(futs):
                    if n % 3 == 0 and fu.cancel():
                        continue
                    if not fu.cancelled():
                        assert fu.result(timeout=10) == f(x)
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        _settles(p)
        assert p.stats()["in_flight"] == 0


def test_asubmit_cancelled_keyed_items_are_released() -> None:
    gate = threading.Event()

    def slow(xs: list[int]) -> list[tuple[int, int]]:
        gate.wait(10)
        return model(xs)

    async def main(p: ai.InferencePool[int, tuple[int, int]]) -> None:
        first = p.asubmit(0)
        await asyncio.sleep(0.02)
        keyed: list[Any] = [p.asubmit(i, key="sess") for i in range(1, 4)]  # BatchFutures
        unkeyed = [p.asubmit(i) for i in range(4, 7)]
        assert all(fu.cancel() for fu in keyed)
        await asyncio.sleep(0.01)  # the done callbacks run
        assert _router_load(p) == 0
        gate.set()
        assert await first == f(0)
        assert list(await asyncio.gather(*unkeyed)) == [f(i) for i in range(4, 7)]

    with ai.InferencePool([slow], max_batch_size=1) as p:
        asyncio.run(main(p))
        _settles(p)


def test_stats_and_latency() -> None:
    with ai.InferencePool([tagged("a", 0.02)], max_batch_size=64, name="slowpool") as p:
        p.predict_many(range(10))
        s = p.stats()
        assert s["name"] == "slowpool"
        assert s["items"] == 10
        r = s["replicas"][0]
        assert r["batches"] >= 1 and r["items"] == 10
        assert r["latency_p50_s"] >= 0.015
        assert r["batch_latency_p50_s"] >= 0.015
        assert r["in_flight"] == 0
        assert "slowpool" in repr(p)


def test_telemetry_exports_the_pool() -> None:
    import prometheus_client as pc
    from prometheus_client import parser

    with ai.InferencePool({"x": model, "y": model}, name="exported") as p:
        p.predict_many(range(20))
        reg = telemetry.registered(p)
        assert reg is not None and reg.component == "inference_pool"
        registry = pc.CollectorRegistry()
        telemetry.install(registry)
        text = pc.generate_latest(registry).decode()
        fams = {m.name: m for m in parser.text_string_to_metric_families(text)}
        items = fams["overdrive_inference_pool_items"]
        assert any(s.labels.get("name") == "exported" and s.value == 20.0 for s in items.samples)
        per = fams["overdrive_inference_pool_replica_items"]
        replicas = {s.labels["replica"] for s in per.samples if s.labels["name"] == "exported"}
        assert replicas == {"x", "y"}


def test_bad_arguments_are_typed() -> None:
    with pytest.raises(InputTypeError, match="replicas"):
        ai.InferencePool(5)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="model"):
        ai.InferencePool([42])
    with pytest.raises(ConfigurationError, match="max_batch_size"):
        ai.InferencePool([model], max_batch_size=0)
    with pytest.raises(InputTypeError, match="max_wait_ms"):
        ai.InferencePool([model], max_wait_ms="5")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_wait_ms"):
        ai.InferencePool([model], max_wait_ms=-1.0)
    with pytest.raises(ConfigurationError, match="strategy"):
        ai.InferencePool([model], strategy="random")
    with pytest.raises(ConfigurationError, match="load_factor"):
        ai.InferencePool([model], load_factor=0.5)
    with ai.InferencePool({"a": model}) as p:
        with pytest.raises(ConfigurationError, match="'a'"):
            p.add_replica(model, name="a")
        with pytest.raises(InputTypeError, match="name"):
            p.add_replica(model, name="")
        with pytest.raises(ConfigurationError, match="weight"):
            p.add_replica(model, weight=0)
        with pytest.raises(ConfigurationError, match="'nope'"):
            p.remove_replica("nope")
        with pytest.raises(InputTypeError, match="key"):
            p.submit(1, key=[1])  # type: ignore[arg-type]
        with pytest.raises(InputTypeError, match="xs"):
            p.predict_many(5)  # type: ignore[arg-type]
    empty: ai.InferencePool[int, int] = ai.InferencePool()
    with pytest.raises(NoBackendAvailable):
        empty.submit(1)
    empty.close()


def test_key_fn_routes_by_prompt_prefix() -> None:
    names = ["a", "b", "c"]
    with ai.InferencePool(
        {n: tagged(n) for n in names}, key_fn=lambda x: f"prefix-{x // 100}", max_wait_ms=0.5
    ) as p:
        by_prefix: dict[int, set[str]] = {}
        for x in range(0, 1000, 7):
            name, value = p.predict(x, timeout=10)
            assert value == f(x)
            by_prefix.setdefault(x // 100, set()).add(name)
        assert all(len(v) == 1 for v in by_prefix.values()), by_prefix
    with pytest.raises(InputTypeError, match="key_fn"):
        ai.InferencePool([model], key_fn=3)  # type: ignore[arg-type]


def test_a_dropped_pool_drains_and_is_collected() -> None:
    import gc
    import weakref

    p = ai.InferencePool([tagged("a", 0.002)], max_batch_size=4)
    futs = [(x, p.submit(x)) for x in range(40)]
    ref = weakref.ref(p)
    del p
    gc.collect()
    assert ref() is None
    assert all(fu.result(timeout=10)[1] == f(x) for x, fu in futs)
