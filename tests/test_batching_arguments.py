"""Bad arguments to every batching API raise overdrive exceptions only.

Huge, negative, NaN and infinite numbers and values of the wrong type go to
each parameter of Batcher, @batched, MessageBatcher, their methods,
encode_batch and decode_batch. What comes out is an
:class:`~overdrive.exceptions.OverdriveError` (ConfigurationError for a value
out of range, InputTypeError for a wrong type), or nothing: never a bare
OverflowError, TypeError or RuntimeError, never a panic, and the process lives.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import overdrive as od
from batching_support import WAIT
from overdrive.exceptions import (
    ConfigurationError,
    InputTypeError,
    NoRunningEventLoop,
    OverdriveError,
)

SPECIAL = [
    2**70,
    -(2**70),
    2**64,
    2**63,
    2**63 - 1,
    2**40,
    2**32,
    2**31,
    -(2**31) - 1,
    2**1100,  # too large even for a float
    -1,
    0,
    1,
    -0.0,
    0.5,
    float("nan"),
    float("inf"),
    float("-inf"),
    1e308,
    5e-324,
    True,
    None,
    "7",
    "",
    b"7",
    [],
    [1],
    {},
    object(),
]

BAD = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(),
    st.floats(),
    st.text(max_size=4),
    st.binary(max_size=4),
)


def only_overdrive_errors(fn: Callable[[], Any]) -> Any:
    """Run ``fn``: it may return, or raise an OverdriveError (then None);
    anything else fails the test."""
    try:
        return fn()
    except OverdriveError:
        return None
    except BaseException as e:
        pytest.fail(f"{type(e).__module__}.{type(e).__qualname__} escaped: {e}")


def cheap(param: str, value: Any) -> None:
    """Skip settings that are valid but start many threads."""
    if param == "max_concurrency":
        assume(not (isinstance(value, int) and 2 < value <= 1024))


BATCHER_PARAMS = [
    "max_batch_size",
    "max_wait_ms",
    "max_queue",
    "on_full",
    "weigher",
    "max_batch_weight",
    "max_concurrency",
    "adaptive",
    "latency_target_ms",
    "aging_ms",
    "admission",
    "retry_individually",
    "block_timeout",
    "name",
    "atexit_timeout_s",
]

MESSAGE_BATCHER_PARAMS = [
    "max_batch_size",
    "max_wait_ms",
    "max_queue",
    "on_full",
    "compress_threshold",
    "level",
    "max_batch_bytes",
    "max_pending_frames",
    "max_retries",
    "retry_backoff_ms",
    "on_error",
    "block_timeout",
    "name",
    "atexit_timeout_s",
]


def use_batcher(kw: dict[str, Any]) -> None:
    b = only_overdrive_errors(lambda: od.Batcher(lambda xs: xs, **kw))
    if b is not None:
        only_overdrive_errors(lambda: b.submit(3).result(WAIT))
        b.close()


def use_batched(kw: dict[str, Any]) -> None:
    wrapped = only_overdrive_errors(lambda: od.batched(**kw)(lambda xs: xs))
    if wrapped is not None:
        only_overdrive_errors(lambda: wrapped(3))
        wrapped.close()


def use_message_batcher(kw: dict[str, Any]) -> None:
    frames: list[bytes] = []
    mb = only_overdrive_errors(lambda: od.MessageBatcher(frames.append, **kw))
    if mb is not None:
        only_overdrive_errors(lambda: mb.put(b"x"))
        mb.close()


SETTINGS = (
    [(use_batcher, p) for p in BATCHER_PARAMS]
    + [(use_batched, p) for p in BATCHER_PARAMS]
    + [(use_message_batcher, p) for p in MESSAGE_BATCHER_PARAMS]
)


@settings(max_examples=600, deadline=None)
@given(setting=st.sampled_from(SETTINGS), value=BAD)
def test_constructor_settings(
    setting: tuple[Callable[[dict[str, Any]], None], str], value: Any
) -> None:
    use, param = setting
    cheap(param, value)
    use({param: value})


@settings(max_examples=200, deadline=None)
@given(param=st.sampled_from(["priority", "deadline_ms", "key"]), value=BAD)
def test_batcher_submit_arguments(param: str, value: Any) -> None:
    b: od.Batcher[int, int] = od.Batcher(lambda xs: xs)
    try:
        fut = only_overdrive_errors(lambda: b.submit(1, **{param: value}))
        if fut is not None:
            only_overdrive_errors(lambda: fut.result(WAIT))

        async def main() -> None:
            afut = only_overdrive_errors(lambda: b.submit_async(1, **{param: value}))
            if afut is not None:
                with contextlib.suppress(OverdriveError):
                    await afut

        asyncio.run(main())
        only_overdrive_errors(lambda: b.close(timeout=value))
    finally:
        b.close()


@settings(max_examples=50, deadline=None)
@given(key=st.sampled_from([[], [1], {}, {1: 2}, set(), bytearray(b"k")]))
def test_unhashable_keys_raise_input_type_error(key: Any) -> None:
    b = od.Batcher(lambda xs: xs)
    with pytest.raises(InputTypeError, match="key"):
        b.submit(1, key=key)
    b.close()


@settings(max_examples=200, deadline=None)
@given(value=BAD, on_full=st.sampled_from(["block", "reject", "drop_oldest"]))
def test_message_batcher_methods(value: Any, on_full: str) -> None:
    frames: list[bytes] = []
    mb = od.MessageBatcher(frames.append, on_full=on_full)  # type: ignore[arg-type]
    try:
        only_overdrive_errors(lambda: mb.put(value))
        only_overdrive_errors(lambda: mb.close(timeout=value))
    finally:
        mb.close()


@settings(max_examples=300, deadline=None)
@given(
    param=st.sampled_from(["messages", "compress_threshold", "level"]),
    value=st.one_of(BAD, st.lists(BAD, max_size=3)),
)
def test_encode_batch_arguments(param: str, value: Any) -> None:
    kw: dict[str, Any] = {"messages": [b"a", b"bc"], param: value}
    frame = only_overdrive_errors(lambda: od.encode_batch(**kw))
    if frame is not None:
        assert only_overdrive_errors(lambda: od.decode_batch(frame)) is not None


@settings(max_examples=300, deadline=None)
@given(param=st.sampled_from(["frame", "max_output_size"]), value=BAD)
def test_decode_batch_arguments(param: str, value: Any) -> None:
    kw: dict[str, Any] = {"frame": od.encode_batch([b"a", b"bc"]), param: value}
    only_overdrive_errors(lambda: od.decode_batch(**kw))


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (lambda: od.Batcher(lambda xs: xs, max_batch_size=2**70), "max_batch_size"),
        (lambda: od.Batcher(lambda xs: xs, max_queue=-(2**70)), "max_queue"),
        (lambda: od.Batcher(lambda xs: xs, max_wait_ms=float("nan")), "max_wait_ms"),
        (lambda: od.Batcher(lambda xs: xs, max_wait_ms=float("inf")), "max_wait_ms"),
        (lambda: od.Batcher(lambda xs: xs, max_wait_ms=-1), "max_wait_ms"),
        (lambda: od.Batcher(lambda xs: xs, max_wait_ms=2**1100), "max_wait_ms"),
        (lambda: od.Batcher(lambda xs: xs, block_timeout=-1), "block_timeout"),
        (lambda: od.MessageBatcher(print, level=2**40), "level"),
        (lambda: od.MessageBatcher(print, max_pending_frames=2**40), "max_pending_frames"),
        (lambda: od.MessageBatcher(print, retry_backoff_ms=float("inf")), "retry_backoff_ms"),
        (lambda: od.encode_batch([b"x"], level=2**40), "level"),
        (lambda: od.decode_batch(b"", max_output_size=2**70), "max_output_size"),
    ],
)
def test_out_of_range_numbers_are_configuration_errors_naming_the_parameter(
    make: Callable[[], Any], param: str
) -> None:
    with pytest.raises(ConfigurationError, match=param):
        make()


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (lambda: od.Batcher(lambda xs: xs, max_batch_size="8"), "max_batch_size"),
        (lambda: od.Batcher(lambda xs: xs, on_full=3), "on_full"),
        (lambda: od.Batcher(lambda xs: xs, adaptive="yes"), "adaptive"),
        (lambda: od.Batcher(lambda xs: xs, max_wait_ms="5"), "max_wait_ms"),
        (lambda: od.Batcher(lambda xs: xs).submit(1, priority="high"), "priority"),
        (lambda: od.Batcher(lambda xs: xs).submit(1, priority=2**40), "priority"),
        (lambda: od.MessageBatcher(print, level="fast"), "level"),
        (lambda: od.MessageBatcher(print, name=7), "name"),
        (lambda: od.encode_batch([b"x"], compress_threshold=1.5), "compress_threshold"),
    ],
)
def test_wrong_types_and_out_of_range_values_name_the_parameter(
    make: Callable[[], Any], param: str
) -> None:
    with pytest.raises((InputTypeError, ConfigurationError), match=param):
        make()


def test_submit_async_outside_an_event_loop_raises_an_overdrive_runtime_error() -> None:
    b = od.Batcher(lambda xs: xs)
    with pytest.raises(NoRunningEventLoop, match="running event loop") as ei:
        b.submit_async(1)
    assert isinstance(ei.value, RuntimeError)
    b.close()
    assert b.stats()["submitted"] == 0


# One argument reader (rust/py/src/args.rs) serves the batchers and every
# other binding: flags, optional numbers, str choices and byte caps behave
# the same wherever they appear.


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (lambda v: od.Batcher(lambda xs: xs, adaptive=v), "adaptive"),
        (lambda v: od.Batcher(lambda xs: xs, admission=v), "admission"),
        (lambda v: od.BufferPool(buffer_size=64, zero_on_release=v), "zero_on_release"),
        (lambda v: od.BufferPool(buffer_size=64).acquire(block=v), "block"),
    ],
)
@pytest.mark.parametrize("value", [1, 0, "yes", None, np.True_])
def test_flags_take_true_or_false_only(make: Callable[[Any], Any], param: str, value: Any) -> None:
    with pytest.raises(InputTypeError, match=f"{param} must be a bool, not"):
        make(value)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: od.Batcher(lambda xs: xs).submit(1, deadline_ms="1"),
            "deadline_ms must be a number or None, not str",
        ),
        (
            lambda: od.Batcher(lambda xs: xs, latency_target_ms=[]),
            "latency_target_ms must be a number or None, not list",
        ),
        (
            lambda: od.Batcher(lambda xs: xs, max_batch_weight=1.5, weigher=len),
            "max_batch_weight must be an int or None, not float",
        ),
        (
            lambda: od.MessageBatcher(print, block_timeout="1"),
            "block_timeout must be a number or None, not str",
        ),
        (
            lambda: od.Batcher(lambda xs: xs, on_full=3),
            "on_full must be 'block', 'reject' or 'drop_oldest', not int",
        ),
        (lambda: od.encode_batch([b"x"], level=3.0), "level must be an int, not float"),
    ],
)
def test_wrong_type_messages_say_what_the_parameter_takes(
    make: Callable[[], Any], message: str
) -> None:
    with pytest.raises(InputTypeError, match=re.escape(message)):
        make()


def test_an_on_full_with_a_lone_surrogate_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"on_full=.*valid Unicode"):
        od.Batcher(lambda xs: xs, on_full="\ud800")  # type: ignore[arg-type]


@pytest.mark.parametrize("cap", [0, -1, 2**63, 2**70])
def test_decode_batch_caps_like_decompress(cap: int) -> None:
    # The same parameter, the same range and message as decompress().
    with pytest.raises(ConfigurationError) as theirs:
        od.decompress(od.compress(b"x"), max_output_size=cap)
    with pytest.raises(ConfigurationError) as ours:
        od.decode_batch(od.encode_batch([b"x"]), max_output_size=cap)
    assert str(ours.value) == str(theirs.value)
    assert "max_output_size" in str(ours.value)
    assert od.decode_batch(od.encode_batch([b"x"]), max_output_size=2**63 - 1) == [b"x"]


@pytest.mark.parametrize(
    ("make", "param"),
    [
        (lambda: od.Batcher(lambda xs: xs).submit(1, priority=2**31), "priority"),
        (lambda: od.Batcher(lambda xs: xs).submit(1, priority=-(2**31) - 1), "priority"),
        (lambda: od.Batcher(lambda xs: xs, max_queue=2**63), "max_queue"),
        (lambda: od.MessageBatcher(print, max_queue=-1), "max_queue"),
        (
            lambda: od.Batcher(lambda xs: xs, max_batch_weight=2**63, weigher=len),
            "max_batch_weight",
        ),
        (lambda: od.MessageBatcher(print, compress_threshold=-1), "compress_threshold"),
        (lambda: od.Batcher(lambda xs: xs, block_timeout=float("nan")), "block_timeout"),
        (lambda: od.Batcher(lambda xs: xs, max_wait_ms=10**400), "max_wait_ms"),
    ],
)
def test_batcher_ranges_stay_as_they_were(make: Callable[[], Any], param: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{param}="):
        make()
