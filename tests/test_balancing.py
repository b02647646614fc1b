"""Balancer and ShardRouter: behaviour, errors, properties, concurrency."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import overdrive as od
from isolated import run_isolated
from overdrive.bench.replica_sim import simulate
from overdrive.exceptions import ConfigurationError, InputTypeError, NoBackendAvailable

STRATEGIES = ["load_score", "least_outstanding", "p2c", "round_robin"]


# --- Balancer ---------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_acquire_release_counts(strategy: str) -> None:
    lb = od.Balancer(4, strategy)
    held = [lb.acquire() for _ in range(10)]
    assert all(0 <= i < 4 for i in held)
    assert sum(lb.in_flight(i) for i in range(4)) == 10
    for i in held:
        lb.release(i, latency_s=0.01, ok=True)
    s = lb.stats()
    assert s["strategy"] == strategy
    assert s["picks"] == 10
    assert s["in_flight"] == 0
    assert sum(b["completed"] for b in s["backends"]) == 10


def test_least_outstanding_is_join_shortest_queue() -> None:
    lb = od.Balancer(3, "least_outstanding")
    first = sorted(lb.acquire() for _ in range(3))
    assert first == [0, 1, 2]
    lb.release(1)
    assert lb.acquire() == 1


def test_load_score_uses_reported_queue_utilisation() -> None:
    lb = od.Balancer(3)
    assert lb.strategy == "load_score"
    lb.report_queue(0, 0.9)
    lb.report_queue(1, 0.2)
    lb.report_queue(2, 0.5)
    assert lb.acquire() == 1
    assert lb.stats()["backends"][1]["queue_utilisation"] == pytest.approx(0.2)


def test_weights_follow_envoy_formula() -> None:
    lb = od.Balancer([1.0, 3.0], "least_outstanding")
    picks = [lb.acquire() for _ in range(8)]
    assert picks.count(1) == 6
    assert picks.count(0) == 2


def test_pick_context_manager_records_latency_and_errors() -> None:
    lb = od.Balancer(2, "round_robin")
    with lb.pick() as i:
        assert lb.in_flight(i) == 1
        time.sleep(0.001)
    assert lb.in_flight(i) == 0
    b = lb.stats()["backends"][i]
    assert b["ewma_latency_s"] is not None
    assert b["ewma_latency_s"] > 0
    with pytest.raises(KeyError), lb.pick() as j:
        raise KeyError("boom")
    assert lb.stats()["backends"][j]["errors"] == 1
    assert lb.stats()["in_flight"] == 0


def test_pick_cannot_be_entered_twice() -> None:
    lb = od.Balancer(2)
    p = lb.pick()
    with p, pytest.raises(ConfigurationError, match="pick"):
        p.__enter__()
    assert p.index is None


def test_mark_down_up_add_remove() -> None:
    lb = od.Balancer(2, "least_outstanding")
    lb.mark_down(0)
    assert lb.state(0) == "down"
    assert {lb.acquire() for _ in range(5)} == {1}
    j = lb.add(weight=1.0)
    assert j == 2
    assert len(lb) == 3
    assert lb.acquire() == 2
    lb.remove(1)
    assert lb.state(1) == "removed"
    for _ in range(5):
        lb.release(1)
    with pytest.raises(ConfigurationError, match="removed"):
        lb.mark_up(1)
    lb.mark_up(0)
    assert lb.state(0) == "up"


def test_all_backends_down_raises() -> None:
    lb = od.Balancer(2, "p2c")
    lb.mark_down(0)
    lb.mark_down(1)
    with pytest.raises(NoBackendAvailable):
        lb.acquire()
    assert isinstance(NoBackendAvailable("x"), RuntimeError)
    assert lb.stats()["no_backend"] == 1


def test_error_rate_ejects_then_probes() -> None:
    lb = od.Balancer(
        4, "least_outstanding", cooldown_s=0.05, eject_min_requests=3, eject_error_rate=0.5
    )
    for _ in range(20):
        for i in [lb.acquire() for _ in range(4)]:
            lb.release(i, latency_s=0.001, ok=i != 0)
        if lb.state(0) == "ejected":
            break
    assert lb.state(0) == "ejected"
    assert lb.stats()["backends"][0]["ejections"] == 1
    for _ in range(10):
        i = lb.acquire()
        assert i != 0
        lb.release(i)
    time.sleep(0.06)
    probe = lb.acquire()
    assert probe == 0
    assert lb.state(0) == "probing"
    lb.release(0, latency_s=0.001, ok=True)
    assert lb.state(0) == "up"


def test_failed_probe_ejects_again() -> None:
    lb = od.Balancer(4, "least_outstanding", cooldown_s=0.03, eject_min_requests=1)
    while lb.state(0) != "ejected":
        for i in [lb.acquire() for _ in range(4)]:
            lb.release(i, ok=i != 0)
    time.sleep(0.04)
    assert lb.acquire() == 0
    lb.release(0, ok=False)
    assert lb.state(0) == "ejected"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"backends": 0}, "backends"),
        ({"backends": -3}, "backends"),
        ({"backends": [1.0, -1.0]}, "weight"),
        ({"backends": 2, "strategy": "fastest"}, "strategy"),
        ({"backends": 2, "ewma_alpha": 0.0}, "ewma_alpha"),
        ({"backends": 2, "max_in_flight": 0}, "max_in_flight"),
        ({"backends": 2, "load_weight": -1.0}, "load_weight"),
        ({"backends": 2, "cooldown_s": -1.0}, "cooldown_s"),
        ({"backends": 2, "max_ejected_fraction": 2.0}, "max_ejected_fraction"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        od.Balancer(**kwargs)  # type: ignore[arg-type]


def test_backends_by_keyword() -> None:
    assert len(od.Balancer(n_backends=3)) == 3
    lb = od.Balancer(weights=[1.0, 2.0], strategy="p2c")
    assert [b["weight"] for b in lb.stats()["backends"]] == [1.0, 2.0]
    with pytest.raises(ConfigurationError, match="exactly one"):
        od.Balancer(2, n_backends=2)
    with pytest.raises(ConfigurationError, match="exactly one"):
        od.Balancer()


def test_bad_types_and_indices() -> None:
    with pytest.raises(InputTypeError):
        od.Balancer(True)
    with pytest.raises(InputTypeError):
        od.Balancer("4")  # type: ignore[arg-type]
    with pytest.raises(InputTypeError):
        od.Balancer(["a"])  # type: ignore[list-item]
    lb = od.Balancer(2)
    with pytest.raises(ConfigurationError, match="index=-1"):
        lb.release(-1)
    with pytest.raises(ConfigurationError, match="index=5"):
        lb.release(5)
    with pytest.raises(ConfigurationError, match="without a matching acquire"):
        lb.release(0)
    i = lb.acquire()
    with pytest.raises(ConfigurationError, match="latency_s"):
        lb.release(i, latency_s=float("nan"))
    with pytest.raises(ConfigurationError, match="utilisation"):
        lb.report_queue(0, 1.5)
    assert "Balancer(backends=2" in repr(lb)


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("acquire"), st.integers(0, 0)),
        st.tuples(st.just("release"), st.integers(0, 5)),
        st.tuples(st.just("down"), st.integers(0, 5)),
        st.tuples(st.just("up"), st.integers(0, 5)),
    ),
    max_size=200,
)


@given(ops=OPS, strategy=st.sampled_from(STRATEGIES))
def test_in_flight_counts_exact_under_any_sequence(
    ops: list[tuple[str, int]], strategy: str
) -> None:
    lb = od.Balancer(6, strategy)
    model = [0] * 6
    down: set[int] = set()
    for op, i in ops:
        if op == "acquire":
            if len(down) == 6:
                with pytest.raises(NoBackendAvailable):
                    lb.acquire()
                continue
            j = lb.acquire()
            assert j not in down
            model[j] += 1
        elif op == "release":
            if model[i] == 0:
                with pytest.raises(ConfigurationError):
                    lb.release(i)
            else:
                lb.release(i, latency_s=0.001)
                model[i] -= 1
        elif op == "down":
            lb.mark_down(i)
            down.add(i)
        else:
            lb.mark_up(i)
            down.discard(i)
        assert [lb.in_flight(k) for k in range(6)] == model
    s = lb.stats()
    assert s["in_flight"] == sum(model)


def test_eight_threads_stress_counts_add_up() -> None:
    lb = od.Balancer(64, "p2c")
    errors = [0] * 8
    per_thread = 5_000

    def work(t: int) -> None:
        rng = random.Random(t)
        for _ in range(per_thread):
            i = lb.acquire()
            ok = rng.random() > 0.01
            if not ok:
                errors[t] += 1
            lb.release(i, latency_s=0.001, ok=ok)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=60)
        assert not th.is_alive()
    s = lb.stats()
    assert s["picks"] == 8 * per_thread
    assert sum(b["completed"] for b in s["backends"]) == 8 * per_thread
    assert s["errors"] == sum(errors)
    assert s["in_flight"] == 0


def test_simulation_orders_strategies() -> None:
    """Virtual time (not a timing assert): JSQ beats P2C beats round robin at rho=0.9."""
    rr = simulate("round_robin", requests=30_000, warmup=3_000)
    p2c = simulate("p2c", requests=30_000, warmup=3_000)
    jsq = simulate("least_outstanding", requests=30_000, warmup=3_000)
    assert jsq.p99 < p2c.p99 < rr.p99


# --- ShardRouter ------------------------------------------------------------

NODES = [f"10.0.0.{i}:6379" for i in range(10)]


def test_route_types_and_stickiness() -> None:
    r = od.ShardRouter(NODES)
    for key in ["user:1", b"user:1", 1, -(2**63), 2**63 - 1, ""]:
        node = r.lookup(key)
        assert node in NODES
        assert all(r.lookup(key) == node for _ in range(3))
    assert r.nodes == NODES
    assert len(r) == 10
    assert r.load_factor == 1.25


def test_route_many_equals_route_one_by_one() -> None:
    keys = [f"k{i}" for i in range(2000)] + [b"b", 7]
    a = od.ShardRouter(NODES).route_many(keys)
    r = od.ShardRouter(NODES)
    assert a == [r.route(k) for k in keys]


@given(keys=st.lists(st.one_of(st.text(), st.binary(), st.integers(-(2**63), 2**63 - 1))))
def test_unbounded_route_is_plain_consistent_hashing(keys: list[str | bytes | int]) -> None:
    """With an effectively infinite load factor, route() is exactly lookup()."""
    r = od.ShardRouter(NODES, load_factor=1e12)
    assert r.route_many(keys) == [r.lookup(k) for k in keys]


@given(
    keys=st.lists(st.integers(0, 40), max_size=300),
    load_factor=st.floats(1.0, 2.0),
    n=st.integers(1, 8),
    weighted=st.booleans(),
)
def test_bounded_load_never_exceeded(
    keys: list[int], load_factor: float, n: int, weighted: bool
) -> None:
    nodes: dict[str, float] = {f"n{i}": (1.0 + i if weighted else 1.0) for i in range(n)}
    r = od.ShardRouter(nodes, load_factor=load_factor)
    for k in keys:
        r.route(k)
        for node in r.stats()["nodes"]:
            assert node["load"] <= node["cap"]
    assert r.stats()["load"] == len(keys)


def test_routing_is_deterministic_across_processes() -> None:
    keys: list[str | bytes | int] = [f"user:{i}" for i in range(300)]
    keys += [b"\x00\xff" * 3, 12345, -1, "prompt prefix: you are a helpful"]
    script = (
        "import json, sys, overdrive as od\n"
        "keys = json.loads(sys.stdin.read())\n"
        "keys = [bytes.fromhex(k[2:]) if str(k).startswith('b:') else k for k in keys]\n"
        f"r = od.ShardRouter({NODES!r})\n"
        "print(json.dumps([r.lookup(k) for k in keys] + r.route_many(keys)))\n"
    )
    encoded = [("b:" + k.hex()) if isinstance(k, bytes) else k for k in keys]
    out = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(encoded),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    r = od.ShardRouter(NODES)
    here = [r.lookup(k) for k in keys] + r.route_many(keys)
    assert json.loads(out.stdout) == here


def test_adding_a_node_moves_about_one_tenth() -> None:
    r = od.ShardRouter(NODES)
    keys = [f"user:{i}" for i in range(20_000)]
    before = [r.lookup(k) for k in keys]
    r.add_node("10.0.0.10:6379")
    after = [r.lookup(k) for k in keys]
    moved = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert 0.05 < len(moved) / len(keys) < 0.15
    assert all(b == "10.0.0.10:6379" for _, b in moved)
    r.remove_node("10.0.0.10:6379")
    assert [r.lookup(k) for k in keys] == before


def test_weighted_nodes_take_proportional_share() -> None:
    r = od.ShardRouter({"small": 1.0, "big": 2.0})
    keys = [f"k{i}" for i in range(30_000)]
    counts = {"small": 0, "big": 0}
    for k in keys:
        counts[r.lookup(k)] += 1
    assert 1.6 < counts["big"] / counts["small"] < 2.4


def test_zipf_keys_stay_within_bound() -> None:
    rng = random.Random(3)
    weights = [1.0 / (i + 1) for i in range(5000)]
    keys = rng.choices(range(5000), weights=weights, k=50_000)
    r = od.ShardRouter(NODES, load_factor=1.25)
    r.route_many(keys)
    loads = [n["load"] for n in r.stats()["nodes"]]
    assert sum(loads) == len(keys)
    assert max(loads) <= -(-1.25 * len(keys) // len(NODES))
    assert r.stats()["overflows"] > 0  # the hot keys did spill


def test_release_and_reset() -> None:
    r = od.ShardRouter(["a", "b"])
    node = r.route("key")
    assert r.stats()["load"] == 1
    r.release(node)
    assert r.stats()["load"] == 0
    with pytest.raises(ConfigurationError, match="release without"):
        r.release(node)
    r.route_many(["x", "y", "z"])
    r.reset_loads()
    assert r.stats()["load"] == 0


def test_router_errors() -> None:
    with pytest.raises(ConfigurationError, match="load_factor"):
        od.ShardRouter(["a"], load_factor=0.5)
    with pytest.raises(ConfigurationError, match="nodes"):
        od.ShardRouter([])
    with pytest.raises(ConfigurationError, match="distinct"):
        od.ShardRouter(["a", "a"])
    with pytest.raises(InputTypeError):
        od.ShardRouter("ab")
    r = od.ShardRouter(["a", "b"])
    with pytest.raises(InputTypeError, match="float"):
        r.route(1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="64 bits"):
        r.route(2**70)
    with pytest.raises(ConfigurationError, match="not a node"):
        r.release("zzz")
    with pytest.raises(ConfigurationError, match="already"):
        r.add_node("a")
    with pytest.raises(ConfigurationError, match="ring points"):
        r.add_node("huge", weight=1e9)
    with pytest.raises(ConfigurationError, match="weight"):
        r.add_node("neg", weight=-1.0)
    r.remove_node("a")
    with pytest.raises(ConfigurationError, match="last node"):
        r.remove_node("b")
    assert r.route("anything") == "b"
    assert "ShardRouter(nodes=1" in repr(r)


def test_huge_backend_count_is_refused_before_allocating() -> None:
    with pytest.raises(ConfigurationError, match="backends"):
        od.Balancer(10**12)


def test_route_many_with_a_bad_key_counts_no_load() -> None:
    r = od.ShardRouter(["a", "b", "c"])
    with pytest.raises(InputTypeError):
        r.route_many(["k1", "k2", 1.5])
    assert r.stats()["load"] == 0
    assert len(r.route_many(["k1", "k2", b"k3", 4])) == 4
    assert r.stats()["load"] == 4


def test_router_weights_from_a_dict_snapshot() -> None:
    class Weight:
        def __init__(self, d: dict[str, object]) -> None:
            self.d = d

        def __float__(self) -> float:
            self.d["late"] = 1.0  # mutating the dict while it is read
            return 2.0

    nodes: dict[str, object] = {"a": 1.0}
    nodes["b"] = Weight(nodes)
    r = od.ShardRouter(nodes)
    assert sorted(r.nodes) == ["a", "b"]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"n_backends": 0}, "n_backends"),
        ({"weights": []}, "weights"),
        ({"backends": 0}, "backends"),
    ],
)
def test_errors_name_the_argument_given(kwargs: dict[str, object], param: str) -> None:
    with pytest.raises(ConfigurationError, match=param):
        od.Balancer(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match=rf"^{param} must be"):
        od.Balancer(**{param: "nope"})  # type: ignore[arg-type]


# --- arguments: every bad number or type is an overdrive error ----------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: od.Balancer(2**70), "backends=1180591620717411303424"),
        (lambda: od.Balancer(n_backends=-(2**64)), "n_backends=-18446744073709551616"),
        (lambda: od.Balancer([1.0, 10**400]), "backends=1000.*too large for a float"),
        (lambda: od.Balancer(2, max_in_flight=2**64), "max_in_flight=18446744073709551616"),
        (lambda: od.Balancer(2, eject_min_requests=-1), "eject_min_requests=-1"),
        (lambda: od.Balancer(2, cooldown_s=10**400), "cooldown_s="),
        (lambda: od.Balancer(2).release(2**64), "index=18446744073709551616"),
        (lambda: od.Balancer(2).mark_down(-(2**70)), "index=-1180591620717411303424"),
        (lambda: od.Balancer(2).add(weight=10**400), "weight="),
        (lambda: od.ShardRouter(["a"], vnodes=-1), "vnodes=-1"),
        (lambda: od.ShardRouter(["a"], vnodes=2**64), "vnodes=18446744073709551616"),
        (lambda: od.ShardRouter(["a"], load_factor=10**400), "load_factor="),
        (lambda: od.ShardRouter({"a": 10**400}), "weight="),
        (lambda: od.ShardRouter(["a"]).route("\ud800"), "key="),
    ],
)
def test_huge_numbers_are_configuration_errors(call: Any, match: str) -> None:
    # pyo3's own conversion raised OverflowError (or UnicodeEncodeError).
    with pytest.raises(ConfigurationError, match=match):
        call()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: od.Balancer(2, strategy=None), "strategy must be a str, not NoneType"),
        (lambda: od.Balancer(2, load_weight="1"), "load_weight must be a number, not str"),
        (lambda: od.Balancer(2, max_in_flight=1.5), "max_in_flight must be an int, not float"),
        (lambda: od.Balancer(2).release(0, latency_s="x"), "latency_s must be a number or None"),
        (lambda: od.Balancer(2).release(0, ok=None), "ok must be a bool"),
        (lambda: od.Balancer(2).report_queue(0, []), "utilisation must be a number, not list"),
        (lambda: od.Balancer(2).state("0"), "index must be an int, not str"),
        (lambda: od.ShardRouter(["a"], load_factor="x"), "load_factor must be a number"),
        (lambda: od.ShardRouter(["a"], vnodes=None), "vnodes must be an int"),
        (lambda: od.ShardRouter(["a"]).add_node("b", weight=None), "weight must be a number"),
        (lambda: od.ShardRouter(["a"]).route_many(None), "keys must be an iterable"),
    ],
)
def test_wrong_types_are_input_type_errors(call: Any, match: str) -> None:
    # pyo3's own conversion raised a bare TypeError.
    with pytest.raises(InputTypeError, match=match):
        call()


def test_a_numpy_int_still_counts_backends() -> None:
    import numpy as np

    assert len(od.Balancer(np.int64(3))) == 3


def test_the_ring_size_is_capped_before_allocating() -> None:
    # Each node may have a million ring points; a thousand such nodes made
    # the ring a billion points (16 GB) and the allocation abort the process.
    out = run_isolated(
        """
        import overdrive as od
        try:
            od.ShardRouter({f"n{i}": 6250.0 for i in range(1000)})
        except od.ConfigurationError as e:
            print("ConfigurationError:", e)
        r = od.ShardRouter({f"n{i}": 6250.0 for i in range(16)})  # 16 M points: fine
        try:
            r.add_node("one-more", weight=6250.0)
        except od.ConfigurationError as e:
            print("ConfigurationError:", e)
        print(len(r))
        """
    )
    assert out.count("ConfigurationError:") == 2, out
    assert "the ring would hold 1000000000 points" in out
    assert "the ring would hold 17000000 points" in out
    assert out.split()[-1] == "16"


def test_a_router_in_a_reference_cycle_is_collected() -> None:
    import gc
    import weakref

    class Token:
        pass

    class Node(str):
        router: object = None
        token: Token | None = None

    node = Node("a")
    node.token = Token()  # str subclasses take no weakrefs; the token does
    r = od.ShardRouter([node, "b"])
    node.router = r  # router -> node -> router
    ref = weakref.ref(node.token)
    del r, node
    gc.collect()
    assert ref() is None
