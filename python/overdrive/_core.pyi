"""Type stubs for the native module ``overdrive._core`` (kept honest by stubtest)."""

from collections.abc import Iterable
from typing import Any, final

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
