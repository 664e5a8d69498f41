"""Numbers in words: percentages, money, durations, counts (the one place units are written)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def pct(value: float) -> str:
    return "n/a" if is_missing(value) else f"{100 * value:.1f}%"


def usd(value: float) -> str:
    if is_missing(value):
        return "unknown"
    size = abs(value)
    digits = (f"{size:,.0f}" if size >= 1000 else f"{size:,.2f}" if size >= 1 else
              np.format_float_positional(size, precision=3, unique=False, fractional=False, trim="-"))
    # "USD" rather than "$": Jupyter renders text between two dollar signs as math.
    return f"-{digits} USD" if value < 0 else f"{digits} USD"


def secs(value: float) -> str:
    if is_missing(value):
        return "n/a"
    if abs(value) < 0.01:  # a cache lookup: "0 ms" would read as "not measured"
        return f"{value * 1000:.2g} ms"
    if abs(value) >= 3600:
        return f"{value / 3600:.1f} h"
    return f"{value * 1000:.0f} ms" if abs(value) < 1 else f"{value:.2f} s"


def ms(value: float) -> str:
    return "n/a" if is_missing(value) else f"{value * 1000:.2f} ms"


def per_second(value: float) -> str:
    return "n/a" if is_missing(value) else f"{value:.3g}"


def factor(value: float) -> str:
    return "n/a" if is_missing(value) else f"x{value:.2g}"


def count_of(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def token_count(count: float) -> str:
    return f"{count:.0f} token" + ("" if round(count) == 1 else "s")


def is_missing(value: object) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))
