"""asv benchmarks for the pools: BufferPool acquire+release vs a
threading.Lock-guarded free list (the honest peer), queue.Queue and a fresh
bytearray (64 KiB and 1 MiB buffers); ObjectPool vs a locked free list and
queue.Queue; peak memory of many cycles. Every side binds its methods once,
outside the loop.
"""

from __future__ import annotations

import queue
import threading

import overdrive as od

SIZES = [64 * 1024, 1024 * 1024]
CYCLES = 1000


class BufferAcquireRelease:
    """Each method runs CYCLES acquire+release pairs (divide by 1000 for ns/op)."""

    params = (SIZES,)
    param_names = ("size",)

    def setup(self, size: int) -> None:
        self.pool = od.BufferPool(buffer_size=size, min_size=8, max_size=64)
        self.lock = threading.Lock()
        self.free = [bytearray(size) for _ in range(8)]
        self.q: queue.Queue[bytearray] = queue.Queue()
        for _ in range(8):
            self.q.put(bytearray(size))
        self.size = size

    def time_overdrive(self, size: int) -> None:
        acquire = self.pool.acquire
        for _ in range(CYCLES):
            b = acquire()
            b.release()

    def time_overdrive_with(self, size: int) -> None:
        acquire = self.pool.acquire
        for _ in range(CYCLES):
            with acquire():
                pass

    def time_bytearray(self, size: int) -> None:
        for _ in range(CYCLES):
            b = bytearray(size)
            del b

    def time_lock_free_list(self, size: int) -> None:
        lock, pop, append = self.lock, self.free.pop, self.free.append
        for _ in range(CYCLES):
            with lock:
                b = pop()
            with lock:
                append(b)

    def time_queue(self, size: int) -> None:
        get, put = self.q.get, self.q.put
        for _ in range(CYCLES):
            b = get()
            put(b)

    def track_hit_ratio(self, size: int) -> float:
        self.time_overdrive(size)
        return float(self.pool.stats()["hit_ratio"])


class BufferMemory:
    params = ([10_000, 100_000],)
    param_names = ("cycles",)

    def setup(self, cycles: int) -> None:
        self.pool = od.BufferPool(buffer_size=64 * 1024, min_size=8, max_size=64)

    def peakmem_overdrive_cycles(self, cycles: int) -> None:
        acquire = self.pool.acquire
        for _ in range(cycles):
            b = acquire()
            b.release()


class ObjectAcquireRelease:
    def setup(self) -> None:
        self.pool = od.ObjectPool(dict, reset=dict.clear, max_size=8)
        self.lock = threading.Lock()
        self.free: list[dict[str, int]] = [{} for _ in range(8)]
        self.q: queue.Queue[dict[str, int]] = queue.Queue()
        for _ in range(8):
            self.q.put({})

    def time_overdrive(self) -> None:
        acquire = self.pool.acquire
        for _ in range(CYCLES):
            with acquire() as d:
                d["k"] = 1

    def time_lock_free_list(self) -> None:
        lock, pop, append = self.lock, self.free.pop, self.free.append
        for _ in range(CYCLES):
            with lock:
                d = pop()
            d["k"] = 1
            d.clear()
            with lock:
                append(d)

    def time_queue(self) -> None:
        get, put = self.q.get, self.q.put
        for _ in range(CYCLES):
            d = get()
            d["k"] = 1
            d.clear()
            put(d)
