"""Cascade: escalation order, exact cost accounting, errors, async, threads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from overdrive import ai, telemetry
from overdrive.exceptions import ConfigurationError, InputTypeError
from overdrive.telemetry.mapping import flatten


def tiers(log: list[str] | None = None) -> list[Any]:
    """Three models; model i returns (i, q); accepted when q % 3 == i."""

    def make(i: int) -> Any:
        def model(q: int) -> tuple[int, int]:
            if log is not None:
                log.append(f"m{i}:{q}")
            return (i, q)

        model.__name__ = f"m{i}"
        return model

    return [(make(0), 1.0), (make(1), 10.0), (make(2), 100.0)]


def accept(r: tuple[int, int]) -> bool:
    return r[1] % 3 == r[0]


def test_escalation_order_and_exact_accounting() -> None:
    log: list[str] = []
    cas = ai.Cascade(tiers(log), accept=accept, name="exact")
    results = [cas(q) for q in range(30)]
    assert results == [(q % 3, q) for q in range(30)]
    assert log[:3] == ["m0:0", "m0:1", "m1:1"]
    s = cas.stats()
    m0, m1, m2 = s["models"]
    assert (m0["model"], m0["calls"], m0["accepted"], m0["rejected"], m0["escalated"]) == (
        "m0",
        30,
        10,
        20,
        20,
    )
    assert (m1["calls"], m1["accepted"], m1["escalated"]) == (20, 10, 10)
    assert (m2["calls"], m2["accepted"], m2["escalated"]) == (10, 10, 0)
    assert (m0["cost"], m1["cost"], m2["cost"]) == (30.0, 200.0, 1000.0)
    assert s["cost"] == 1230.0
    assert s["baseline_cost"] == 3000.0
    assert s["cost_saved"] == s["baseline_cost"] - s["cost"] == 1770.0
    assert s["cost_saved_ratio"] == pytest.approx(0.59)
    assert s["requests"] == 30 and s["errors"] == 0 and s["unaccepted"] == 0
    assert all(m["latency_p99_s"] >= m["latency_p50_s"] > 0 for m in s["models"])


def test_last_model_result_returned_when_not_accepted() -> None:
    cas = ai.Cascade(tiers(), accept=lambda r: False)
    assert cas(5) == (2, 5)
    s = cas.stats()
    assert s["unaccepted"] == 1
    assert s["models"][2]["rejected"] == 1 and s["models"][2]["escalated"] == 0
    assert s["cost"] == 111.0 and s["cost_saved"] == -11.0


def test_per_model_accept_overrides_the_global_one() -> None:
    (m0, c0), (m1, c1), (m2, c2) = tiers()
    cas = ai.Cascade([(m0, c0, lambda r: True), (m1, c1), (m2, c2)], accept=lambda r: False)
    assert cas(1) == (0, 1)
    assert cas.stats()["models"][0]["accepted"] == 1


def test_errors_escalate_are_counted_and_charged() -> None:
    def flaky(q: int) -> str:
        if q % 2:
            raise RuntimeError("boom")
        return "cheap"

    def big(q: int) -> str:
        return "big"

    cas = ai.Cascade([(flaky, 1.0), (big, 5.0)], accept=lambda r: True)
    assert [cas(q) for q in range(10)] == ["cheap", "big"] * 5
    s = cas.stats()
    assert s["models"][0]["errors"] == 5 and s["models"][0]["escalated"] == 5
    assert s["models"][1]["calls"] == 5
    assert s["cost"] == 10 * 1.0 + 5 * 5.0
    assert s["errors"] == 0


def test_last_model_error_propagates_and_counts() -> None:
    def bad(q: int) -> str:
        raise KeyError(q)

    cas = ai.Cascade([(bad, 1.0), (bad, 2.0)], accept=lambda r: True)
    with pytest.raises(KeyError):
        cas(1)
    s = cas.stats()
    assert s["errors"] == 1 and s["requests"] == 1
    assert [m["errors"] for m in s["models"]] == [1, 1]
    assert s["cost"] == 3.0


def test_escalate_on_empty_lets_errors_through_at_once() -> None:
    calls: list[int] = []

    def bad(q: int) -> str:
        raise ValueError("no")

    def big(q: int) -> str:
        calls.append(q)
        return "big"

    cas = ai.Cascade([(bad, 1.0), (big, 5.0)], accept=lambda r: True, escalate_on=())
    with pytest.raises(ValueError, match="no"):
        cas(1)
    assert calls == []
    cas2 = ai.Cascade([(bad, 1.0), (big, 5.0)], accept=lambda r: True, escalate_on=(KeyError,))
    with pytest.raises(ValueError, match="no"):
        cas2(1)
    assert cas2.stats()["errors"] == 1


def test_per_token_costs_use_the_token_counter() -> None:
    small = ai.CascadeModel(
        lambda q: q[:3], cost_per_input_token=0.1, cost_per_output_token=1.0, accept=len
    )
    large = ai.CascadeModel(
        lambda q: q.upper(), cost_per_call=2.0, cost_per_input_token=1.0, name="large"
    )
    cas = ai.Cascade([small, large], count_tokens=len)
    assert cas("abcdef") == "abc"
    assert cas("") == ""
    s = cas.stats()
    # "abcdef": small = 6*0.1 + 3*1.0; "": small = 0, rejected (len 0) -> large = 2.0
    assert s["cost"] == pytest.approx(3.6 + 2.0)
    # baseline: large on each query = 2.0 + 6*1.0, and 2.0
    assert s["baseline_cost"] == pytest.approx(10.0)
    assert s["models"][1]["model"] == "large"


def test_async_models_and_sync_models_from_acall() -> None:
    async def cheap(q: int) -> tuple[int, int]:
        await asyncio.sleep(0)
        return (0, q)

    class Remote:
        async def acall(self, q: int) -> tuple[int, int]:
            await asyncio.sleep(0)
            return (1, q)

    def big(q: int) -> tuple[int, int]:
        return (2, q)

    cas = ai.Cascade([(cheap, 1.0), (Remote(), 10.0), (big, 100.0)], accept=accept)

    async def main() -> list[Any]:
        return list(await asyncio.gather(*(cas.acall(q) for q in range(30))))

    assert asyncio.run(main()) == [(q % 3, q) for q in range(30)]
    s = cas.stats()
    assert [m["calls"] for m in s["models"]] == [30, 20, 10]
    assert s["cost"] == 1230.0 and s["cost_saved"] == 1770.0
    with pytest.raises(InputTypeError, match="acall"):
        cas(1)


def test_thread_safe_counts_add_up() -> None:
    cas = ai.Cascade(tiers(), accept=accept)
    n_threads, per = 8, 300
    barrier = threading.Barrier(n_threads)
    bad: list[Any] = []

    def work(t: int) -> None:
        barrier.wait()
        for q in range(per):
            if cas(q) != (q % 3, q):
                bad.append(q)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
    assert bad == []
    s = cas.stats()
    total = n_threads * per
    assert s["requests"] == total
    assert [m["calls"] for m in s["models"]] == [total, total * 2 // 3, total // 3]
    assert [m["accepted"] for m in s["models"]] == [total // 3] * 3
    assert s["cost"] == total * 1.0 + total * 2 // 3 * 10.0 + total // 3 * 100.0


def test_registered_with_telemetry_and_flattened() -> None:
    cas = ai.Cascade(tiers(), accept=accept, name="chat")
    cas(0)
    reg = telemetry.registered(cas)
    assert reg is not None and reg.component == "cascade" and reg.name == "chat"
    points = {(p.family, p.labels): p.value for p in flatten("cascade", cas.stats())}
    assert points[("overdrive_cascade_model_calls", (("model", "m0"),))] == 1.0
    assert points[("overdrive_cascade_cost_saved", ())] == 99.0


def test_duplicate_names_get_suffixes() -> None:
    def f(q: int) -> int:
        return q

    cas = ai.Cascade([(f, 1.0), (f, 2.0)], accept=bool)
    assert [m["model"] for m in cas.stats()["models"]] == ["f", "f-2"]


def test_bad_arguments_name_the_parameter() -> None:
    def f(q: int) -> int:
        return q

    with pytest.raises(ConfigurationError, match="models"):
        ai.Cascade([], accept=bool)
    with pytest.raises(InputTypeError, match="models"):
        ai.Cascade(f, accept=bool)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match=r"models\[1\]"):
        ai.Cascade([(f, 1.0), f], accept=bool)
    with pytest.raises(ConfigurationError, match=r"models\[0\].*cost_per_call=-1"):
        ai.Cascade([(f, -1)], accept=bool)
    with pytest.raises(ConfigurationError, match="cost_per_call=nan"):
        ai.CascadeModel(f, float("nan"))
    with pytest.raises(InputTypeError, match="cost_per_call"):
        ai.CascadeModel(f, "1")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="model"):
        ai.Cascade([(42, 1.0)], accept=bool)
    with pytest.raises(ConfigurationError, match="accept"):
        ai.Cascade([(f, 1.0), (f, 2.0)])
    with pytest.raises(InputTypeError, match="accept"):
        ai.Cascade([(f, 1.0)], accept=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="count_tokens"):
        ai.Cascade([ai.CascadeModel(f, cost_per_output_token=1.0)])
    with pytest.raises(InputTypeError, match="escalate_on"):
        ai.Cascade([(f, 1.0)], escalate_on=ValueError)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="count_tokens must return"):
        ai.Cascade([ai.CascadeModel(f, cost_per_input_token=1.0)], count_tokens=lambda q: -1)(1)


class Boom(Exception):
    pass


def two_models(async_: bool = False) -> list[Any]:
    """Model 0 costs 1, model 1 costs 10; both return (i, q)."""

    def m0(q: int) -> tuple[int, int]:
        return (0, q)

    def m1(q: int) -> tuple[int, int]:
        return (1, q)

    async def a1(q: int) -> tuple[int, int]:
        return (1, q)

    return [(m0, 1.0), (a1 if async_ else m1, 10.0)]


def reject_then_raise(r: tuple[int, int]) -> bool:
    if r[0] == 1:
        raise Boom("accept failed")
    return False


def assert_charged_both_and_failed(cas: ai.Cascade) -> None:
    s = cas.stats()
    assert s["requests"] == 1 and s["errors"] == 1 and s["unaccepted"] == 0
    assert s["cost"] == 1.0 + 10.0
    assert s["baseline_cost"] == 10.0
    m0, m1 = s["models"]
    assert (m0["calls"], m0["rejected"], m0["escalated"], m0["cost"]) == (1, 1, 1, 1.0)
    assert (m1["calls"], m1["errors"], m1["escalated"], m1["cost"]) == (1, 1, 0, 10.0)
    for m in s["models"]:
        assert m["calls"] == m["accepted"] + m["rejected"] + m["errors"]
    assert s["cost"] == sum(m["cost"] for m in s["models"])


def test_accept_raising_still_records_the_call_and_the_request() -> None:
    cas = ai.Cascade(two_models(), accept=reject_then_raise)
    with pytest.raises(Boom, match="accept failed"):
        cas(1)
    assert_charged_both_and_failed(cas)


def test_count_tokens_raising_still_records_the_call_and_the_request() -> None:
    def count(obj: object) -> int:
        if isinstance(obj, tuple) and obj[0] == 1:
            raise Boom("count failed")
        return 1

    m0, m1 = two_models()
    cas = ai.Cascade(
        [
            ai.CascadeModel(m0[0], 1.0, accept=lambda r: False, name="m0"),
            ai.CascadeModel(m1[0], 10.0, cost_per_output_token=5.0, name="m1"),
        ],
        count_tokens=count,
    )
    with pytest.raises(Boom, match="count failed"):
        cas(1)
    # model 1 is charged its per-call cost (its output tokens could not be counted)
    assert_charged_both_and_failed(cas)


def test_sync_call_with_an_async_model_refuses_before_any_model_runs() -> None:
    calls: list[int] = []

    def m0(q: int) -> tuple[int, int]:
        calls.append(q)
        return (0, q)

    async def a1(q: int) -> tuple[int, int]:
        return (1, q)

    cas = ai.Cascade([(m0, 1.0), (a1, 10.0)], accept=lambda r: False)
    with pytest.raises(InputTypeError, match=r"models\[1\].*acall"):
        cas(1)
    assert calls == []
    s = cas.stats()
    assert s["requests"] == 0 and s["cost"] == 0.0
    assert [m["calls"] for m in s["models"]] == [0, 0]


def test_sync_model_returning_an_awaitable_is_recorded_as_a_failed_request() -> None:
    async def coro(q: int) -> int:
        return q

    cas = ai.Cascade([(lambda q: (0, q), 1.0), (lambda q: coro(q), 10.0)], accept=lambda r: False)
    with pytest.raises(InputTypeError, match="awaitable"):
        cas(1)
    s = cas.stats()
    assert s["requests"] == 1 and s["errors"] == 1 and s["cost"] == 11.0
    assert [m["calls"] for m in s["models"]] == [1, 1]


@pytest.mark.parametrize("async_", [False, True])
def test_acall_accept_raising_still_records_the_call_and_the_request(async_: bool) -> None:
    cas = ai.Cascade(two_models(async_), accept=reject_then_raise)
    with pytest.raises(Boom, match="accept failed"):
        asyncio.run(cas.acall(1))
    assert_charged_both_and_failed(cas)


def test_acall_count_tokens_raising_still_records_the_call_and_the_request() -> None:
    def count(obj: object) -> int:
        if isinstance(obj, tuple) and obj[0] == 1:
            raise Boom("count failed")
        return 1

    m0, a1 = two_models(async_=True)
    cas = ai.Cascade(
        [
            ai.CascadeModel(m0[0], 1.0, accept=lambda r: False, name="m0"),
            ai.CascadeModel(a1[0], 10.0, cost_per_output_token=5.0, name="m1"),
        ],
        count_tokens=count,
    )
    with pytest.raises(Boom, match="count failed"):
        asyncio.run(cas.acall(1))
    assert_charged_both_and_failed(cas)
