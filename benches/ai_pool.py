"""asv benchmarks for ``ai.InferencePool``: what the pool adds on top of one
Batcher (the balancer's pick and release, the per-replica counters and
histograms), for an identity model so the time is the pool's own.

* ``predict_many`` of 1,024 items from a thread: a bare ``Batcher``, a pool of
  one replica, a pool of two, and a pool of two routed by key;
* ``apredict_many`` of 1,024 items from a coroutine (one ``gather``).

Divide by 1,024 for the time per item. Run by hand for a table:
``python benches/ai_pool.py``.
"""

from __future__ import annotations

import asyncio
import sys
import timeit
from typing import Any, ClassVar

import overdrive as od
from overdrive import ai

N = 1024
BATCH = 64
WAIT_MS = 1.0


def identity(xs: list[Any]) -> list[Any]:
    """The model: returns its inputs."""
    return xs


def _make(impl: str) -> Any:
    if impl == "batcher":
        return od.Batcher(identity, max_batch_size=BATCH, max_wait_ms=WAIT_MS)
    replicas = 1 if impl == "pool-1" else 2
    return ai.InferencePool(
        [identity] * replicas, max_batch_size=BATCH, max_wait_ms=WAIT_MS, name=f"asv-{impl}"
    )


class PredictMany:
    """1,024 items submitted at once from a thread, then every result."""

    params: ClassVar[list[str]] = ["batcher", "pool-1", "pool-2", "pool-2-keyed"]
    param_names: ClassVar[list[str]] = ["impl"]

    def setup(self, impl: str) -> None:
        self.target = _make(impl)
        self.items = list(range(N))
        if impl == "batcher":
            submit = self.target.submit

            def run() -> None:
                futs = [submit(x) for x in self.items]
                for f in futs:
                    f.result()

            self.run = run
        elif impl == "pool-2-keyed":
            keys = [f"session-{x % 32}" for x in self.items]
            submit = self.target.submit

            def run_keyed() -> None:
                futs = [submit(x, k) for x, k in zip(self.items, keys, strict=True)]
                for f in futs:
                    f.result()

            self.run = run_keyed
        else:
            self.run = lambda: self.target.predict_many(self.items)

    def teardown(self, impl: str) -> None:
        self.target.close()

    def time_predict_many(self, impl: str) -> None:
        self.run()


class APredictMany:
    """1,024 items from a coroutine, one ``asyncio.gather``."""

    params: ClassVar[list[str]] = ["batcher", "pool-2"]
    param_names: ClassVar[list[str]] = ["impl"]

    def setup(self, impl: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.target = _make(impl)
        self.items = list(range(N))

    def teardown(self, impl: str) -> None:
        self.target.close()
        self.loop.close()

    def time_apredict_many(self, impl: str) -> None:
        async def run() -> None:
            if isinstance(self.target, od.Batcher):
                await asyncio.gather(*(self.target.submit_async(x) for x in self.items))
            else:
                await self.target.apredict_many(self.items)

        self.loop.run_until_complete(run())


def main() -> int:
    """Print the time per item of each case."""
    for cls, method in ((PredictMany, "time_predict_many"), (APredictMany, "time_apredict_many")):
        for impl in cls.params:
            bench: Any = cls()
            bench.setup(impl)
            try:
                fn = getattr(bench, method)
                best = min(timeit.repeat(lambda: fn(impl), number=5, repeat=5)) / 5  # noqa: B023
                print(f"{cls.__name__:13s} {impl:13s} {best / N * 1e6:7.2f} us/item")
            finally:
                bench.teardown(impl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
