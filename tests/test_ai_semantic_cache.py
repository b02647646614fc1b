"""SemanticCache: exact hits first, cosine top-1 above the threshold, LRU bound,
TTL, thread safety, and an evaluation helper whose numbers are exact."""

from __future__ import annotations

import asyncio
import collections
import itertools
import math
import threading
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overdrive import ai
from overdrive.exceptions import ConfigurationError, InputTypeError


def angle(deg: float, dim: int = 4) -> list[float]:
    """A vector at ``deg`` degrees from (1, 0, ...): cosine similarity is cos(delta)."""
    v = [0.0] * dim
    v[0], v[1] = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return v


class Table:
    """embed_fn from a fixed table (text -> vector); counts calls."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([self.table[t] for t in texts], dtype=np.float64)


def cos_deg(similarity: float) -> float:
    return math.degrees(math.acos(similarity))


NEAR = cos_deg(0.95)  # similarity 0.95 to "base"
FAR = cos_deg(0.90)  # similarity 0.90 to "base"


def table() -> Table:
    return Table(
        {
            "base": angle(0),
            "near": angle(NEAR),
            "far": angle(FAR),
            "other side": angle(-NEAR / 2),  # 0.987 to base
            "orthogonal": angle(90),
            "zero": [0.0, 0.0, 0.0, 0.0],
            "Hello world": angle(180),
            "hello world": angle(179),
        }
    )


def test_exact_hit_first_without_embedding() -> None:
    fn = table()
    sc = ai.SemanticCache(fn, threshold=0.92)
    sc.set("Hello world", "greeting")
    assert fn.calls == [["Hello world"]]
    hit = sc.lookup("  Hello \t world ")
    assert hit == ai.SemanticHit("greeting", 1.0, "Hello world", True)
    assert fn.calls == [["Hello world"]]  # no embedding for an exact hit
    hit2 = sc.lookup("hello world")  # case kept: not exact, but similar
    assert hit2 is not None and not hit2.exact and hit2.response == "greeting"
    assert hit2.similarity == pytest.approx(math.cos(math.radians(1)), abs=1e-6)
    assert sc.stats()["exact_hits"] == 1 and sc.stats()["semantic_hits"] == 1


def test_threshold_respected_above_and_below() -> None:
    sc = ai.SemanticCache(table(), threshold=0.92)
    sc.set("base", "B")
    near = sc.lookup("near")
    assert near is not None and near.response == "B" and near.prompt == "base"
    assert near.similarity == pytest.approx(0.95, abs=1e-6)
    assert sc.lookup("far") is None  # 0.90 < 0.92
    assert sc.get("far", "default") == "default"
    assert sc.lookup("orthogonal") is None
    assert sc.lookup("zero") is None  # a zero vector matches nothing
    low = ai.SemanticCache(table(), threshold=0.85)
    low.set("base", "B")
    assert low.get("far") == "B"  # 0.90 >= 0.85


def test_top1_is_the_nearest() -> None:
    sc = ai.SemanticCache(table(), threshold=0.5)
    sc.set("far", "F")
    sc.set("other side", "O")
    sc.set("orthogonal", "X")
    hit = sc.lookup("base")  # 0.90 to far, 0.987 to other side
    assert hit is not None and hit.response == "O"


def test_get_then_set_embeds_once() -> None:
    fn = table()
    sc = ai.SemanticCache(fn)
    sc.set("orthogonal", "X")
    assert sc.get("base") is None
    sc.set("base", "B")
    assert fn.calls == [["orthogonal"], ["base"]]
    sc.set("base", "B2")  # replaces: same vector, no embedding
    assert len(fn.calls) == 2 and len(sc) == 2
    assert sc.get("base") == "B2"
    assert sc.stats()["updates"] == 1


def test_lru_eviction_bound_and_slot_reuse() -> None:
    vecs = {f"p{i}": angle(0, 8) for i in range(6)}
    for i in range(6):  # mutually orthogonal: no semantic hits between them
        vecs[f"p{i}"] = [1.0 if j == i else 0.0 for j in range(8)]
    sc = ai.SemanticCache(Table(vecs), max_entries=3)
    for p in ("p0", "p1", "p2"):
        sc.set(p, p.upper())
    assert sc.get("p0") == "P0"  # p0 now most recently used
    sc.set("p3", "P3")  # evicts p1, the least recently used
    assert len(sc) == 3
    assert sc.get("p1") is None
    assert [sc.get(p) for p in ("p0", "p2", "p3")] == ["P0", "P2", "P3"]
    sc.set("p4", "P4")
    sc.set("p5", "P5")
    assert len(sc) == 3
    s = sc.stats()
    assert s["evictions"] == 3
    assert s["capacity"] == 3  # the matrix never grows past max_entries
    assert sc.get("p0") is None and sc.get("p2") is None
    assert sc.delete("p5") is True and sc.delete("p5") is False
    assert sc.get("p5") is None
    sc.clear()
    assert len(sc) == 0 and sc.get("p4") is None


def test_matrix_grows_by_doubling() -> None:
    rng = np.random.default_rng(1)
    vecs = {f"t{i}": rng.standard_normal(8).tolist() for i in range(300)}
    sc = ai.SemanticCache(Table(vecs), max_entries=1000, threshold=0.9999)
    caps = []
    for i in range(300):
        sc.set(f"t{i}", i)
        caps.append(sc.stats()["capacity"])
    assert sorted(set(caps)) == [64, 128, 256, 512]
    assert all(sc.get(f"t{i}") == i for i in range(0, 300, 7))


def test_ttl_expires_exact_and_semantic_hits() -> None:
    now = [100.0]
    sc = ai.SemanticCache(table(), ttl=10, clock=lambda: now[0], max_entries=2)
    sc.set("base", "B")
    now[0] += 9.9
    assert sc.get("base") == "B" and sc.get("near") == "B"
    now[0] += 0.2
    assert sc.get("near") is None
    assert sc.get("base") is None
    sc.set("orthogonal", "X")
    sc.set("far", "F")
    now[0] += 11
    sc.set("Hello world", "H")  # full: the expired entries go first
    s = sc.stats()
    assert s["expirations"] >= 2 and s["evictions"] == 0
    assert sc.get("Hello world") == "H"


# --- a model-based check: same answers as a brute-force reference -------------------------

_RNG = np.random.default_rng(7)
_PROMPTS = [f"q{i}" for i in range(12)]
_VECS = {p: _RNG.standard_normal(3) for p in _PROMPTS}
_UNIT = {p: (v / np.linalg.norm(v)).astype(np.float32) for p, v in _VECS.items()}
_THRESHOLD = 0.8
# the reference must not depend on float rounding: no similarity within 1e-4 of
# the threshold or of another candidate's
_SIMS = sorted(float(_UNIT[a] @ _UNIT[b]) for a, b in itertools.combinations(_PROMPTS, 2))
assert all(abs(s - _THRESHOLD) > 1e-4 for s in _SIMS)
assert all(b - a > 1e-6 for a, b in itertools.pairwise(_SIMS))


class Reference:
    def __init__(self, max_entries: int) -> None:
        self.max = max_entries
        self.d: collections.OrderedDict[str, Any] = collections.OrderedDict()

    def set(self, p: str, r: Any) -> None:
        if p not in self.d and len(self.d) >= self.max:
            self.d.popitem(last=False)
        self.d[p] = r
        self.d.move_to_end(p)

    def get(self, p: str) -> Any:
        if p in self.d:
            self.d.move_to_end(p)
            return self.d[p]
        best = max(self.d, key=lambda c: float(_UNIT[c] @ _UNIT[p]), default=None)
        if best is None or float(_UNIT[best] @ _UNIT[p]) < _THRESHOLD:
            return None
        self.d.move_to_end(best)
        return self.d[best]


ops_st = st.lists(
    st.tuples(st.sampled_from(["set", "get"]), st.sampled_from(_PROMPTS), st.integers(0, 9)),
    max_size=60,
)


@settings(max_examples=100)
@given(ops_st, st.integers(1, 6))
def test_matches_brute_force_reference(ops: list[tuple[str, str, int]], bound: int) -> None:
    sc = ai.SemanticCache(
        Table({p: v.tolist() for p, v in _VECS.items()}), _THRESHOLD, max_entries=bound
    )
    ref = Reference(bound)
    for op, p, r in ops:
        if op == "set":
            sc.set(p, r)
            ref.set(p, r)
        else:
            assert sc.get(p) == ref.get(p)
        assert len(sc) == len(ref.d) <= bound


# --- evaluation ----------------------------------------------------------------------------


def test_evaluate_numbers_are_exact() -> None:
    sc = ai.SemanticCache(table(), threshold=0.92)
    pairs = [
        ("near", "base", True),  # 0.95: hit, right
        ("far", "base", True),  # 0.90: missed
        ("other side", "base", False),  # 0.987: hit, wrong
        ("orthogonal", "base", False),  # 0.0: no hit, right
        ("base", " base ", True),  # same normalised text: exact hit, right
    ]
    ev = sc.evaluate(pairs)
    assert ev == ai.SemanticEvaluation(
        threshold=0.92,
        pairs=5,
        true_positives=2,
        false_positives=1,
        false_negatives=1,
        true_negatives=1,
        precision=2 / 3,
        recall=2 / 3,
        f1=2 / 3,
        hit_rate=3 / 5,
    )
    assert len(sc) == 0  # evaluation leaves the cache alone
    rows = sc.sweep(pairs, [0.85, 0.99])
    assert [
        (r.threshold, r.true_positives, r.false_positives, r.false_negatives) for r in rows
    ] == [
        (0.85, 3, 1, 0),
        (0.99, 1, 0, 2),
    ]
    assert rows[0].precision == 3 / 4 and rows[0].recall == 1.0
    assert rows[1].precision == 1.0 and rows[1].recall == 1 / 3
    none = sc.evaluate([("orthogonal", "base", False)])
    assert (none.precision, none.recall, none.f1, none.hit_rate) == (None, None, None, 0.0)
    assert sc.evaluate([]).pairs == 0


def test_aevaluate_and_asweep_with_an_async_embed_fn_match_the_sync_ones() -> None:
    sync_table = table()

    async def aembed(texts: list[str]) -> Any:
        return sync_table(texts)

    pairs = [("near", "base", True), ("far", "base", True), ("other side", "base", False)]
    sync = ai.SemanticCache(table(), threshold=0.92)
    asc = ai.SemanticCache(aembed, threshold=0.92)
    with pytest.raises(InputTypeError, match="async"):
        asc.evaluate(pairs)  # the sync helper cannot await the model

    async def run() -> tuple[Any, Any]:
        return await asc.aevaluate(pairs), await asc.asweep(pairs, [0.85, 0.99])

    ev, rows = asyncio.run(run())
    assert ev == sync.evaluate(pairs)
    assert rows == sync.sweep(pairs, [0.85, 0.99])


def test_evaluate_bad_input_is_typed() -> None:
    sc = ai.SemanticCache(table())
    with pytest.raises(InputTypeError, match="labelled_pairs"):
        sc.evaluate("base")
    with pytest.raises(InputTypeError, match=r"labelled_pairs\[0\]"):
        sc.evaluate([("base", "near")])
    with pytest.raises(InputTypeError, match=r"labelled_pairs\[0\]\[2\]"):
        sc.evaluate([("base", "near", "yes")])
    with pytest.raises(InputTypeError, match=r"labelled_pairs\[0\]\[1\]"):
        sc.evaluate([("base", 3, True)])
    with pytest.raises(ConfigurationError, match=r"thresholds\[1\]"):
        sc.sweep([], [0.5, 2.0])
    with pytest.raises(ConfigurationError, match="threshold"):
        sc.evaluate([], threshold=0.0)


# --- arguments and vectors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"embed_fn": None}, InputTypeError, "embed_fn"),
        ({"threshold": 0.0}, ConfigurationError, "threshold"),
        ({"threshold": 1.5}, ConfigurationError, "threshold"),
        ({"threshold": "0.9"}, InputTypeError, "threshold"),
        ({"threshold": True}, InputTypeError, "threshold"),
        ({"max_entries": 0}, ConfigurationError, "max_entries"),
        ({"max_entries": 2.5}, InputTypeError, "max_entries"),
        ({"ttl": 0}, ConfigurationError, "ttl"),
        ({"ttl": "5"}, InputTypeError, "ttl"),
        ({"normalize": 1}, InputTypeError, "normalize"),
        ({"dim": -1}, ConfigurationError, "dim"),
        ({"clock": 5}, InputTypeError, "clock"),
        ({"name": None}, InputTypeError, "name"),
    ],
)
def test_bad_arguments_are_typed(kwargs: dict[str, Any], exc: type, match: str) -> None:
    args: dict[str, Any] = {"embed_fn": table(), **kwargs}
    with pytest.raises(exc, match=match):
        ai.SemanticCache(**args)


def test_wrong_vectors_are_configuration_errors() -> None:
    fn = table()
    fn.table["three"] = [1.0, 0.0, 0.0]
    fn.table["nan"] = [math.nan, 0.0, 0.0, 0.0]
    sc = ai.SemanticCache(fn)
    sc.set("base", "B")
    with pytest.raises(ConfigurationError, match=r"dimension 3.*'three'.*dimension 4"):
        sc.set("three", "T")
    with pytest.raises(ConfigurationError, match="dimension 3"):
        sc.get("three")
    with pytest.raises(ConfigurationError, match="NaN"):
        sc.set("nan", "N")
    assert len(sc) == 1
    pinned = ai.SemanticCache(fn, dim=3)
    with pytest.raises(ConfigurationError, match="dimension 4"):
        pinned.set("base", "B")
    with pytest.raises(InputTypeError, match="prompt"):
        sc.get(3)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="prompt"):
        sc.set(b"base", "B")  # type: ignore[arg-type]
    bad = ai.SemanticCache(lambda texts: [[1.0], [2.0]])
    with pytest.raises(ConfigurationError, match="1 texts"):
        bad.set("a", 1)


# --- asyncio and threads -------------------------------------------------------------------


def test_async_with_async_embed_fn_and_embedding_cache() -> None:
    fn = table()

    async def aembed(texts: list[str]) -> np.ndarray:
        await asyncio.sleep(0)
        return fn(texts)

    async def run(sc: ai.SemanticCache) -> list[Any]:
        assert await sc.aget("base") is None
        await sc.aset("base", "B")
        hit = await sc.alookup("near")
        return [await sc.aget("base"), hit.response if hit else None, await sc.aget("far")]

    assert asyncio.run(run(ai.SemanticCache(aembed))) == ["B", "B", None]
    with pytest.raises(InputTypeError, match="aget"):
        ai.SemanticCache(aembed).set("base", "B")
    ec = ai.EmbeddingCache(fn, model_id="table")
    sc = ai.SemanticCache(ec)
    assert asyncio.run(run(sc)) == ["B", "B", None]
    sc2 = ai.SemanticCache(ec)  # the prompt vectors come from the EmbeddingCache now
    before = len(fn.calls)
    sc2.set("base", "B")
    assert sc2.get("near") == "B"
    assert len(fn.calls) == before
    assert asyncio.run(run(ai.SemanticCache(fn))) == ["B", "B", None]  # sync fn off the loop


def test_threads_set_and_get_concurrently() -> None:
    rng = np.random.default_rng(3)
    n = 400
    vecs = {f"k{i}": rng.standard_normal(32).tolist() for i in range(n)}
    sc = ai.SemanticCache(Table(vecs), threshold=0.99, max_entries=300)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker(w: int) -> None:
        try:
            barrier.wait()
            for i in range(w, n, 6):
                sc.set(f"k{i}", i)
                got = sc.get(f"k{i}")
                assert got is None or got == i  # may already be evicted, never wrong
                j = (i * 7) % n
                other = sc.get(f"k{j}")
                assert other is None or other == j
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    s = sc.stats()
    assert len(sc) == s["entries"] == 300
    assert s["sets"] == n and s["evictions"] == n - 300
    assert s["hits"] + s["misses"] == 2 * n
    kept = [i for i in range(n) if sc.get(f"k{i}") == i]
    assert len(kept) == 300
    assert "SemanticCache" in repr(sc)


def test_set_many_embeds_new_prompts_in_one_call() -> None:
    fn = table()
    sc = ai.SemanticCache(fn, max_entries=3)
    sc.set("base", "B")
    sc.set_many({"orthogonal": "X", "far": "F", " base": "B2"})
    assert fn.calls == [["base"], ["orthogonal", "far"]]
    assert [sc.get(p) for p in ("base", "orthogonal", "far")] == ["B2", "X", "F"]
    # an entry evicted by an earlier item of the same call keeps its vector
    one = ai.SemanticCache(fn, max_entries=1)
    one.set("base", "B")
    one.set_many([("orthogonal", "X"), ("base", "B3")])
    assert len(one) == 1 and one.get("base") == "B3" and one.get("near") == "B3"
    sc.set_many([])
    with pytest.raises(InputTypeError, match=r"items\[0\]"):
        sc.set_many([("only prompt",)])  # type: ignore[list-item]
    with pytest.raises(InputTypeError, match="items"):
        sc.set_many("base")  # type: ignore[arg-type]

    async def run() -> Any:
        fresh = ai.SemanticCache(fn)
        await fresh.aset_many({"base": "B", "Hello world": "H"})
        return await fresh.aget("near"), await fresh.aget("hello world")

    assert asyncio.run(run()) == ("B", "H")


def test_async_search_of_a_large_index_runs_off_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    from overdrive.ai import semantic_cache

    monkeypatch.setattr(semantic_cache, "_ASYNC_OFFLOAD", 0)  # every search counts as large
    sc = ai.SemanticCache(table())

    async def run() -> Any:
        await sc.aset("base", "B")
        return await sc.aget("near"), await sc.aget("far"), await sc.aget("base")

    assert asyncio.run(run()) == ("B", None, "B")
