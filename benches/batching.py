"""asv benchmarks for the Batcher and MessageBatcher (see overdrive.bench.suites.batching)."""

from __future__ import annotations

import asyncio
from typing import Any

import overdrive as od
from overdrive.bench.corpus import json_messages
from overdrive.bench.suites.batching import NaiveAsyncBatcher


async def _identity(items: list[Any]) -> list[Any]:
    return items


def _identity_sync(items: list[Any]) -> list[Any]:
    return items


class AsyncOverhead:
    """Async submit -> result through an identity handler, 64 items per round."""

    params = (["overdrive-async", "overdrive-sync-handler", "naive-asyncio"], [1, 64])
    param_names = ("impl", "batch")

    def setup(self, impl: str, batch: int) -> None:
        self.loop = asyncio.new_event_loop()
        self.items = list(range(batch))

        async def build() -> Any:
            if impl == "overdrive-async":
                return od.Batcher(_identity, max_batch_size=batch).submit_async
            if impl == "overdrive-sync-handler":
                return od.Batcher(_identity_sync, max_batch_size=batch).submit_async
            return NaiveAsyncBatcher(_identity, max_batch_size=batch).submit

        self.submit = self.loop.run_until_complete(build())

    def teardown(self, impl: str, batch: int) -> None:
        tasks = asyncio.all_tasks(self.loop)
        for t in tasks:
            t.cancel()
        self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.close()

    def time_round_of_20(self, impl: str, batch: int) -> None:
        async def rounds() -> None:
            for _ in range(20):
                futs = [self.submit(x) for x in self.items]
                for f in futs:
                    await f

        self.loop.run_until_complete(rounds())


class SyncSubmit:
    """Thread callers: submit 256 items and wait for them."""

    params = ([1, 64],)
    param_names = ("max_batch_size",)

    def setup(self, max_batch_size: int) -> None:
        self.b: od.Batcher[int, int] = od.Batcher(_identity_sync, max_batch_size=max_batch_size)

    def teardown(self, max_batch_size: int) -> None:
        self.b.close()

    def time_submit_256(self, max_batch_size: int) -> None:
        for f in [self.b.submit(i) for i in range(256)]:
            f.result()

    def peakmem_queue_10k(self, max_batch_size: int) -> None:
        gate = od.Batcher(lambda xs: xs, max_queue=20_000)
        futs = [gate.submit(i) for i in range(10_000)]
        gate.close()
        assert len(futs) == 10_000


class MessageBatching:
    """200-byte JSON messages through a MessageBatcher into a no-op sink."""

    params = ([50, 200],)
    param_names = ("max_batch_size",)

    def setup(self, max_batch_size: int) -> None:
        self.msgs = json_messages(5000, 200, seed=9)

    def time_put_5000_and_close(self, max_batch_size: int) -> None:
        mb = od.MessageBatcher(lambda frame: None, max_batch_size=max_batch_size)
        for m in self.msgs:
            mb.put(m)
        mb.close()

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
