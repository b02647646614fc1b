"""asv benchmarks for the Batcher and MessageBatcher against the minimal
hand-written baselines of ``overdrive.bench.baselines`` (see the suite
``overdrive.bench.suites.batching`` for the method and the goals)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, ClassVar

import overdrive as od
from overdrive.bench.baselines import FrameBatcher, GreedyThreadBatcher, MinimalAsyncBatcher
from overdrive.bench.corpus import json_messages
from overdrive.bench.suites.batching import (
    BATCH,
    CLIENTS,
    GREEDY,
    OD,
    WAIT_MS,
    burst_await,
    burst_gather,
    closed_loop,
    identity,
    identity_sync,
    open_loop_p99,
)

ROUNDS = 20
PER_CLIENT = 8
# case -> (drive factory, items per call)
CASES: dict[str, tuple[Callable[[Any], Any], int]] = {
    "burst_await": (lambda submit: burst_await(submit, ROUNDS), ROUNDS * BATCH),
    "burst_gather": (lambda submit: burst_gather(submit, ROUNDS), ROUNDS * BATCH),
    "closed_loop": (lambda submit: closed_loop(submit, PER_CLIENT), CLIENTS * PER_CLIENT),
}


class AsyncOverhead:
    """Identity handler, batch 64, max_wait 1 ms: (a) burst 64, await each;
    (b) burst 64, one gather; (c) closed loop of 256 client tasks. Divide by
    the items per call (1280, 1280, 2048) for time per item."""

    params = (["overdrive", "minimal-asyncio"], ["sync", "async"], list(CASES))
    param_names: ClassVar[list[str]] = ["impl", "handler", "case"]

    def setup(self, impl: str, handler: str, case: str) -> None:
        self.loop = asyncio.new_event_loop()
        fn = identity_sync if handler == "sync" else identity

        async def build() -> Any:
            if impl == "overdrive":
                return od.Batcher(fn, max_batch_size=BATCH, max_wait_ms=WAIT_MS)
            return MinimalAsyncBatcher(fn, max_batch_size=BATCH, max_wait_ms=WAIT_MS)

        self.batcher = self.loop.run_until_complete(build())
        submit = self.batcher.submit_async if impl == "overdrive" else self.batcher.submit
        self.drive = CASES[case][0](submit)

    def teardown(self, impl: str, handler: str, case: str) -> None:
        self.loop.run_until_complete(self.batcher.aclose())
        self.loop.close()

    def time_case(self, impl: str, handler: str, case: str) -> None:
        self.loop.run_until_complete(self.drive())


class OpenLoop:
    """p99 latency (ms) of one 2 s open-loop segment on the simulated device
    (sleep 2 ms + 0.1 ms/item), overdrive (max_wait_ms=5) vs the greedy
    thread batcher, at 80% and 95% of the device's measured capacity."""

    params = ([OD, GREEDY], [0.8, 0.95])
    param_names: ClassVar[list[str]] = ["impl", "load"]
    timeout = 60

    def track_p99_ms(self, impl: str, load: float) -> float:
        return open_loop_p99(impl, load, 2.0) * 1e3

    track_p99_ms.unit = "ms"  # type: ignore[attr-defined]


class SyncSubmit:
    """Thread callers: submit 256 items and wait for them (overdrive, and the
    minimal greedy thread batcher a user writes by hand)."""

    params = ([1, 64],)
    param_names: ClassVar[list[str]] = ["max_batch_size"]

    def setup(self, max_batch_size: int) -> None:
        self.b: od.Batcher[int, int] = od.Batcher(identity_sync, max_batch_size=max_batch_size)
        self.greedy = GreedyThreadBatcher(identity_sync, max_batch_size=max_batch_size)

    def teardown(self, max_batch_size: int) -> None:
        self.b.close()
        self.greedy.close()

    def time_submit_256(self, max_batch_size: int) -> None:
        submit = self.b.submit
        for f in [submit(i) for i in range(256)]:
            f.result()

    def time_greedy_thread_submit_256(self, max_batch_size: int) -> None:
        submit = self.greedy.submit
        for f in [submit(i) for i in range(256)]:
            f.result()

    def peakmem_queue_10k(self, max_batch_size: int) -> None:
        gate = od.Batcher(lambda xs: xs, max_queue=20_000)
        futs = [gate.submit(i) for i in range(10_000)]
        gate.close()
        assert len(futs) == 10_000


class MessageBatching:
    """200-byte JSON messages through a MessageBatcher into a no-op sink, and
    the same frames (layout, batch size, zstd level -1) built by hand with
    python-zstandard (FrameBatcher)."""

    params = ([50, 200],)
    param_names: ClassVar[list[str]] = ["max_batch_size"]

    def setup(self, max_batch_size: int) -> None:
        self.msgs = json_messages(5000, 200, seed=9)

    def time_put_5000_and_close(self, max_batch_size: int) -> None:
        mb = od.MessageBatcher(lambda frame: None, max_batch_size=max_batch_size)
        put = mb.put
        for m in self.msgs:
            put(m)
        mb.close()

    def time_hand_framed_zstandard_put_5000_and_close(self, max_batch_size: int) -> None:
        fb = FrameBatcher(lambda frame: None, max_batch_size=max_batch_size)
        put = fb.put
        for m in self.msgs:
            put(m)
        fb.close()

    def time_decode_batch(self, max_batch_size: int) -> None:
        frame = od.encode_batch(self.msgs[:max_batch_size])
        for _ in range(100):
            od.decode_batch(frame)

    def track_ratio(self, max_batch_size: int) -> float:
        out = [0]

        def sink(frame: bytes) -> None:
            out[0] += len(frame)

        mb = od.MessageBatcher(sink, max_batch_size=max_batch_size)
        for m in self.msgs:
            mb.put(m)
        mb.close()
        return sum(map(len, self.msgs)) / out[0]
