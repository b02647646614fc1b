"""EmbeddingCache: vectors through the cache equal embed_fn's, bit for bit;
only misses are computed, in one batched call; models never share vectors."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from overdrive import ai
from overdrive.cache import DiskTier, MemoryTier, RedisTier, TieredCache
from overdrive.exceptions import ConfigurationError, InputTypeError

DIM = 16


def bow(texts: Sequence[str], dim: int = DIM, seed: bytes = b"") -> np.ndarray:
    """Hashed bag of words (float64, L2-normalised): deterministic, no downloads."""
    out = np.zeros((len(texts), dim))
    for i, text in enumerate(texts):
        for word in text.lower().split():
            h = hashlib.blake2b(seed + word.encode(), digest_size=8).digest()
            out[i, int.from_bytes(h[:4], "little") % dim] += 1.0 + h[4] / 255.0
        norm = np.linalg.norm(out[i])
        if norm:
            out[i] /= norm
    return out


class Recorder:
    """An embed_fn that records each batch it is given."""

    def __init__(self, dim: int = DIM, seed: bytes = b"", delay: float = 0.0) -> None:
        self.dim, self.seed, self.delay = dim, seed, delay
        self.batches: list[list[str]] = []
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self.lock:
            self.batches.append(list(texts))
        if self.delay:
            time.sleep(self.delay)
        return bow(texts, self.dim, self.seed)

    @property
    def computed(self) -> list[str]:
        return [t for b in self.batches for t in b]


def direct(texts: Sequence[str], seed: bytes = b"", dim: int = DIM) -> np.ndarray:
    """What embed_fn returns for the normalised texts, as float32."""
    return np.asarray(bow([ai.normalize_text(t) for t in texts], dim, seed), dtype=np.float32)


def same_bits(got: Sequence[np.ndarray], want: np.ndarray) -> bool:
    return len(got) == len(want) and all(
        g.dtype == np.float32 and g.tobytes() == w.tobytes() for g, w in zip(got, want, strict=True)
    )


WORDS = ["alpha", "beta", "gamma", "delta", "Alpha", "é", "e\u0301", " ", "\t", "x y"]
texts_st = st.lists(
    st.lists(st.sampled_from(WORDS), min_size=0, max_size=4).map(" ".join), max_size=12
)


@settings(max_examples=60)
@given(st.lists(texts_st, min_size=1, max_size=5))
def test_equals_embed_fn_and_computes_only_misses(calls: list[list[str]]) -> None:
    fn = Recorder()
    ec = ai.EmbeddingCache(fn, model_id="bow")
    seen: set[str] = set()
    for texts in calls:
        before = len(fn.batches)
        got = ec.embed_many(texts)
        assert same_bits(got, direct(texts))
        norm = [ai.normalize_text(t) for t in texts]
        new = list(dict.fromkeys(t for t in norm if t not in seen))
        if new:  # one batched call holding exactly the misses, each once
            assert fn.batches[before:] == [new]
        else:
            assert len(fn.batches) == before
        seen.update(norm)
    s = ec.stats()
    assert s["computed"] == len(seen) == len(fn.computed)
    assert s["requests"] == sum(len(t) for t in calls)
    assert s["hits"] + s["misses"] + s["duplicates"] == s["requests"]


@settings(max_examples=30)
@given(st.lists(st.text(max_size=8), max_size=10))
def test_normalize_false_is_bit_exact_on_any_text(texts: list[str]) -> None:
    fn = Recorder()
    ec = ai.EmbeddingCache(fn, model_id="raw", normalize=False)
    want = np.asarray(bow(texts), dtype=np.float32)
    assert same_bits(ec.embed_many(texts), want)
    assert same_bits(ec.embed_many(texts), want)  # the second time from the cache
    assert len(fn.computed) == len(set(texts))


def test_normalisation_documented_behaviour() -> None:
    assert ai.normalize_text("  Hello,\u00a0\t World \n") == "Hello, World"
    assert ai.normalize_text("e\u0301") == "\u00e9"  # NFC
    assert ai.normalize_text("Case") != ai.normalize_text("case")  # case kept
    fn = Recorder()
    ec = ai.EmbeddingCache(fn, model_id="bow")
    a, b = ec.embed_many([" a  b", "a b "])
    assert fn.batches == [["a b"]]  # normalised text sent, once
    assert a.tobytes() == b.tobytes()
    ec2 = ai.EmbeddingCache(fn, model_id="lower", normalize=str.lower)
    ec2.embed_many(["ABC", "abc"])
    assert fn.batches[-1] == ["abc"]


def test_duplicates_in_one_call_computed_once_order_kept() -> None:
    fn = Recorder()
    ec = ai.EmbeddingCache(fn, model_id="bow")
    texts = ["b", "a", "b", "c", "a", "b"]
    got = ec.embed_many(texts)
    assert fn.batches == [["b", "a", "c"]]
    assert same_bits(got, direct(texts))
    assert ec.stats()["duplicates"] == 3


def test_model_ids_never_share_vectors() -> None:
    tier = MemoryTier(max_entries=1000)
    f1, f2 = Recorder(seed=b"one"), Recorder(seed=b"two")
    e1 = ai.EmbeddingCache(f1, model_id="m1", cache=tier)
    e2 = ai.EmbeddingCache(f2, model_id="m2", cache=tier)
    texts = ["shared text", "another one"]
    v1, v2 = e1.embed_many(texts), e2.embed_many(texts)
    assert same_bits(v1, direct(texts, b"one"))
    assert same_bits(v2, direct(texts, b"two"))
    assert f1.computed == texts and f2.computed == texts
    assert e1.key("x") != e2.key("x")
    assert ai.embedding_key("ab", "c") != ai.embedding_key("b", "ca")  # no concatenation clash
    assert e1.embed_many(texts)[0].tobytes() == v1[0].tobytes()
    assert len(f1.batches) == 1


def test_disk_tier_round_trips_the_bytes(tmp_path: Path) -> None:
    texts = ["the quick brown fox", "jumps over", "the lazy dog", "jumps over"]
    want = direct(texts)
    disk = DiskTier(tmp_path / "emb.db", ttl=None)
    ec = ai.EmbeddingCache(Recorder(), model_id="bow", cache=disk)
    assert same_bits(ec.embed_many(texts), want)
    disk.close()

    def refuse(texts: list[str]) -> np.ndarray:
        raise AssertionError(f"computed {texts} although they are on disk")

    disk2 = DiskTier(tmp_path / "emb.db", ttl=None)
    ec2 = ai.EmbeddingCache(refuse, model_id="bow", cache=disk2)
    assert same_bits(ec2.embed_many(texts), want)
    assert ec2.stats()["hits"] == 3
    assert ec2.dim == DIM  # learnt from the stored bytes
    # through a TieredCache (memory over disk): hits promoted, still exact
    tc = TieredCache([MemoryTier(max_entries=100), disk2])
    ec3 = ai.EmbeddingCache(refuse, model_id="bow", cache=tc)
    assert same_bits(ec3.embed_many(texts), want)
    assert same_bits(ec3.embed_many(texts), want)
    assert tc.stats()["tiers"][0]["hits"] >= 3
    disk2.close()


def test_redis_tier_sync_and_async(redis_server: str) -> None:
    texts = ["redis one", "redis two", "redis one"]
    tier = RedisTier(url=redis_server, prefix="test-ai-emb:", ttl=60)
    tier.clear()
    fn = Recorder()
    ec = ai.EmbeddingCache(fn, model_id="bow", cache=tier)
    assert same_bits(ec.embed_many(texts), direct(texts))
    assert same_bits(ec.embed_many(texts), direct(texts))
    assert fn.batches == [["redis one", "redis two"]]

    async def run() -> list[np.ndarray]:
        return await ec.aembed_many([*texts, "redis three"])

    assert same_bits(asyncio.run(run()), direct([*texts, "redis three"]))
    assert fn.batches[-1] == ["redis three"]
    tier.clear()
    tier.close()


def test_async_embed_fn_and_single_flight() -> None:
    fn = Recorder()
    calls = 0

    async def aembed(texts: list[str]) -> np.ndarray:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # every task below joins while this runs
        return fn(texts)

    ec = ai.EmbeddingCache(aembed, model_id="bow")

    async def run() -> list[list[np.ndarray]]:
        return await asyncio.gather(*(ec.aembed_many(["same", f"t{i}"]) for i in range(8)))

    results = asyncio.run(run())
    for i, got in enumerate(results):
        assert same_bits(got, direct(["same", f"t{i}"]))
    assert sorted(fn.computed) == sorted(["same"] + [f"t{i}" for i in range(8)])
    assert calls == 8  # one batched call per task, "same" in only one of them
    assert ec.stats()["coalesced"] == 7
    with pytest.raises(InputTypeError, match="aembed"):
        ec.embed_many(["sync call of an async fn"])

    async def one() -> np.ndarray:
        return await ec.aembed("t3")

    assert asyncio.run(one()).tobytes() == direct(["t3"])[0].tobytes()


def test_sync_embed_fn_from_async_runs_off_the_loop() -> None:
    loop_threads: list[int] = []
    fn = Recorder()

    def embed(texts: list[str]) -> np.ndarray:
        loop_threads.append(threading.get_ident())
        return fn(texts)

    ec = ai.EmbeddingCache(embed, model_id="bow")

    async def run() -> tuple[int, list[np.ndarray]]:
        return threading.get_ident(), await ec.aembed_many(["a", "b"])

    loop_thread, got = asyncio.run(run())
    assert same_bits(got, direct(["a", "b"]))
    assert loop_threads and loop_threads[0] != loop_thread


def test_threads_compute_each_text_once() -> None:
    fn = Recorder(delay=0.02)
    ec = ai.EmbeddingCache(fn, model_id="bow")
    words = [f"w{i}" for i in range(12)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            barrier.wait()
            for r in range(4):
                texts = [words[(n + r + j) % len(words)] for j in range(5)]
                assert same_bits(ec.embed_many(texts), direct(texts))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(fn.computed) == sorted(words)  # each text computed exactly once
    s = ec.stats()
    assert s["computed"] == len(words)
    assert s["requests"] == 8 * 4 * 5


def test_embed_fn_error_reaches_every_waiter_and_is_not_cached() -> None:
    started = threading.Event()
    fail = True

    def flaky(texts: list[str]) -> np.ndarray:
        if fail:
            started.set()
            time.sleep(0.1)
            raise RuntimeError("model down")
        return bow(texts)

    ec = ai.EmbeddingCache(flaky, model_id="bow")
    seen: list[BaseException] = []

    def follower() -> None:
        started.wait(5)
        try:
            ec.embed_many(["x"])
        except RuntimeError as exc:
            seen.append(exc)

    t = threading.Thread(target=follower)
    t.start()
    with pytest.raises(RuntimeError, match="model down"):
        ec.embed_many(["x"])
    t.join(5)
    assert len(seen) == 1 and str(seen[0]) == "model down"
    fail = False
    assert same_bits(ec.embed_many(["x"]), direct(["x"]))  # nothing was cached
    assert ec.stats()["compute_errors"] >= 1


def test_returned_vectors_are_the_callers_own() -> None:
    ec = ai.EmbeddingCache(Recorder(), model_id="bow")
    v = ec.embed("mutate me")
    v[:] = 0.0
    assert ec.embed("mutate me").tobytes() == direct(["mutate me"])[0].tobytes()
    m = ec.embed_matrix(["a", "b", "a"])
    assert m.shape == (3, DIM) and m.dtype == np.float32 and m.flags.writeable
    assert ec.embed_many([]) == []
    assert ec.embed_matrix([]).shape == (0, DIM)


def test_float64_and_list_outputs_stored_as_float32() -> None:
    def as_lists(texts: list[str]) -> list[list[float]]:
        return [[0.1 * len(t), 1.0 / 3.0, 2.0**-30] for t in texts]

    ec = ai.EmbeddingCache(as_lists, model_id="lists")
    got = ec.embed_many(["ab", "abc"])
    want = np.asarray(as_lists(["ab", "abc"]), dtype=np.float32)
    assert same_bits(got, want)
    assert same_bits(ec.embed_many(["ab", "abc"]), want)


def test_bad_cached_entry_is_recomputed() -> None:
    tier = MemoryTier(max_entries=100)
    fn = Recorder()
    ec = ai.EmbeddingCache(fn, model_id="bow", cache=tier, dim=DIM)
    tier.set(ec.key("poisoned"), b"\x00" * 7)  # not 4 * DIM bytes
    tier.set(ec.key("wrong"), "not bytes")
    assert same_bits(ec.embed_many(["poisoned", "wrong"]), direct(["poisoned", "wrong"]))
    assert ec.stats()["bad_entries"] == 2
    assert fn.batches == [["poisoned", "wrong"]]
    assert same_bits(ec.embed_many(["poisoned"]), direct(["poisoned"]))  # now stored right
    assert len(fn.batches) == 1


def test_wrong_outputs_are_configuration_errors() -> None:
    ec = ai.EmbeddingCache(lambda texts: np.zeros((len(texts) + 1, 4)), model_id="m")
    with pytest.raises(ConfigurationError, match="2 texts"):
        ec.embed_many(["a", "b"])
    state = {"dim": 4}
    ec2 = ai.EmbeddingCache(lambda texts: np.ones((len(texts), state["dim"])), model_id="m2")
    ec2.embed("a")
    state["dim"] = 5
    with pytest.raises(ConfigurationError, match=r"dimension 5.*dimension 4"):
        ec2.embed("b")
    ec3 = ai.EmbeddingCache(lambda texts: [[1.0, 2.0], [1.0]][: len(texts)], model_id="m3")
    with pytest.raises(ConfigurationError, match="embed_fn"):
        ec3.embed_many(["a", "b"])
    ec4 = ai.EmbeddingCache(lambda texts: np.ones((len(texts), 3)), model_id="m4", dim=4)
    with pytest.raises(ConfigurationError, match="dimension 3"):
        ec4.embed("a")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"embed_fn": 3}, InputTypeError, "embed_fn"),
        ({"model_id": 3}, InputTypeError, "model_id"),
        ({"model_id": ""}, ConfigurationError, "model_id"),
        ({"cache": object()}, InputTypeError, "cache"),
        ({"normalize": "yes"}, InputTypeError, "normalize"),
        ({"dim": 0}, ConfigurationError, "dim"),
        ({"dim": 2.0}, InputTypeError, "dim"),
        ({"ttl": -1}, ConfigurationError, "ttl"),
        ({"ttl": "1"}, InputTypeError, "ttl"),
        ({"name": 1}, InputTypeError, "name"),
    ],
)
def test_bad_arguments_are_typed(kwargs: dict[str, Any], exc: type, match: str) -> None:
    args: dict[str, Any] = {"embed_fn": bow, "model_id": "m", **kwargs}
    with pytest.raises(exc, match=match):
        ai.EmbeddingCache(**args)


def test_bad_texts_are_typed() -> None:
    ec = ai.EmbeddingCache(bow, model_id="m")
    with pytest.raises(InputTypeError, match="wrap a single text"):
        ec.embed_many("just a str")
    with pytest.raises(InputTypeError, match=r"texts\[1\]"):
        ec.embed_many(["ok", b"bytes"])  # type: ignore[list-item]
    with pytest.raises(InputTypeError, match="text must be a str"):
        ec.embed(None)  # type: ignore[arg-type]
    with pytest.raises(InputTypeError, match="normalize returned"):
        ai.EmbeddingCache(bow, model_id="m", normalize=lambda t: 1).embed("a")  # type: ignore[arg-type,return-value]


def test_stats_and_savings() -> None:
    ec = ai.EmbeddingCache(Recorder(delay=0.01), model_id="bow")
    ec.embed_many(["a", "b"])
    ec.embed_many(["a", "b", "a"])
    s = ec.stats()
    assert (s["hits"], s["misses"], s["duplicates"], s["computed"], s["batch_calls"]) == (
        2,
        2,
        1,
        2,
        1,
    )
    assert s["hit_ratio"] == 0.5
    assert s["saved_seconds"] == pytest.approx(3 * s["compute_seconds"] / 2)
    assert s["dim"] == DIM
    assert "bow" in repr(ec)
    with ec:
        pass  # closes its own MemoryTier; a closed memory tier stays usable
    assert same_bits(ec.embed_many(["a"]), direct(["a"]))


def test_cancelled_leader_hands_over_to_a_waiter() -> None:
    calls: list[list[str]] = []

    async def aembed(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        if len(calls) == 1:
            await asyncio.sleep(30)  # the first leader hangs until cancelled
        return bow(texts)

    ec = ai.EmbeddingCache(aembed, model_id="bow")

    async def run() -> list[np.ndarray]:
        leader = asyncio.create_task(ec.aembed_many(["x"]))
        await asyncio.sleep(0.01)  # the leader is inside embed_fn
        follower = asyncio.create_task(ec.aembed_many(["x"]))
        await asyncio.sleep(0.01)  # the follower waits on the leader's flight
        leader.cancel()
        got = await asyncio.wait_for(follower, 10)
        with pytest.raises(asyncio.CancelledError):
            await leader
        return got

    assert same_bits(asyncio.run(run()), direct(["x"]))
    assert calls == [["x"], ["x"]]  # the waiter computed it after the leader was cancelled


def test_ttl_reaches_the_tier() -> None:
    now = [0.0]
    tier = MemoryTier(max_entries=100, clock=lambda: now[0])
    fn = Recorder()
    ec = ai.EmbeddingCache(fn, model_id="bow", cache=tier, ttl=5)
    ec.embed("a")
    now[0] = 4.0
    ec.embed("a")
    assert len(fn.batches) == 1
    now[0] = 5.5
    ec.embed("a")
    assert len(fn.batches) == 2


def test_every_ai_name_resolves() -> None:
    for name in ai.__all__:
        assert getattr(ai, name) is not None, name
    assert ai.EmbeddingCache.__module__ == "overdrive.ai.embedding_cache"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        ai.nope  # type: ignore[attr-defined]  # noqa: B018
