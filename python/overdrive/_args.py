"""Argument checks for the pure-Python facades.

The native module checks its own arguments (``rust/py/src/args.rs``); these
cover the few a facade uses itself before handing them on (arithmetic on
``min_workers``, comparisons on timeouts), with the same contract: a wrong
type raises :class:`~overdrive.exceptions.InputTypeError`, a bad value
:class:`~overdrive.exceptions.ConfigurationError`, both naming the parameter.
"""

from __future__ import annotations

import math
import numbers
import operator
import threading

from .exceptions import ConfigurationError, InputTypeError

__all__ = ["int_or_none", "seconds_or_none"]


def int_or_none(name: str, value: object) -> int | None:
    """``value`` as an int (anything with ``__index__``), or None.

    The range is left to the native half, which knows it."""
    if value is None:
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise InputTypeError(f"{name} must be an int or None, not {type(value).__name__}") from None


def seconds_or_none(name: str, value: object, *, inf_waits_forever: bool) -> float | None:
    """A timeout in seconds: None, or a real number >= 0 (not NaN).

    ``inf`` means None (wait forever) when ``inf_waits_forever`` (so does a
    timeout too long for ``threading``, which would raise OverflowError),
    else it is refused like NaN."""
    if value is None:
        return None
    if not isinstance(value, numbers.Real):
        raise InputTypeError(
            f"{name} must be a number of seconds or None, not {type(value).__name__}"
        )
    expected = "must be a number of seconds >= 0, or None" + (
        "" if inf_waits_forever else " (finite)"
    )
    try:
        seconds = float(value)
    except OverflowError:
        raise ConfigurationError(f"invalid {name}={_show(value)}: {expected}") from None
    if seconds > threading.TIMEOUT_MAX and inf_waits_forever:
        return None
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise ConfigurationError(f"invalid {name}={_show(value)}: {expected}")
    return seconds


def _show(value: object) -> str:
    """``repr(value)`` cut to 80 characters (an int over 4300 digits has none)."""
    try:
        text = repr(value)
    except ValueError:
        return f"<{type(value).__name__} object>"
    return text if len(text) <= 80 else text[:77] + "..."
