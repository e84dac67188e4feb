"""Range checks for config fields: one line naming the field, its allowed range and the bad value.

Each config dataclass checks itself when it is built (`__post_init__`), so a bad flag or a bad
value in a saved run.json stops the program before any data is fetched or any step runs, and the
code below a config trusts it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

from lmstack.errors import LmstackError


class ConfigError(LmstackError, ValueError):
    """A setting outside its allowed range. Also a ValueError, so code that reads hyperparameters
    from a file and wraps ValueErrors with the file's name keeps doing so."""


def check_int(name: str, value: object, lo: int | None = None, hi: int | None = None) -> None:
    """`value` is an integer in [lo, hi] (either bound may be open-ended)."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and (lo is None or value >= lo) and (hi is None or value <= hi):
        return
    raise ConfigError(f"{name} must be an integer {_range(lo, hi)}, got {value!r}")


def check_float(name: str, value: object, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False, hi_open: bool = False) -> None:
    """`value` is a finite number in the range (open at either end when asked); NaN never passes."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if not ok:
        raise ConfigError(f"{name} must be a finite number {_range(lo, hi, lo_open, hi_open)}, got {value!r}")


def check_choice(name: str, value: object, choices: Iterable[str]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _range(lo, hi, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {hi}"
    return ""
