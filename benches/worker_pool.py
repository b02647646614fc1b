"""asv benchmarks for WorkerPool against ThreadPoolExecutor (suite: worker_pool)."""

from __future__ import annotations

import concurrent.futures as cf
from typing import Any, ClassVar

import overdrive as od
from overdrive.bench.suites.worker_pool import cpu_task, io_task, noop

IMPLS = ["WorkerPool", "WorkerPool(help_on_wait=False)", "ThreadPoolExecutor"]


BLOB = bytes(range(256)) * 256


def _zstd() -> bytes:
    return od.compress(BLOB)


TASKS = {"cpu": cpu_task, "sleep_1ms": io_task, "zstd_64k": _zstd}


def _make(impl: str) -> Any:
    if impl == "ThreadPoolExecutor":
        return cf.ThreadPoolExecutor()
    return od.WorkerPool(help_on_wait=impl == "WorkerPool")


class PoolRoundTrip:
    """submit -> result of a no-op, 200 in a row."""

    params = (IMPLS,)
    param_names: ClassVar[list[str]] = ["impl"]

    def setup(self, impl: str) -> None:
        self.pool = _make(impl)

    def teardown(self, impl: str) -> None:
        self.pool.shutdown()

    def time_submit_result(self, impl: str) -> None:
        submit = self.pool.submit
        for _ in range(200):
            submit(noop).result()


class PoolThroughput:
    """64 tasks submitted, then every result waited for: CPU-bound pure Python
    (holds the GIL), time.sleep(1 ms), zstd of 64 KiB (GIL released)."""

    params = (IMPLS, list(TASKS))
    param_names: ClassVar[list[str]] = ["impl", "task"]

    def setup(self, impl: str, task: str) -> None:
        self.pool = _make(impl)
        self.fn = TASKS[task]

    def teardown(self, impl: str, task: str) -> None:
        self.pool.shutdown()

    def time_64_tasks(self, impl: str, task: str) -> None:
        submit, fn = self.pool.submit, self.fn
        futs = [submit(fn) for _ in range(64)]
        for f in futs:
            f.result()

    def peakmem_64_tasks(self, impl: str, task: str) -> None:
        self.time_64_tasks(impl, task)
