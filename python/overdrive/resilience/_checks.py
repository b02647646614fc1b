"""Argument checks shared by the resilience classes (typed errors naming the parameter)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from .._args import _show
from ..exceptions import ConfigurationError, InputTypeError

__all__ = ["check_callable", "check_int", "check_name", "check_real"]


def check_name(value: object) -> str:
    if not isinstance(value, str):
        raise InputTypeError(f"name must be a str, not {type(value).__name__}")
    return value


def check_int(name: str, value: object, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{name} must be an int, not {type(value).__name__}")
    v = int(value)
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ConfigurationError(f"invalid {name}={_show(value)}: must be {rng}")
    return v


def check_real(
    name: str,
    value: object,
    *,
    lo: float = 0.0,
    lo_open: bool = False,
    hi: float = math.inf,
    hi_open: bool = False,
    allow_none: bool = False,
) -> float | None:
    """A finite real in the range (``lo``/``hi`` inclusive unless ``*_open``)."""
    if value is None:
        if allow_none:
            return None
        raise InputTypeError(f"{name} must be a number, not None")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name} must be a number, not {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        hi_s = "inf" if hi == math.inf else f"{hi:g}"
        raise ConfigurationError(
            f"invalid {name}={_show(value)}: must be a finite number in {left}{lo:g}, {hi_s}{right}"
        )
    return v


def check_callable(name: str, value: object) -> Callable[..., Any]:
    if not callable(value):
        raise InputTypeError(f"{name} must be callable, not {type(value).__name__}")
    return value


def check_exc_types(name: str, value: object) -> tuple[type[BaseException], ...]:
    """An exception class or a tuple/list of them."""
    if isinstance(value, type) and issubclass(value, BaseException):
        return (value,)
    if isinstance(value, (tuple, list, set, frozenset)):
        out = []
        for v in value:
            if not (isinstance(v, type) and issubclass(v, BaseException)):
                raise InputTypeError(
                    f"{name} must hold exception classes, not {type(v).__name__} ({_show(v)})"
                )
            out.append(v)
        return tuple(out)
    raise InputTypeError(
        f"{name} must be an exception class or a tuple of them, not {type(value).__name__}"
    )
