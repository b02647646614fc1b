"""asv benchmarks for zstd compression (overdrive vs python-zstandard, same level).

Inputs are the deterministic JSON corpus of ``overdrive.bench.corpus``; sizes
200 B, 1 KiB, 4 KiB, 64 KiB and 16 MiB.
"""

from __future__ import annotations

import zstandard

import overdrive as od
from overdrive.bench.corpus import json_blob, json_messages

SIZES = [200, 1024, 4096, 65536, 16 * 1024 * 1024]


BLOB_SIZE = SIZES[-1]


def _input(size: int, blob: bytes) -> bytes:
    if size == BLOB_SIZE:
        return blob
    return json_messages(1, size, seed=size)[0]


class Compress:
    """One message or blob, compressed and decompressed by each side."""

    params = (SIZES, [1, 3])
    param_names = ("size", "level")
    timeout = 120

    def setup_cache(self) -> bytes:
        # Made once per run (~3 s), not once per size x level x method.
        return json_blob(BLOB_SIZE)

    def setup(self, blob: bytes, size: int, level: int) -> None:
        self.data = _input(size, blob)
        self.frame = od.compress(self.data, level)
        self.zc = zstandard.ZstdCompressor(level=level)
        self.zd = zstandard.ZstdDecompressor()
        self.level = level

    def time_overdrive_compress(self, blob: bytes, size: int, level: int) -> None:
        od.compress(self.data, self.level)

    def time_zstandard_compress(self, blob: bytes, size: int, level: int) -> None:
        self.zc.compress(self.data)

    def time_overdrive_decompress(self, blob: bytes, size: int, level: int) -> None:
        od.decompress(self.frame)

    def time_zstandard_decompress(self, blob: bytes, size: int, level: int) -> None:
        self.zd.decompress(self.frame)

    def track_ratio(self, blob: bytes, size: int, level: int) -> float:
        return len(self.data) / len(self.frame)


class Envelope:
    params = ([200, 1024, 4096],)
    param_names = ("size",)

    def setup(self, size: int) -> None:
        self.msgs = json_messages(256, size, seed=size)
        self.c = od.Compressor(level=3, threshold=512)
        self.blobs = [self.c.pack(m) for m in self.msgs]

    def time_pack(self, size: int) -> None:
        pack = self.c.pack
        for m in self.msgs:
            pack(m)

    def time_unpack(self, size: int) -> None:
        unpack = self.c.unpack
        for b in self.blobs:
            unpack(b)


class Batch:
    """The batch APIs against python-zstandard's own multi-threaded ones (and its loop)."""

    def setup(self) -> None:
        self.msgs = json_messages(2000, 1024, seed=7)
        self.c = od.Compressor(level=3)
        self.zc = zstandard.ZstdCompressor(level=3)
        self.zd = zstandard.ZstdDecompressor()
        self.blobs = self.c.compress_many(self.msgs)

    def time_compress_many_2000x1k(self) -> None:
        self.c.compress_many(self.msgs)

    def time_zstandard_multi_compress_2000x1k(self) -> None:
        self.zc.multi_compress_to_buffer(self.msgs, threads=-1)

    def time_zstandard_loop_2000x1k(self) -> None:
        compress = self.zc.compress
        for m in self.msgs:
            compress(m)

    def time_decompress_many_2000x1k(self) -> None:
        self.c.decompress_many(self.blobs)

    def time_zstandard_multi_decompress_2000x1k(self) -> None:
        self.zd.multi_decompress_to_buffer(self.blobs, threads=-1)

    def peakmem_compress_many_2000x1k(self) -> None:
        self.c.compress_many(self.msgs)


class Dictionary:
    def setup(self) -> None:
        self.train = json_messages(4000, 200, seed=1)
        self.msgs = json_messages(1000, 200, seed=2)
        dictionary = od.train_dictionary(self.train)
        self.c = od.Compressor(threshold=0, dictionary=dictionary)
        self.zc = zstandard.ZstdCompressor(
            level=3, dict_data=zstandard.ZstdCompressionDict(dictionary)
        )

    def time_compress_200b_with_dict(self) -> None:
        compress = self.c.compress
        for m in self.msgs:
            compress(m)

    def time_zstandard_compress_200b_with_same_dict(self) -> None:
        compress = self.zc.compress
        for m in self.msgs:
            compress(m)

    def track_ratio_200b_with_dict(self) -> float:
        return sum(map(len, self.msgs)) / sum(len(self.c.compress(m)) for m in self.msgs)
