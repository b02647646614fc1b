"""Type stubs for the native module ``overdrive._core`` (kept honest by stubtest)."""

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar, final

from typing_extensions import Buffer

__version__: str
DEFAULT_MAX_OUTPUT_SIZE: int

def build_info() -> dict[str, Any]:
    """Version, build profile, rustc, features and zstd version of this build."""

# --- compression -----------------------------------------------------------

def compress(data: Buffer, level: int = 3) -> bytes:
    """Compress ``data`` into one standard zstd frame.

    Raises ConfigurationError (a ValueError) for a level outside zstd's range,
    InputTypeError (a TypeError) for a non-buffer or non-contiguous input.
    """

def decompress(data: Buffer, max_output_size: int = 268435456) -> bytes:
    """Decompress one or more zstd frames.

    Raises OutputLimitExceeded (a DecompressionError) when the output would
    exceed ``max_output_size``, before allocating it; DecompressionError for
    corrupt or truncated input.
    """

def train_dictionary(samples: Iterable[Buffer], size: int = 16384) -> bytes:
    """Train a zstd dictionary of at most ``size`` bytes from sample messages."""

@final
class Compressor:
    """zstd at a fixed level with an optional dictionary, an envelope and counters.

    Thread-safe: each thread uses its own zstd contexts; a dictionary is digested once.
    """

    def __new__(
        cls,
        level: int = 3,
        threshold: int = 1024,
        dictionary: Buffer | None = None,
        max_output_size: int = 268435456,
    ) -> Compressor: ...
    @property
    def level(self) -> int:
        """The zstd level."""
    @property
    def threshold(self) -> int:
        """Inputs shorter than this many bytes are packed raw."""
    @property
    def max_output_size(self) -> int:
        """The cap on decompressed output, in bytes."""
    @property
    def dictionary_id(self) -> int | None:
        """The dictionary id written into envelopes, or None."""
    def compress(self, data: Buffer) -> bytes:
        """One zstd frame (made with the dictionary, if any)."""
    def decompress(self, data: Buffer) -> bytes:
        """The bytes of zstd frames, under ``max_output_size``."""
    def pack(self, data: Buffer) -> bytes:
        """Wrap ``data`` in the envelope: raw below ``threshold``, zstd above."""
    def unpack(self, blob: Buffer) -> bytes:
        """The original bytes of a blob made by ``pack``."""
    def compress_many(self, items: Iterable[Buffer]) -> list[bytes]:
        """One zstd frame per item; releases the GIL and uses every core for large batches."""
    def decompress_many(self, blobs: Iterable[Buffer]) -> list[bytes]:
        """The bytes of every frame; parallel for large batches."""
    def stats(self) -> dict[str, int | float]:
        """Counters: calls, bytes in/out, ratio, raw packs, errors."""

# --- pools (BufferPool, ObjectPool) -----------------------------------------

_T = TypeVar("_T")

@final
class BufferPool:
    """Fixed-size, 64-byte aligned buffers recycled through a lock-free free list.

    Thread-safe. Keeps between ``min_size`` and ``max_size`` buffers (grows 25%
    above 80% utilisation, shrinks 12% after a ``window_s`` window below 25%).
    """

    def __new__(
        cls,
        buffer_size: int = 65536,
        min_size: int = 8,
        max_size: int = 1024,
        zero_on_release: bool = False,
        window_s: float = 1.0,
    ) -> BufferPool: ...
    def acquire(self, timeout: float | None = None, block: bool = True) -> PooledBuffer:
        """A buffer; waits up to ``timeout`` s (None: forever) when all are out,
        or raises at once with ``block=False``: PoolExhausted (a TimeoutError)."""
    def try_acquire(self) -> PooledBuffer | None:
        """A buffer now, or None when all are out (never waits, not counted as exhausted)."""
    def trim(self, keep: int | None = None) -> int:
        """Free idle buffers now, keeping ``keep`` (default ``min_size``); bytes freed."""
    @property
    def buffer_size(self) -> int:
        """Bytes per buffer."""
    @property
    def min_size(self) -> int:
        """Buffers kept even when idle."""
    @property
    def max_size(self) -> int:
        """Most buffers in existence; acquire waits when all are out."""
    @property
    def zero_on_release(self) -> bool:
        """Whether buffers are wiped when released."""
    @property
    def window_s(self) -> float:
        """Length of the auto-sizing window in seconds."""
    def stats(self) -> dict[str, int | float]:
        """hits, misses, hit_ratio, in_use, idle, high_water, bytes_allocated,
        capacity, grows, shrinks, freed, exhausted, waiters, buffer_size."""

@final
class PooledBuffer:
    """One buffer lent by a BufferPool: a writable buffer (memoryview, numpy,
    readinto, recv_into) and a context manager that releases it."""

    def __buffer__(self, flags: int, /) -> memoryview: ...
    def __release_buffer__(self, buffer: memoryview, /) -> None: ...
    def release(self) -> None:
        """Give the buffer back. BufferExportedError (a BufferError) while an
        export is alive; ReleasedError (a ValueError) if already released."""
    @property
    def released(self) -> bool:
        """True once released."""
    @property
    def exports(self) -> int:
        """Live exports (memoryviews, numpy arrays) of this buffer."""
    @property
    def nbytes(self) -> int:
        """Size in bytes."""
    def __len__(self) -> int: ...
    def __enter__(self) -> PooledBuffer: ...
    def __exit__(
        self, _exc_type: object = None, _exc: object = None, _tb: object = None
    ) -> bool: ...

@final
class ObjectPool(Generic[_T]):
    """Expensive Python objects from ``factory()``, reset on release, validated
    on borrow, evicted after ``max_idle_s`` idle. Thread-safe; no callback runs
    under a pool lock."""

    def __new__(
        cls,
        factory: Callable[[], _T],
        reset: Callable[[_T], object] | None = None,
        validate: Callable[[_T], object] | None = None,
        min_size: int = 0,
        max_size: int = 64,
        max_idle_s: float | None = None,
    ) -> ObjectPool[_T]: ...
    def acquire(self, timeout: float | None = None, block: bool = True) -> PooledObject[_T]:
        """Borrow an object (validated idle one, or a new one); PoolExhausted
        (a TimeoutError) when all are out past ``timeout`` or with ``block=False``."""
    def try_acquire(self) -> PooledObject[_T] | None:
        """An object now, or None when all are out (never waits, not counted as exhausted)."""
    def trim(self, keep: int | None = None) -> int:
        """Drop idle objects beyond ``keep`` (default ``min_size``); how many."""
    @property
    def min_size(self) -> int:
        """Objects kept even when idle."""
    @property
    def max_size(self) -> int:
        """Most objects in existence; acquire waits when all are out."""
    @property
    def max_idle_s(self) -> float | None:
        """Idle objects older than this are evicted (None: never)."""
    def stats(self) -> dict[str, int | float]:
        """hits, misses, hit_ratio, in_use, idle, high_water, created, discarded,
        evicted, exhausted, waiters."""

@final
class PooledObject(Generic[_T]):
    """One object lent by an ObjectPool; ``with`` yields the object itself."""

    @property
    def value(self) -> _T:
        """The borrowed object (ReleasedError once released)."""
    @property
    def released(self) -> bool:
        """True once released."""
    def release(self) -> None:
        """Give the object back (``reset`` runs first); ReleasedError if already released."""
    def __enter__(self) -> _T: ...
    def __exit__(
        self, _exc_type: object = None, _exc: object = None, _tb: object = None
    ) -> bool: ...
