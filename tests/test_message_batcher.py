"""MessageBatcher, encode_batch and decode_batch: frames, delivery, failures."""

from __future__ import annotations

import struct
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import overdrive as od
from batching_support import WAIT, fill_until_queued
from isolated import run_isolated
from overdrive.bench.corpus import json_messages
from overdrive.exceptions import (
    BatcherClosed,
    ConfigurationError,
    FrameError,
    InputTypeError,
    QueueFull,
)


class Sink:
    """Collects frames; optionally fails the first ``fail`` calls."""

    def __init__(self, fail: int = 0) -> None:
        self.frames: list[bytes] = []
        self.fail = fail
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, frame: bytes) -> None:
        with self.lock:
            self.calls += 1
            if self.calls <= self.fail:
                raise ConnectionError("sink down")
            self.frames.append(frame)

    def messages(self) -> list[bytes]:
        return [m for fr in self.frames for m in od.decode_batch(fr)]


# --- frames -------------------------------------------------------------------------


@given(
    msgs=st.lists(st.binary(max_size=600), max_size=60),
    threshold=st.integers(0, 5000),
    level=st.integers(1, 9),
)
def test_frames_round_trip_exactly(msgs: list[bytes], threshold: int, level: int) -> None:
    frame = od.encode_batch(msgs, compress_threshold=threshold, level=level)
    assert od.decode_batch(frame) == msgs


def test_frame_layout_is_as_documented() -> None:
    msgs = [b"ab", b"", b"xyz"]
    frame = od.encode_batch(msgs, compress_threshold=1 << 20)
    magic, version, flags, _res, count, body_len = struct.unpack_from("<4sBBHII", frame)
    assert (magic, version, flags, count) == (b"ODMB", 1, 0, 3)
    assert body_len == len(frame) - 16 == sum(4 + len(m) for m in msgs)
    assert frame[16:] == b"\x02\x00\x00\x00ab\x00\x00\x00\x00\x03\x00\x00\x00xyz"


def test_frames_over_the_threshold_are_compressed() -> None:
    msgs = json_messages(50, 200, seed=5)
    frame = od.encode_batch(msgs, compress_threshold=1024)
    assert frame[5] & 1 == 1
    assert len(frame) * 3 < sum(map(len, msgs))
    assert od.decode_batch(frame) == msgs


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"ODMB",
        b"XXXX" + bytes(12),
        b"ODMB\x02" + bytes(11),
        b"ODMB\x01\x00\x00\x00" + bytes(8)[:-1],
    ],
)
def test_malformed_frames_raise_frame_error(bad: bytes) -> None:
    with pytest.raises(FrameError):
        od.decode_batch(bad)


def test_truncated_and_lying_frames_raise() -> None:
    frame = od.encode_batch([b"hello", b"world"], compress_threshold=1 << 20)
    with pytest.raises(FrameError):
        od.decode_batch(frame[:-1])
    lying = frame[:8] + struct.pack("<I", 9) + frame[12:]
    with pytest.raises(FrameError):
        od.decode_batch(lying)
    with pytest.raises(InputTypeError):
        od.decode_batch("text")  # type: ignore[arg-type]
    big = od.encode_batch([bytes(100_000)], compress_threshold=0)
    with pytest.raises(od.OutputLimitExceeded):
        od.decode_batch(big, max_output_size=1000)


def test_a_compressed_frame_whose_header_lies_about_its_body_is_refused_before_allocating() -> None:
    """A 4 GiB body length in the header of a tiny zstd frame: refused as a
    FrameError without reserving the 4 GiB (it once aborted the process when
    the allocation failed), here under a 2 GiB address-space cap."""
    out = run_isolated(
        """
        import struct
        import overdrive as od
        frame = bytearray(od.encode_batch([b"x" * 2000], compress_threshold=0))
        assert frame[5] & 1
        for body_len in (2**32 - 1, 3000, 1):
            lying = bytes(frame[:12]) + struct.pack("<I", body_len) + bytes(frame[16:])
            try:
                od.decode_batch(lying, max_output_size=2**33)
            except od.FrameError as e:
                print("refused", body_len, "declares" in str(e))
        print(od.decode_batch(bytes(frame), max_output_size=2**33) == [b"x" * 2000])
        """
    )
    assert out.split("\n")[:4] == [
        "refused 4294967295 True",
        "refused 3000 True",
        "refused 1 True",
        "True",
    ]


class Ticker:
    """A thread counting while it holds the GIL, and letting go between counts."""

    def __init__(self) -> None:
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.0005):
            self.count += 1


def makes_progress_during(work: Callable[[], Any]) -> bool:
    """Does another thread run while ``work()`` runs? The switch interval is
    raised so that this thread never hands the GIL over by itself: the ticker
    can only count while ``work`` releases it."""
    ticker = Ticker()
    old = sys.getswitchinterval()
    ticker.thread.start()
    try:
        while ticker.count == 0:
            threading.Event().wait(0.001)
        sys.setswitchinterval(1000.0)
        for _ in range(10):  # a loaded machine may not schedule it every time
            before = ticker.count
            work()
            if ticker.count > before:
                return True
        return False
    finally:
        sys.setswitchinterval(old)
        ticker.stop.set()
        ticker.thread.join(WAIT)


def test_large_encode_and_decode_release_the_gil() -> None:
    msgs = json_messages(40_000, 400, seed=3)  # ~16 MiB
    frame = od.encode_batch(msgs, level=3)
    assert frame[5] & 1 == 1
    assert makes_progress_during(lambda: od.encode_batch(msgs, level=3))
    assert makes_progress_during(lambda: od.decode_batch(frame))
    views = [bytearray(m) for m in msgs]
    assert makes_progress_during(lambda: od.encode_batch(views, level=3))


@settings(max_examples=30, deadline=None)
@given(
    msgs=st.lists(st.binary(max_size=40_000), max_size=4),
    kind=st.sampled_from([bytes, bytearray, memoryview]),
    threshold=st.sampled_from([0, 1024, 1 << 30]),
)
def test_frames_round_trip_exactly_across_the_release_size(
    msgs: list[bytes], kind: Callable[[bytes], Any], threshold: int
) -> None:
    frame = od.encode_batch([kind(m) for m in msgs], compress_threshold=threshold)
    assert od.decode_batch(frame) == msgs
    assert od.decode_batch(bytearray(frame)) == msgs


# --- delivery -------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(
    per_thread=st.lists(st.lists(st.binary(max_size=300), max_size=120), min_size=1, max_size=4),
    max_batch_size=st.integers(1, 60),
    threshold=st.sampled_from([0, 64, 1024, 1 << 20]),
)
def test_every_message_arrives_once_in_order_per_thread(
    per_thread: list[list[bytes]], max_batch_size: int, threshold: int
) -> None:
    sink = Sink()
    mb = od.MessageBatcher(sink, max_batch_size=max_batch_size, compress_threshold=threshold)
    tagged = [[bytes([t]) + m for m in msgs] for t, msgs in enumerate(per_thread)]
    threads = [threading.Thread(target=lambda ms=ms: [mb.put(m) for m in ms]) for ms in tagged]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    mb.close()
    got = sink.messages()
    assert sorted(got) == sorted(m for ms in tagged for m in ms)
    for t, ms in enumerate(tagged):
        assert [m for m in got if m[0] == t] == ms
    for fr in sink.frames:
        assert len(od.decode_batch(fr)) <= max_batch_size
    s = mb.stats()
    assert s["completed"] == len(got)
    assert s["frames"] == len(sink.frames)


def test_sink_errors_are_retried() -> None:
    sink = Sink(fail=2)
    mb = od.MessageBatcher(sink, max_retries=3, retry_backoff_ms=1.0)
    for i in range(20):
        mb.put(b"m%d" % i)
    mb.close()
    assert sink.messages() == [b"m%d" % i for i in range(20)]
    assert mb.stats()["retries"] == 2


def test_exhausted_retries_go_to_on_error_never_dropped() -> None:
    failed: list[tuple[bytes, BaseException]] = []
    sink = Sink(fail=10**9)
    mb = od.MessageBatcher(
        sink, max_retries=1, retry_backoff_ms=0.5, on_error=lambda fr, e: failed.append((fr, e))
    )
    for i in range(30):
        mb.put(b"m%d" % i)
    mb.close()
    assert [m for fr, _ in failed for m in od.decode_batch(fr)] == [b"m%d" % i for i in range(30)]
    assert all(isinstance(e, ConnectionError) for _, e in failed)
    s = mb.stats()
    assert s["failed"] == 30
    assert s["given_up"] == len(failed)


def test_drop_oldest_hands_the_dropped_message_to_on_error() -> None:
    gate = threading.Event()
    dropped: list[tuple[bytes, BaseException]] = []
    delivered: list[bytes] = []

    def sink(frame: bytes) -> None:
        assert gate.wait(WAIT)
        delivered.extend(od.decode_batch(frame))

    mb = od.MessageBatcher(
        sink,
        max_queue=2,
        on_full="drop_oldest",
        max_pending_frames=1,
        on_error=lambda fr, e: dropped.append((fr, e)),
    )
    sent = fill_until_queued(mb, 2)
    mb.put(b"new")  # evicts the oldest queued message: sent[-2]
    gate.set()
    mb.close()
    assert [od.decode_batch(fr) for fr, _ in dropped] == [[sent[-2]]]
    assert isinstance(dropped[0][1], QueueFull)
    assert delivered == [m for m in sent if m != sent[-2]] + [b"new"]


def test_reject_when_full_and_put_after_close() -> None:
    gate = threading.Event()
    delivered: list[bytes] = []

    def sink(frame: bytes) -> None:
        assert gate.wait(WAIT)
        delivered.extend(od.decode_batch(frame))

    mb = od.MessageBatcher(sink, max_queue=1, on_full="reject", max_pending_frames=1)
    sent = fill_until_queued(mb, 1)
    with pytest.raises(QueueFull):
        mb.put(b"z")
    gate.set()
    mb.close()
    assert delivered == sent
    with pytest.raises(BatcherClosed):
        mb.put(b"late")


def test_bad_arguments_name_the_parameter() -> None:
    with pytest.raises(ConfigurationError, match="compress_threshold"):
        od.MessageBatcher(print, compress_threshold=-1)
    with pytest.raises(ConfigurationError, match="max_batch_bytes"):
        od.MessageBatcher(print, max_batch_bytes=0)
    with pytest.raises(ConfigurationError, match="max_retries"):
        od.MessageBatcher(print, max_retries=-1)
    with pytest.raises(InputTypeError):
        od.MessageBatcher("not callable")  # type: ignore[arg-type]
    mb = od.MessageBatcher(print)
    with pytest.raises(InputTypeError, match="message"):
        mb.put("text")  # type: ignore[arg-type]
    mb.close()


def test_max_batch_bytes_caps_frames() -> None:
    sink = Sink()
    gate_msgs = [bytes([i]) * 100 for i in range(40)]
    mb = od.MessageBatcher(sink, max_batch_bytes=350, compress_threshold=1 << 20)
    for m in gate_msgs:
        mb.put(m)
    mb.close()
    assert sink.messages() == gate_msgs
    for fr in sink.frames:
        msgs: list[Any] = od.decode_batch(fr)
        assert len(msgs) == 1 or sum(map(len, msgs)) <= 350
