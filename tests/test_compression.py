"""zstd compression: round trips, interop, bomb guard, bad input, concurrency."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

import overdrive as od
from isolated import run_isolated
from overdrive.bench.corpus import json_messages
from overdrive.exceptions import (
    ConfigurationError,
    DecompressionError,
    InputTypeError,
    OutputLimitExceeded,
    OverdriveError,
)

LEVELS = st.integers(min_value=-7, max_value=19)


@pytest.fixture(scope="module")
def dictionary() -> bytes:
    return od.train_dictionary(json_messages(2000, 200, seed=3), size=16384)


# --- round trips -------------------------------------------------------------


@given(data=st.binary(max_size=8192), level=LEVELS)
def test_round_trip_any_bytes_any_level(data: bytes, level: int) -> None:
    frame = od.compress(data, level)
    assert od.decompress(frame) == data
    assert zstandard.ZstdDecompressor().decompress(frame) == data


@given(data=st.binary(max_size=4096), level=LEVELS, threshold=st.integers(0, 5000))
def test_pack_unpack_round_trip(data: bytes, level: int, threshold: int) -> None:
    c = od.Compressor(level=level, threshold=threshold)
    blob = c.pack(data)
    assert c.unpack(blob) == data
    assert len(blob) <= len(data) + 1  # never worse than raw + header
    if len(data) < threshold:
        assert blob[1:] == data  # raw below the threshold


@given(data=st.lists(st.binary(max_size=300), max_size=40), use_dict=st.booleans())
def test_pack_with_dictionary_round_trip(
    dictionary: bytes, data: list[bytes], use_dict: bool
) -> None:
    c = od.Compressor(threshold=0, dictionary=dictionary if use_dict else None)
    for item in data:
        assert c.unpack(c.pack(item)) == item
        assert c.decompress(c.compress(item)) == item


@given(items=st.lists(st.binary(max_size=2048), max_size=64), level=st.integers(1, 9))
def test_compress_many_equals_one_by_one(items: list[bytes], level: int) -> None:
    c = od.Compressor(level=level)
    frames = c.compress_many(items)
    assert frames == [od.compress(i, level) for i in items]
    assert c.decompress_many(frames) == items


def test_compress_many_parallel_path_round_trips() -> None:
    # > PARALLEL_MIN_BYTES in total, so the batch is spread over threads
    items = json_messages(2000, 1024, seed=5)
    c = od.Compressor()
    frames = c.compress_many(items)
    assert frames == [c.compress(i) for i in items]
    assert c.decompress_many(frames) == items
    assert c.decompress_many(iter(frames)) == items  # any iterable


def test_large_input_round_trip_releases_gil_path() -> None:
    data = b"".join(json_messages(4000, 1024, seed=9))  # ~4 MiB, detached path
    assert od.decompress(od.compress(data)) == data
    c = od.Compressor(level=1)
    assert c.unpack(c.pack(bytearray(data))) == data


# --- input types ---------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        bytes,
        bytearray,
        memoryview,
        lambda b: np.frombuffer(b, dtype=np.uint8),
        lambda b: np.frombuffer(b, dtype=np.float64).reshape(4, -1),
    ],
    ids=["bytes", "bytearray", "memoryview", "numpy-u8", "numpy-f64-2d"],
)
def test_any_contiguous_buffer(make: object) -> None:
    raw = bytes(range(256)) * 8  # 2048 bytes, divisible by 8 * 4
    data = make(raw)  # type: ignore[operator]
    assert od.decompress(od.compress(data)) == raw
    c = od.Compressor(threshold=16)
    assert c.unpack(c.pack(data)) == raw
    assert od.decompress(memoryview(od.compress(raw))) == raw


@pytest.mark.parametrize("bad", ["text", 12, None, [b"a"], 3.5])
def test_non_buffer_is_a_type_error_naming_the_type(bad: object) -> None:
    with pytest.raises(TypeError, match=type(bad).__name__) as info:
        od.compress(bad)  # type: ignore[arg-type]
    assert isinstance(info.value, InputTypeError)
    assert "data" in str(info.value)


def test_non_contiguous_buffer_is_refused() -> None:
    arr = np.arange(100, dtype=np.uint8)[::2]
    with pytest.raises(InputTypeError, match="C-contiguous"):
        od.compress(arr)


def test_compress_many_names_the_bad_item() -> None:
    with pytest.raises(InputTypeError, match=r"items\[2\].*str"):
        od.Compressor().compress_many([b"a", b"b", "c"])  # type: ignore[list-item]
    with pytest.raises(InputTypeError, match="iterable"):
        od.Compressor().compress_many(5)  # type: ignore[arg-type]


# --- parameters ----------------------------------------------------------------


@pytest.mark.parametrize("level", [23, 100, -200000])
def test_level_out_of_range(level: int) -> None:
    with pytest.raises(ValueError, match=rf"level={level}.*-131072 to 22") as info:
        od.compress(b"x", level)
    assert isinstance(info.value, ConfigurationError)
    with pytest.raises(ConfigurationError, match="level"):
        od.Compressor(level=level)


def test_bad_constructor_values() -> None:
    with pytest.raises(ConfigurationError, match="threshold=-1"):
        od.Compressor(threshold=-1)
    with pytest.raises(ConfigurationError, match="max_output_size=0"):
        od.Compressor(max_output_size=0)
    with pytest.raises(ConfigurationError, match="max_output_size=-5"):
        od.decompress(od.compress(b"x"), max_output_size=-5)
    with pytest.raises(ConfigurationError, match="dictionary"):
        od.Compressor(dictionary=b"")


def test_train_dictionary_errors() -> None:
    with pytest.raises(ConfigurationError, match="samples"):
        od.train_dictionary([b"a", b"b"])
    with pytest.raises(ConfigurationError, match="size=10"):
        od.train_dictionary(json_messages(100, 200), size=10)
    with pytest.raises(InputTypeError):
        od.train_dictionary(["not bytes"] * 10)  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: od.compress(b"x", level=2**40), "level=1099511627776.*-131072 to 22"),
        (lambda: od.compress(b"x", level=-(2**70)), "level=-1180591620717411303424"),
        (lambda: od.Compressor(level=2**31), "level=2147483648.*-131072 to 22"),
        (lambda: od.decompress(od.compress(b"x"), max_output_size=2**70), "max_output_size=1180"),
        (lambda: od.decompress(od.compress(b"x"), max_output_size=2**63), "max_output_size=9223"),
        (lambda: od.Compressor(threshold=2**80), "threshold=1208925819614629174706176"),
        (lambda: od.Compressor(max_output_size=-(2**65)), "max_output_size=-3689"),
        (lambda: od.train_dictionary([b"x"] * 8, size=-1), "size=-1"),
        (lambda: od.train_dictionary([b"x"] * 8, size=2**64), "size=18446744073709551616"),
    ],
)
def test_huge_and_negative_ints_are_configuration_errors(call: Any, param: str) -> None:
    # pyo3's own int conversion raised OverflowError (not an overdrive error).
    with pytest.raises(ConfigurationError, match=param):
        call()


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: od.compress(b"x", level="3"), "level must be an int, not str"),
        (lambda: od.compress(b"x", level=3.0), "level must be an int, not float"),
        (lambda: od.decompress(b"x", max_output_size=None), "max_output_size must be an int"),
        (lambda: od.Compressor(threshold=[1]), "threshold must be an int, not list"),
        (lambda: od.train_dictionary([b"x"] * 8, size=object()), "size must be an int"),
    ],
)
def test_wrong_argument_types_are_input_type_errors(call: Any, param: str) -> None:
    # pyo3's own conversion raised a bare TypeError.
    with pytest.raises(InputTypeError, match=param):
        call()


def test_huge_dictionary_size_is_refused_not_an_abort() -> None:
    # `size` reached Vec::with_capacity unchecked: 2**62 aborted the process
    # ("memory allocation failed"), 2**63 and up panicked (capacity overflow).
    out = run_isolated(
        """
        import overdrive as od
        samples = [b"sample %d " % i * 20 for i in range(64)]
        for size in (2**62, 2**40, 2**31, 2**63 - 1):
            try:
                od.train_dictionary(samples, size=size)
            except od.ConfigurationError as e:
                print("ConfigurationError:", e)
        """
    )
    assert out.count("ConfigurationError:") == 4, out
    assert "size=4611686018427387904: must be between 256 and 1073741824 bytes" in out


def test_a_lying_len_cannot_make_the_batch_calls_over_reserve() -> None:
    # The batch calls reserved `len(items)` slots up front: a __len__ of
    # 2**40 aborted the process, sys.maxsize panicked (capacity overflow).
    out = run_isolated(
        """
        import sys
        import overdrive as od

        class Liar:
            def __init__(self, n, items):
                self.n, self.items = n, items
            def __len__(self):
                return self.n
            def __iter__(self):
                return iter(self.items)

        c = od.Compressor()
        for n in (2**40, sys.maxsize):
            frames = c.compress_many(Liar(n, [b"a", b"bb"]))
            print(c.decompress_many(Liar(n, frames)))
            samples = [b"sample %d " % i * 20 for i in range(64)]
            print(len(od.train_dictionary(Liar(n, samples), size=1024)) > 0)
        """
    )
    assert out.split() == ["[b'a',", "b'bb']", "True"] * 2, out


# Run in the child interpreters below (so a frame of any size needs no argv).
FRAME_DECLARING = """
def frame_declaring(size, body=b""):
    # A zstd frame header declaring `size` bytes of content (single segment,
    # 8-byte size), then `body` as raw 128 KiB blocks and an empty last block.
    out = bytearray(b"\\x28\\xb5\\x2f\\xfd\\xe0") + size.to_bytes(8, "little")
    for at in range(0, len(body), 128 << 10):
        chunk = body[at : at + (128 << 10)]
        out += (len(chunk) << 3).to_bytes(3, "little") + chunk
    return bytes(out + b"\\x01\\x00\\x00")
"""


def test_a_declared_size_the_input_cannot_hold_is_refused_before_allocating() -> None:
    # The size a frame header declares was allocated as is (up to the cap):
    # a 16-byte frame claiming 1 TiB raised MemoryError from decompress()
    # and aborted the process from the parallel decompress_many().
    out = run_isolated(
        FRAME_DECLARING
        + """
import os
import overdrive as od

tiny = frame_declaring(2**40)
big = od.compress(os.urandom(40_000))  # makes decompress_many go parallel
c = od.Compressor(max_output_size=2**50)
for call in (
    lambda: c.decompress_many([big, tiny]),
    lambda: od.decompress(tiny, max_output_size=2**50),
    lambda: c.decompress(tiny),
    lambda: c.unpack(b"\\x11" + tiny),
):
    try:
        call()
    except od.DecompressionError as e:
        print("DecompressionError:", e)
"""
    )
    assert out.count("DecompressionError:") == 4, out
    assert out.count("declares 1099511627776 bytes, more than 16 input bytes can hold") == 4


def test_an_output_the_allocator_refuses_is_a_decompression_error() -> None:
    # A header whose claim the input could hold (1 MiB of blocks: up to
    # 128 GiB) but memory cannot: an abort from the parallel
    # decompress_many(), MemoryError from decompress(). (The child's address
    # space is capped at 2 GiB, so the 64 GiB allocation fails at once.)
    out = run_isolated(
        FRAME_DECLARING
        + """
import os
import overdrive as od

claim = frame_declaring(64 << 30, bytes(1 << 20))
big = od.compress(os.urandom(40_000))
c = od.Compressor(max_output_size=2**40)
for call in (
    lambda: c.decompress_many([big, claim]),
    lambda: od.decompress(claim, max_output_size=2**40),
):
    try:
        call()
    except od.DecompressionError as e:
        print("DecompressionError:", e)
"""
    )
    assert out.count("cannot allocate the 68719476736 bytes the input declares") == 2, out


def test_properties_and_repr(dictionary: bytes) -> None:
    c = od.Compressor(level=5, threshold=64, dictionary=dictionary, max_output_size=1000)
    assert (c.level, c.threshold, c.max_output_size) == (5, 64, 1000)
    assert c.dictionary_id == int.from_bytes(dictionary[4:8], "little")
    assert "level=5" in repr(c)
    assert od.Compressor().dictionary_id is None


# --- interop -------------------------------------------------------------------


@given(data=st.binary(max_size=4096), level=st.integers(1, 19))
def test_python_zstandard_reads_ours_and_we_read_theirs(data: bytes, level: int) -> None:
    assert zstandard.ZstdDecompressor().decompress(od.compress(data, level)) == data
    theirs = zstandard.ZstdCompressor(level=level, write_checksum=True).compress(data)
    assert od.decompress(theirs) == data
    # a frame without a content size (streaming writer) still decodes
    nosize = zstandard.ZstdCompressor(level=level, write_content_size=False).compress(data)
    assert od.decompress(nosize) == data


def test_dictionary_interop_with_python_zstandard(dictionary: bytes) -> None:
    zdict = zstandard.ZstdCompressionDict(dictionary)
    msgs = json_messages(50, 200, seed=8)
    c = od.Compressor(dictionary=dictionary, threshold=0)
    dctx = zstandard.ZstdDecompressor(dict_data=zdict)
    cctx = zstandard.ZstdCompressor(dict_data=zdict)
    for m in msgs:
        assert dctx.decompress(c.compress(m)) == m
        assert c.decompress(cctx.compress(m)) == m


def _zstd_cli() -> str:
    path = shutil.which("zstd")
    assert path, "the zstd command-line tool is required (make system-deps installs it)"
    return path


def test_zstd_cli_reads_ours_and_we_read_theirs(tmp_path: Path) -> None:
    cli = _zstd_cli()
    data = b"".join(json_messages(300, 1024, seed=4))
    ours = tmp_path / "ours.zst"
    ours.write_bytes(od.compress(data, 7))
    out = subprocess.run([cli, "-d", "-c", str(ours)], check=True, capture_output=True).stdout
    assert out == data
    src = tmp_path / "plain.json"
    src.write_bytes(data)
    for flags in (["-3"], ["-19"], ["--no-check", "-1"], ["--long=24", "-5"]):
        theirs = subprocess.run([cli, "-c", *flags, str(src)], check=True, capture_output=True)
        assert od.decompress(theirs.stdout) == data, flags
    # piped input has no content size in the header: the streaming path
    piped = subprocess.run([cli, "-c", "-3"], input=data, check=True, capture_output=True)
    assert od.decompress(piped.stdout) == data
    # concatenated frames decode to the concatenation
    two = (
        od.compress(b"abc")
        + subprocess.run([cli, "-c"], input=b"def", check=True, capture_output=True).stdout
    )
    assert od.decompress(two) == b"abcdef"


# --- bomb guard, corrupt and truncated input ----------------------------------

GIB = 1 << 30


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny frames that expand to 1 GiB of zeros: with and without a declared size."""
    d = tmp_path_factory.mktemp("bombs")
    chunk = bytes(1 << 20)
    out = {}
    for name, size in (("declared", GIB), ("streamed", -1)):
        cctx = zstandard.ZstdCompressor(level=1, write_content_size=size >= 0)
        comp = cctx.compressobj(size=size)
        parts = [comp.compress(chunk) for _ in range(GIB // len(chunk))]
        parts.append(comp.flush())
        path = d / f"{name}.zst"
        path.write_bytes(b"".join(parts))
        out[name] = path
    return out


def _run_bomb(path: Path, cap: int | None) -> tuple[str, int]:
    """Decompress in a fresh process; return (outcome, peak RSS in MiB)."""
    code = f"""
import resource, sys, overdrive as od
data = open({str(path)!r}, 'rb').read()
kw = {{}} if {cap!r} is None else {{'max_output_size': {cap!r}}}
try:
    od.decompress(data, **kw)
    outcome = 'decompressed'
except od.OutputLimitExceeded as e:
    outcome = 'refused: ' + str(e)
print(outcome)
# VmHWM is this process's own peak (ru_maxrss also counts the parent's pages
# at fork, so it grows with the pytest process that spawned us).
try:
    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]
    print(int(hwm.split()[1]) // 1024)
except (OSError, IndexError):
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    outcome, rss = res.stdout.strip().splitlines()
    return outcome, int(rss)


def test_bomb_with_declared_size_is_refused_before_allocating(bombs: dict[str, Path]) -> None:
    assert bombs["declared"].stat().st_size < 100_000
    outcome, rss_mib = _run_bomb(bombs["declared"], None)
    assert outcome.startswith("refused"), outcome
    assert "1073741824" in outcome
    assert "max_output_size=268435456" in outcome
    assert rss_mib < 100, f"peak RSS {rss_mib} MiB"


def test_bomb_without_declared_size_stops_at_the_cap(bombs: dict[str, Path]) -> None:
    outcome, rss_mib = _run_bomb(bombs["streamed"], 16 << 20)
    assert outcome.startswith("refused"), outcome
    assert rss_mib < 100, f"peak RSS {rss_mib} MiB"
    # with the default 256 MiB cap it is refused too, far below 1 GiB of memory
    outcome, rss_mib = _run_bomb(bombs["streamed"], None)
    assert outcome.startswith("refused"), outcome
    assert rss_mib < 400, f"peak RSS {rss_mib} MiB"


def test_output_limit_is_a_decompression_error() -> None:
    frame = od.compress(bytes(10_000))
    with pytest.raises(DecompressionError, match="max_output_size=9999"):
        od.decompress(frame, max_output_size=9999)
    assert od.decompress(frame, max_output_size=10_000) == bytes(10_000)
    c = od.Compressor(threshold=0, max_output_size=100)
    with pytest.raises(OutputLimitExceeded):
        c.unpack(od.Compressor(threshold=0).pack(bytes(1000)))


@given(junk=st.binary(max_size=512))
def test_arbitrary_bytes_never_crash(junk: bytes) -> None:
    for fn in (od.decompress, od.Compressor().unpack, od.Compressor().decompress):
        with contextlib.suppress(DecompressionError):
            fn(junk)


@given(data=st.binary(min_size=1, max_size=2048), pos=st.integers(0), bit=st.integers(0, 7))
def test_corrupted_frames_raise_or_decode(data: bytes, pos: int, bit: int) -> None:
    frame = bytearray(od.compress(data))
    frame[pos % len(frame)] ^= 1 << bit
    with contextlib.suppress(DecompressionError):
        od.decompress(bytes(frame), max_output_size=1 << 20)


def test_truncated_frames_say_truncated() -> None:
    data = b"".join(json_messages(50, 1024))
    frame = od.compress(data)
    for cut in (5, 20, len(frame) // 2, len(frame) - 1):
        with pytest.raises(DecompressionError, match="truncated"):
            od.decompress(frame[:cut])
    nosize = zstandard.ZstdCompressor(write_content_size=False).compress(data)
    with pytest.raises(DecompressionError, match="truncated"):
        od.decompress(nosize[: len(nosize) // 2])


def test_not_a_frame_and_empty() -> None:
    with pytest.raises(DecompressionError, match="magic"):
        od.decompress(b"this is not zstd at all")
    with pytest.raises(DecompressionError, match="empty"):
        od.decompress(b"")
    assert issubclass(DecompressionError, ValueError)
    assert issubclass(DecompressionError, OverdriveError)


# --- envelope --------------------------------------------------------------------


def test_envelope_layout(dictionary: bytes) -> None:
    c = od.Compressor(threshold=10)
    assert c.pack(b"short") == b"\x10short"
    big = b"a" * 1000
    blob = c.pack(big)
    assert blob[0] == 0x11
    assert od.decompress(blob[1:]) == big
    cd = od.Compressor(threshold=0, dictionary=dictionary)
    blob = cd.pack(json_messages(1, 200)[0])
    assert blob[0] == 0x12
    assert int.from_bytes(blob[1:5], "little") == cd.dictionary_id
    # incompressible input above the threshold is stored raw
    noise = np.random.default_rng(0).bytes(4096)
    assert c.pack(noise)[0] == 0x10


def test_envelope_rejects_bad_blobs(dictionary: bytes) -> None:
    c = od.Compressor(threshold=0)
    with pytest.raises(DecompressionError, match="empty"):
        c.unpack(b"")
    with pytest.raises(DecompressionError, match="version 2"):
        c.unpack(b"\x21abc")
    with pytest.raises(DecompressionError, match="kind 9"):
        c.unpack(b"\x19abc")
    with pytest.raises(DecompressionError, match="5 bytes"):
        c.unpack(b"\x12\x01\x02")
    cd = od.Compressor(threshold=0, dictionary=dictionary)
    blob = cd.pack(b"x" * 300)
    with pytest.raises(DecompressionError, match="no dictionary"):
        c.unpack(blob)
    other_dict = od.train_dictionary(json_messages(1000, 300, seed=77), size=8192)
    other = od.Compressor(threshold=0, dictionary=other_dict)
    assert other.dictionary_id != cd.dictionary_id
    with pytest.raises(DecompressionError, match="wrong dictionary"):
        other.unpack(blob)
    truncated = od.Compressor(threshold=0).pack(b"y" * 5000)
    with pytest.raises(DecompressionError, match="truncated"):
        c.unpack(truncated[:-3])
    # a dictionary compressor still reads plain zstd envelopes
    assert cd.unpack(c.pack(b"z" * 500)) == b"z" * 500


def test_dictionary_makes_small_messages_smaller(dictionary: bytes) -> None:
    held_out = json_messages(500, 200, seed=99)
    plain = od.Compressor(threshold=0)
    with_dict = od.Compressor(threshold=0, dictionary=dictionary)
    size_plain = sum(len(plain.compress(m)) for m in held_out)
    size_dict = sum(len(with_dict.compress(m)) for m in held_out)
    assert size_plain / size_dict >= 1.6


# --- concurrency and stats ---------------------------------------------------------


def test_eight_threads_compress_concurrently(dictionary: bytes) -> None:
    c = od.Compressor(level=3, threshold=64, dictionary=dictionary)
    corpora = [json_messages(300, 100 + 150 * t, seed=t) for t in range(8)]
    errors: list[BaseException] = []
    done = []
    barrier = threading.Barrier(8)

    def work(t: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                for m in corpora[t]:
                    assert od.decompress(od.compress(m, t + 1)) == m
                    assert c.unpack(c.pack(m)) == m
                big = b"".join(corpora[t]) * 4  # detached path
                assert c.decompress(c.compress(big)) == big
                assert c.decompress_many(c.compress_many(corpora[t])) == corpora[t]
            done.append(t)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    assert not errors, errors
    assert sorted(done) == list(range(8))


def test_stats_count_calls_and_bytes() -> None:
    c = od.Compressor(threshold=100)
    c.pack(b"small")
    c.pack(b"x" * 1000)
    frames = c.compress_many([b"a" * 500, b"b" * 500])
    c.decompress(frames[0])
    with pytest.raises(DecompressionError):
        c.decompress(b"junk junk")
    s = c.stats()
    assert s["compress_calls"] == 4  # 2 packs + 2 items of compress_many
    assert s["raw_packed"] == 1
    assert s["bytes_in"] == 5 + 1000 + 1000
    assert s["bytes_out"] > 0
    assert s["ratio"] > 1
    assert s["errors"] == 1
    assert s["decompress_calls"] == 1


def test_no_memory_growth_over_many_calls() -> None:
    """orjson-style leak check: RSS stays flat over a hot loop of 200k calls."""

    def rss_kib() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4

    c = od.Compressor(threshold=0)
    msg = json_messages(1, 300, seed=1)[0]
    for _ in range(20_000):  # warm-up: contexts, allocator arenas
        c.unpack(c.pack(msg))
        od.decompress(od.compress(msg))
    before = rss_kib()
    for _ in range(100_000):
        c.unpack(c.pack(msg))
        od.decompress(od.compress(msg))
    grown = rss_kib() - before
    assert grown < 1024, f"RSS grew {grown} KiB over 200k round trips"


def test_batch_errors_name_the_item() -> None:
    c = od.Compressor()
    small = [c.compress(b"ok"), b"junk", c.compress(b"fine")]
    with pytest.raises(DecompressionError, match=r"^item 1: .*magic"):
        c.decompress_many(small)
    big = [c.compress(m) for m in json_messages(400, 1024, seed=6)]  # parallel path
    big[300] = big[300][:-4]
    with pytest.raises(DecompressionError, match=r"^item 300: .*truncated"):
        c.decompress_many(big)
    capped = od.Compressor(max_output_size=100)
    with pytest.raises(OutputLimitExceeded, match=r"^item 0: "):
        capped.decompress_many([c.compress(bytes(1000))])
