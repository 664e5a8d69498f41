"""What a configuration is worth: expected value per request from accuracy, value and error cost.

A request earns V when its answer is right, loses E when it is wrong, loses F when it fails (no
answer at all: a timeout, a 5xx after every retry; F defaults to E), and costs c to run.  With
accuracy a measured on the answered requests and error rate f, its expected value is
(1-f)(a*V - (1-a)*E) - f*F - c, so a flaky configuration pays for its failures, and without
failures this is a*V - (1-a)*E - c.  EV rises with accuracy whenever V + E > 0, so the ends of an
accuracy interval map to the ends of an EV interval and the interval is carried through exactly.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from toolkit.errors import ParameterError

ArrayLike = float | np.ndarray | pd.Series


def expected_value(accuracy: ArrayLike, value_usd: float, error_cost_usd: float,
                   cost_usd: ArrayLike, *, error_rate: ArrayLike = 0.0,
                   failure_cost_usd: float | None = None) -> ArrayLike:
    """Expected value per request in USD: (1-f)(a*V - (1-a)*E) - f*F - c (F defaults to E)."""
    failure = error_cost_usd if failure_cost_usd is None else failure_cost_usd
    answered = accuracy * value_usd - (1 - accuracy) * error_cost_usd
    return (1 - error_rate) * answered - error_rate * failure - cost_usd


def break_even_accuracy(value_usd: float, error_cost_usd: float, cost_usd: ArrayLike, *,
                        error_rate: ArrayLike = 0.0, failure_cost_usd: float | None = None) -> ArrayLike:
    """Accuracy of the answers at which EV is zero: (E + (f*F + c) / (1-f)) / (V + E).

    Without failures that is (E + c) / (V + E); above 1 means never profitable; NaN when every
    request fails (no accuracy can make up for that).
    """
    _check_values(value_usd, error_cost_usd)
    return _accuracy_for_ev(0.0, value_usd, error_cost_usd, cost_usd, error_rate, failure_cost_usd)


def human_expected_value(value_usd: float, error_cost_usd: float, human_accuracy: float,
                         human_cost_usd: float) -> float:
    """EV per task of the human baseline, by the same formula as a model (a human does not fail)."""
    return float(expected_value(human_accuracy, value_usd, error_cost_usd, human_cost_usd))


def accuracy_to_beat_human(value_usd: float, error_cost_usd: float, cost_usd: ArrayLike,
                           human_accuracy: float, human_cost_usd: float, *, error_rate: ArrayLike = 0.0,
                           failure_cost_usd: float | None = None) -> ArrayLike:
    """Model accuracy at which its EV equals the human's (h + (c - human_cost) / (V + E) without failures).

    Below 0 the model wins at any accuracy (it is that much cheaper); above 1 it cannot win.
    """
    _check_values(value_usd, error_cost_usd)
    human = human_expected_value(value_usd, error_cost_usd, human_accuracy, human_cost_usd)
    return _accuracy_for_ev(human, value_usd, error_cost_usd, cost_usd, error_rate, failure_cost_usd)


def _accuracy_for_ev(target_usd: float, value_usd: float, error_cost_usd: float, cost_usd: ArrayLike,
                     error_rate: ArrayLike, failure_cost_usd: float | None) -> ArrayLike:
    failure = error_cost_usd if failure_cost_usd is None else failure_cost_usd
    answered = np.asarray(1 - np.asarray(error_rate, dtype=float), dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        needed = np.where(answered > 0, (target_usd + error_rate * failure + cost_usd) / np.where(
            answered > 0, answered, 1.0), np.nan)
    result = (error_cost_usd + needed) / (value_usd + error_cost_usd)
    if isinstance(cost_usd, pd.Series):
        return pd.Series(result, index=cost_usd.index)
    if isinstance(error_rate, pd.Series):
        return pd.Series(result, index=error_rate.index)
    return float(result) if np.ndim(result) == 0 else result


@dataclass(frozen=True)
class CostModel:
    """The business side of a decision: V, E, the cost of a failed request F (None: = E), an optional
    human baseline and monthly volume."""

    value_usd: float
    error_cost_usd: float
    human_accuracy: float | None = None
    human_cost_usd: float | None = None
    monthly_volume: float | None = None
    failure_cost_usd: float | None = None

    def __post_init__(self) -> None:
        _check_values(self.value_usd, self.error_cost_usd)
        if (self.human_accuracy is None) != (self.human_cost_usd is None):
            raise ParameterError("CostModel: give both human_accuracy and human_cost_usd, or neither")
        if self.human_accuracy is not None and not 0 <= self.human_accuracy <= 1:
            raise ParameterError(f"CostModel: human_accuracy must be in [0, 1], got {self.human_accuracy}")
        if self.monthly_volume is not None and self.monthly_volume < 0:
            raise ParameterError(f"CostModel: monthly_volume must be >= 0, got {self.monthly_volume}")
        if self.failure_cost_usd is not None and self.failure_cost_usd < 0:
            raise ParameterError(f"CostModel: failure_cost_usd must be >= 0, got {self.failure_cost_usd}")

    @property
    def has_human(self) -> bool:
        return self.human_accuracy is not None


def value_table(summary: pd.DataFrame, model: CostModel, *, cost_col: str = "usd_per_1k") -> pd.DataFrame:
    """Add EV, break-even and human comparison columns to a per-config summary.

    `summary` needs `accuracy` and `cost_col` (USD per 1000 requests, as `frontier.config_summary`
    gives); `accuracy_low`/`accuracy_high` are carried through when present, and `error_rate`
    (failed requests, charged `model.failure_cost_usd` each) when present.  Added columns:
    usd_per_request, break_even_accuracy, ev_usd, ev_low_usd, ev_high_usd, beats_break_even,
    break_even_verdict, monthly_ev_usd, monthly_ev_low_usd, monthly_ev_high_usd, human_ev_usd,
    accuracy_to_beat_human, beats_human, human_verdict.  A verdict is "above" when the whole
    accuracy interval clears the threshold, "below" when none of it does, else "uncertain".
    """
    _require(summary, ["accuracy", cost_col])
    out = summary.copy()
    v, e, failure = model.value_usd, model.error_cost_usd, model.failure_cost_usd
    low, high = _interval(out)
    c = out[cost_col].astype(float) / 1000
    f = out["error_rate"].astype(float).fillna(0.0) if "error_rate" in out else 0.0
    out["usd_per_request"] = c
    out["break_even_accuracy"] = break_even_accuracy(v, e, c, error_rate=f, failure_cost_usd=failure)
    for suffix, acc in (("", out["accuracy"].astype(float)), ("_low", low), ("_high", high)):
        out[f"ev{suffix}_usd"] = expected_value(acc, v, e, c, error_rate=f, failure_cost_usd=failure)
    out["beats_break_even"] = out["accuracy"] > out["break_even_accuracy"]
    out["break_even_verdict"] = _verdict(low, high, out["break_even_accuracy"])
    volume = np.nan if model.monthly_volume is None else model.monthly_volume
    for suffix in ("", "_low", "_high"):
        out[f"monthly_ev{suffix}_usd"] = out[f"ev{suffix}_usd"] * volume
    if model.has_human:
        h, hc = float(model.human_accuracy), float(model.human_cost_usd)  # type: ignore[arg-type]
        out["human_ev_usd"] = human_expected_value(v, e, h, hc)
        out["accuracy_to_beat_human"] = accuracy_to_beat_human(v, e, c, h, hc, error_rate=f,
                                                               failure_cost_usd=failure)
        out["beats_human"] = out["ev_usd"] > out["human_ev_usd"]
        out["human_verdict"] = _verdict(low, high, out["accuracy_to_beat_human"])
    else:
        out["human_ev_usd"] = np.nan
        out["accuracy_to_beat_human"] = np.nan
        out["beats_human"] = pd.Series(pd.NA, index=out.index, dtype="boolean")
        out["human_verdict"] = pd.Series(None, index=out.index, dtype=object)
    return out


def sensitivity(summary: pd.DataFrame, model: CostModel, ratios: Sequence[float] | None = None, *,
                cost_col: str = "usd_per_1k", id_col: str = "config_id") -> pd.DataFrame:
    """EV per config as the error cost varies: E = ratio * V for each ratio, V held fixed.

    Long format for a line plot (x=error_value_ratio, y=ev_usd, hue=id_col).  Default ratios are
    31 log-spaced values from 0.1 to 100.  Columns: id_col, error_value_ratio, error_cost_usd,
    break_even_accuracy, ev_usd, ev_low_usd, ev_high_usd.
    """
    _require(summary, [id_col, "accuracy", cost_col])
    grid = np.geomspace(0.1, 100, 31) if ratios is None else np.asarray(ratios, dtype=float)
    if len(grid) == 0 or np.any(grid < 0):
        raise ParameterError(f"sensitivity: ratios must be a non-empty list of values >= 0, got {list(grid)}")
    parts = []
    for ratio in grid:
        varied = CostModel(model.value_usd, ratio * model.value_usd, monthly_volume=model.monthly_volume,
                           failure_cost_usd=model.failure_cost_usd)
        table = value_table(summary, varied, cost_col=cost_col)
        parts.append(pd.DataFrame({
            id_col: table[id_col].to_numpy(), "error_value_ratio": ratio,
            "error_cost_usd": ratio * model.value_usd,
            "break_even_accuracy": table["break_even_accuracy"].to_numpy(),
            "ev_usd": table["ev_usd"].to_numpy(), "ev_low_usd": table["ev_low_usd"].to_numpy(),
            "ev_high_usd": table["ev_high_usd"].to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def _interval(summary: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    nan = pd.Series(np.nan, index=summary.index)
    low = summary["accuracy_low"].astype(float) if "accuracy_low" in summary else nan
    high = summary["accuracy_high"].astype(float) if "accuracy_high" in summary else nan
    return low, high


def _verdict(low: pd.Series, high: pd.Series, threshold: pd.Series) -> pd.Series:
    verdict = pd.Series("uncertain", index=low.index, dtype=object)
    verdict[low > threshold] = "above"
    verdict[high < threshold] = "below"
    verdict[low.isna() | high.isna()] = None
    return verdict


def _check_values(value_usd: float, error_cost_usd: float) -> None:
    if value_usd < 0 or error_cost_usd < 0 or value_usd + error_cost_usd <= 0:
        raise ParameterError(f"value_usd ({value_usd}) and error_cost_usd ({error_cost_usd}) must be "
                             ">= 0 with a positive sum: EV must rise with accuracy")


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ParameterError(f"summary is missing column(s) {', '.join(missing)}")
