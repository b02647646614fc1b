"""zstd compression backed by the Rust core.

- :func:`compress` / :func:`decompress`: one-shot, standard zstd frames, with a
  reused per-thread context (no ~10 µs context set-up per call) and a
  decompression bomb guard (``max_output_size``, 256 MiB by default).
- :class:`Compressor`: fixed level, optional dictionary, the ``pack``/``unpack``
  envelope (raw below ``threshold``), and ``compress_many``/``decompress_many``
  that release the GIL and use every core for large batches.
- :func:`train_dictionary`: zstd's dictionary trainer.

Every input may be any C-contiguous buffer (bytes, bytearray, memoryview,
numpy arrays). The envelope format is documented in ``docs/compression.md``.
"""

from __future__ import annotations

from typing import Any

from . import _core
from ._core import DEFAULT_MAX_OUTPUT_SIZE, compress, decompress, train_dictionary
from .telemetry.registry import auto_register, keep_signature

__all__ = [
    "DEFAULT_MAX_OUTPUT_SIZE",
    "Compressor",
    "compress",
    "decompress",
    "train_dictionary",
]


# The native class, subclassed only so that each new one registers itself
# (weakly) with telemetry; every method is the native one.
class Compressor(_core.Compressor):
    __doc__ = _core.Compressor.__doc__
    __slots__ = ("__weakref__",)
    __signature__ = keep_signature(_core.Compressor)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        auto_register(self, "compressor")
