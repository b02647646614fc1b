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

from ._core import DEFAULT_MAX_OUTPUT_SIZE, Compressor, compress, decompress, train_dictionary

__all__ = [
    "DEFAULT_MAX_OUTPUT_SIZE",
    "Compressor",
    "compress",
    "decompress",
    "train_dictionary",
]
