"""A latency model per provider and model: e2e = TTFT + overhead + per-token time x output tokens.

Fitted from the requests table alone, so it serves imported benchmarks (llmperf: prompt length
fixed, TTFT measured) and our own runs alike.  Per group (default: endpoint, model, concurrency):
- TTFT: a robust line on prompt tokens (`latency_fit.fit_robust`) when the prompts vary and the
  slope is significantly positive (`ttft_kind` "fit"); otherwise TTFT is taken not to depend on
  prompt length ("constant"), which a prediction at another prompt length then assumes.
- decode = e2e - TTFT: a robust line on output tokens; the intercept is the overhead (the fixed
  part after the first token: last chunk, usage, closing the stream), the slope the per-token
  time ("fit").  When output lengths vary too little for a significantly positive slope, the
  overhead is 0 and the per-token time the median of decode / output tokens ("ratio").
Predictions keep each training request's own speed: request i at prompt P and output N would have
taken ttft_i + s (P - P_i) + overhead + r_i N, with r_i = (decode_i - overhead) / n_i; the quantiles
of these over the training requests are the predicted p50 / p95, so slow requests stay slow per
token and the spread grows with N.  Only ok, timed requests that were not cache hits count.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.api.typing import DataFrameGroupBy
from scipy import stats

from toolkit.analysis.latency_fit import fit_line

DEFAULT_BY = ("endpoint", "model", "concurrency")
# a group's fit needs no more requests than this: a large run is fitted on a seeded sample of this many
# per group (`store.load_sample`).  On the 1,000,000-row synthetic benchmark run (250,000 per group) the
# sample's parameters differ from the full fit's by < 2% and its modelled e2e by < 1% (tests/test_warehouse.py)
SAMPLE_ROWS = 20_000
MODEL_COLUMNS = (
    "label", "n", "prompt_tokens", "output_tokens", "ttft_kind", "ttft_s", "ttft_per_prompt_token_s",
    "ttft_per_prompt_token_low", "ttft_per_prompt_token_high", "decode_kind", "overhead_s",
    "overhead_low", "overhead_high", "per_token_s", "per_token_low", "per_token_high", "decode_s",
    "e2e_model_s", "median_e2e_s", "ttft_share", "overhead_share", "decode_share",
)
ERROR_COLUMNS = ("n_heldout", "mape_pct", "p95_coverage", "train_median_output_tokens",
                 "train_max_output_tokens", "test_median_output_tokens")


@dataclass(frozen=True)
class GroupModel:
    """One group's fitted model: the TTFT slope, the overhead and every training request's speed."""

    ttft_kind: str
    ttft_slope: float  # seconds per prompt token (0 for "constant")
    decode_kind: str
    overhead_s: float
    ttft_s: np.ndarray = field(repr=False, compare=False)  # per training request
    prompt_tokens: np.ndarray = field(repr=False, compare=False)
    rate_s: np.ndarray = field(repr=False, compare=False)  # r_i, seconds per output token

    def quantiles(self, prompt_tokens: float, output_tokens: float,
                  q: Sequence[float] = (0.5, 0.95)) -> np.ndarray:
        """Predicted e2e quantiles (seconds) of a request with these prompt and output lengths."""
        shift = np.zeros(len(self.ttft_s))
        if self.ttft_slope != 0:  # a "constant" TTFT needs no prompt lengths at all
            shift = np.nan_to_num(self.ttft_slope * (prompt_tokens - self.prompt_tokens))
        e2e = self.ttft_s + shift + self.overhead_s + self.rate_s * output_tokens
        return np.quantile(e2e, q)

    def quantiles_of(self, prompt_tokens: np.ndarray, output_tokens: np.ndarray,
                     q: Sequence[float] = (0.5, 0.95)) -> np.ndarray:
        """`quantiles` of many requests at once, one row each.

        A prompt length shifts every training request's e2e by the same slope x prompt, so the
        quantiles are taken once per distinct output length and then shifted: linear in the
        requests, where one `quantiles` call per request is requests x training requests.
        """
        prompt, output = np.asarray(prompt_tokens, dtype=float), np.asarray(output_tokens, dtype=float)
        if self.ttft_slope != 0 and np.isnan(self.prompt_tokens).any():
            # a training request without a prompt length is not shifted, so the shift is not common
            return np.array([self.quantiles(p, n, q) for p, n in zip(prompt, output)]).reshape(len(prompt), len(q))
        shifted = np.isfinite(prompt) if self.ttft_slope != 0 else np.zeros(len(prompt), dtype=bool)
        out = np.empty((len(prompt), len(q)))
        for moves in (False, True):
            rows = shifted == moves
            if not rows.any():
                continue
            base = self.ttft_s + self.overhead_s - (self.ttft_slope * self.prompt_tokens if moves else 0.0)
            lengths, which = np.unique(output[rows], return_inverse=True)
            at_length = np.array([np.quantile(base + self.rate_s * n, q) for n in lengths])
            out[rows] = at_length[which] + (self.ttft_slope * prompt[rows])[:, None] if moves else at_length[which]
        return out


def usable(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows a latency model learns from: ok, not a cache hit, TTFT <= e2e, >= 1 output token."""
    ok = frame["status"].eq("ok").fillna(False).astype(bool)
    hit = frame["cache_hit"].fillna(False).astype(bool) if "cache_hit" in frame else False
    out = frame.loc[ok & ~hit]
    for column in ("ttft_s", "e2e_s", "prompt_tokens", "completion_tokens"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    keep = out["ttft_s"].notna() & out["e2e_s"].notna() & (out["completion_tokens"] >= 1)
    keep &= out["e2e_s"] >= out["ttft_s"]
    return out.loc[keep].assign(decode_s=lambda f: f["e2e_s"] - f["ttft_s"])


def fit_group(rows: pd.DataFrame, *, level: float = 0.95) -> tuple[GroupModel, dict]:
    """Fit one group (rows from `usable`); return the model and its parameters with intervals."""
    ttft_fit = _line(rows, "prompt_tokens", "ttft_s", level)
    decode_fit = _line(rows, "completion_tokens", "decode_s", level)
    tokens = rows["completion_tokens"].to_numpy(dtype=float)
    decode = rows["decode_s"].to_numpy(dtype=float)
    if decode_fit is not None:
        overhead, per_token = float(decode_fit["intercept"]), float(decode_fit["slope"])
        overhead_ci = (float(decode_fit["intercept_low"]), float(decode_fit["intercept_high"]))
        per_token_ci = (float(decode_fit["slope_low"]), float(decode_fit["slope_high"]))
    else:
        overhead, overhead_ci = 0.0, (np.nan, np.nan)
        per_token, per_token_ci = _median_interval(decode / tokens, level)
    model = GroupModel(
        ttft_kind="fit" if ttft_fit is not None else "constant",
        ttft_slope=float(ttft_fit["slope"]) if ttft_fit is not None else 0.0,
        decode_kind="fit" if decode_fit is not None else "ratio", overhead_s=overhead,
        ttft_s=rows["ttft_s"].to_numpy(dtype=float), prompt_tokens=rows["prompt_tokens"].to_numpy(dtype=float),
        rate_s=(decode - overhead) / tokens)
    prompt, output = float(rows["prompt_tokens"].median()), float(np.median(tokens))
    ttft = (float(ttft_fit["intercept"]) + model.ttft_slope * prompt if ttft_fit is not None
            else float(rows["ttft_s"].median()))
    slope_ci = ((float(ttft_fit["slope_low"]), float(ttft_fit["slope_high"])) if ttft_fit is not None
                else (np.nan, np.nan))
    decode_at = per_token * output
    total = ttft + overhead + decode_at
    params = {
        "n": len(rows), "prompt_tokens": prompt, "output_tokens": output, "ttft_kind": model.ttft_kind,
        "ttft_s": ttft, "ttft_per_prompt_token_s": model.ttft_slope,
        "ttft_per_prompt_token_low": slope_ci[0], "ttft_per_prompt_token_high": slope_ci[1],
        "decode_kind": model.decode_kind, "overhead_s": overhead, "overhead_low": overhead_ci[0],
        "overhead_high": overhead_ci[1], "per_token_s": per_token, "per_token_low": per_token_ci[0],
        "per_token_high": per_token_ci[1], "decode_s": decode_at, "e2e_model_s": total,
        "median_e2e_s": float(rows["e2e_s"].median()),
        # a negative overhead (possible from a fit) is shown as no overhead
        **_shares(ttft, max(overhead, 0.0), decode_at),
    }
    return model, params


def fit_latency_model(frame: pd.DataFrame, *, by: Sequence[str] = DEFAULT_BY,
                      level: float = 0.95) -> pd.DataFrame:
    """One row per group: the model's parameters with `level` intervals and its decomposition at
    the group's median prompt and output length (columns `MODEL_COLUMNS` after the keys).

    `e2e_model_s` = ttft_s + overhead_s + decode_s at those lengths, beside the observed
    `median_e2e_s`; the shares (TTFT, overhead, decode) sum to 1 for `plots.decomposition_plot`.
    """
    keys = _present(frame, by)
    rows = []
    for group, part in _groups(usable(_narrow(frame, keys)), keys):
        _, params = fit_group(part, level=level)
        rows.append(dict(zip(keys, group)) | {"label": _label(group)} | params)
    return pd.DataFrame(rows, columns=[*keys, *MODEL_COLUMNS])


def main_group_model(frame: pd.DataFrame, *, by: Sequence[str] = DEFAULT_BY) -> tuple[GroupModel, str] | None:
    """The fitted model of the group with the most usable requests and its label; None without any
    (e.g. a trace with no timings)."""
    keys = _present(frame, by)
    groups = list(_groups(usable(_narrow(frame, keys)), keys))
    if not groups:
        return None
    group, part = max(groups, key=lambda item: len(item[1]))
    model, _ = fit_group(part)
    return model, _label(group)


def predict_latency(frame: pd.DataFrame, *, prompt_tokens: Sequence[float] | None = None,
                    output_tokens: Sequence[float], by: Sequence[str] = DEFAULT_BY,
                    q: Sequence[float] = (0.5, 0.95)) -> pd.DataFrame:
    """Predicted e2e quantiles per group at each (prompt, output) length pair.

    `prompt_tokens` None means each group's median prompt.  Columns: keys, label, prompt_tokens,
    output_tokens, p50_e2e_s, p95_e2e_s (one per q), ttft_kind, outside (the lengths lie outside
    what the group's requests covered, or the prompt differs while TTFT is "constant").
    """
    keys = _present(frame, by)
    names = [f"p{100 * p:g}_e2e_s" for p in q]
    rows = []
    for group, part in _groups(usable(_narrow(frame, keys)), keys):
        model, params = fit_group(part)
        prompts = [params["prompt_tokens"]] if prompt_tokens is None else [float(p) for p in prompt_tokens]
        seen_prompt = (part["prompt_tokens"].min(), part["prompt_tokens"].max())
        seen_output = (part["completion_tokens"].min(), part["completion_tokens"].max())
        for prompt in prompts:
            for output in (float(n) for n in output_tokens):
                outside = not (seen_output[0] <= output <= seen_output[1])
                outside |= not (seen_prompt[0] <= prompt <= seen_prompt[1]) if model.ttft_kind == "fit" else (
                    prompt != params["prompt_tokens"])
                rows.append(dict(zip(keys, group)) | {
                    "label": _label(group), "prompt_tokens": prompt, "output_tokens": output,
                    **dict(zip(names, model.quantiles(prompt, output, q))), "ttft_kind": model.ttft_kind,
                    "outside": bool(outside)})
    return pd.DataFrame(rows, columns=[*keys, "label", "prompt_tokens", "output_tokens", *names,
                                       "ttft_kind", "outside"])


# held-out errors are medians and shares: this many requests per group pin them down to about a
# percent, and each fold's quantiles cost training rows x distinct output lengths
HELDOUT_ROWS = 5_000


def heldout_predictions(frame: pd.DataFrame, *, by: Sequence[str] = DEFAULT_BY, folds: int = 5,
                        seed: int = 0, min_rows: int = 5, max_rows: int = HELDOUT_ROWS) -> pd.DataFrame:
    """Each request predicted by a model that never saw it, two ways per group (a group of more than
    `max_rows` usable requests: a seeded random `max_rows` of them).

    "kfold": requests split at random into `folds` parts, each predicted from the others.
    "extrapolation": fitted on requests with output length <= the group's median, tested on the
    longer ones; when fewer than `min_rows` are longer (outputs often stop at max_tokens), fitted
    on those shorter than the median and tested on the rest; skipped when either side has fewer
    than `min_rows` requests.  Groups with fewer than 2 x `folds` requests get no k-fold rows.
    Columns: keys, label, split,
    request_id, prompt_tokens, completion_tokens, e2e_s, p50_e2e_s, p95_e2e_s, n_train,
    train_median_output_tokens, train_max_output_tokens, ape (|p50 - e2e| / e2e).
    """
    keys = _present(frame, by)
    rng = np.random.default_rng(seed)
    thinning = np.random.default_rng([seed, 1])  # its own stream: a small group's folds stay as they were
    parts = []
    for group, part in _groups(usable(_narrow(frame, keys)), keys):
        if len(part) > max_rows:
            part = part.iloc[np.sort(thinning.choice(len(part), size=max_rows, replace=False))]
        pieces = []
        fold = rng.permutation(len(part)) % folds
        if len(part) >= 2 * folds:
            pieces += [_predict_split(part[fold != k], part[fold == k], "kfold") for k in range(folds)]
        longer = _longer_half(part["completion_tokens"], min_rows)
        if longer is not None:
            pieces.append(_predict_split(part[~longer], part[longer], "extrapolation"))
        parts += [piece.assign(**dict(zip(keys, group)), label=_label(group)) for piece in pieces]
    columns = [*keys, "label", "split", "request_id", "prompt_tokens", "completion_tokens", "e2e_s",
               "p50_e2e_s", "p95_e2e_s", "n_train", "train_median_output_tokens", "train_max_output_tokens",
               "ape"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def heldout_errors(predictions: pd.DataFrame, *, by: Sequence[str] = ("label",)) -> pd.DataFrame:
    """Per group and split: n_heldout, mape_pct (median absolute percentage error of the p50),
    p95_coverage (share of held-out requests at or below their predicted p95),
    train_median_output_tokens, train_max_output_tokens (over the group's fits),
    test_median_output_tokens.  `by=()` pools every group."""
    keys = [*by, "split"]
    rows = []
    for group, part in predictions.groupby(keys, sort=True, dropna=False):
        rows.append(dict(zip(keys, group if isinstance(group, tuple) else (group,))) | {
            "n_heldout": len(part), "mape_pct": float(100 * part["ape"].median()),
            # a relative tolerance of 1e-9 so that a prediction equal to the truth up to rounding covers it
            "p95_coverage": float((part["e2e_s"] <= part["p95_e2e_s"] * (1 + 1e-9)).mean()),
            "train_median_output_tokens": float(part["train_median_output_tokens"].median()),
            "train_max_output_tokens": float(part["train_max_output_tokens"].max()),
            "test_median_output_tokens": float(part["completion_tokens"].median())})
    return pd.DataFrame(rows, columns=[*keys, *ERROR_COLUMNS])


def _predict_split(train: pd.DataFrame, test: pd.DataFrame, split: str) -> pd.DataFrame:
    model, _ = fit_group(train)
    predicted = model.quantiles_of(test["prompt_tokens"].to_numpy(dtype=float),
                                   test["completion_tokens"].to_numpy(dtype=float), (0.5, 0.95))
    e2e = test["e2e_s"].to_numpy(dtype=float)
    return pd.DataFrame({
        "split": split, "request_id": test["request_id"].to_numpy(dtype=object),
        "prompt_tokens": test["prompt_tokens"].to_numpy(dtype=float),
        "completion_tokens": test["completion_tokens"].to_numpy(dtype=float), "e2e_s": e2e,
        "p50_e2e_s": predicted[:, 0], "p95_e2e_s": predicted[:, 1],
        "n_train": len(train), "train_median_output_tokens": float(train["completion_tokens"].median()),
        "train_max_output_tokens": float(train["completion_tokens"].max()),
        "ape": np.abs(predicted[:, 0] - e2e) / e2e})


def _longer_half(tokens: pd.Series, min_rows: int) -> pd.Series | None:
    """Mask of the test side of the extrapolation split, or None when there is none to make."""
    median = tokens.median()
    for longer in (tokens > median, tokens >= median):
        if longer.sum() >= min_rows and (~longer).sum() >= min_rows:
            return longer
    return None


def _line(rows: pd.DataFrame, x: str, y: str, level: float) -> dict | None:
    """The robust fit when it exists and its slope is significantly positive, else None."""
    xs, ys = rows[x].to_numpy(dtype=float), rows[y].to_numpy(dtype=float)
    if len(np.unique(xs[~np.isnan(xs)])) < 2:
        return None
    present = ~(np.isnan(xs) | np.isnan(ys))
    fit = fit_line(xs[present], ys[present], level=level, x_name=x)
    if fit["reason"] is not None or not fit["slope_low"] > 0:
        return None
    return fit


def _median_interval(values: np.ndarray, level: float) -> tuple[float, tuple[float, float]]:
    """The median with a distribution-free interval from order statistics (binomial ranks)."""
    values = np.sort(values[np.isfinite(values)])
    n = len(values)
    if n == 0:
        return np.nan, (np.nan, np.nan)
    low_rank = int(stats.binom.ppf((1 - level) / 2, n, 0.5))  # 1-based rank of the lower limit
    low = values[max(low_rank - 1, 0)]
    high = values[min(n - low_rank, n - 1)]
    return float(np.median(values)), (float(low), float(high))


def _shares(ttft: float, overhead: float, decode: float) -> dict[str, float]:
    total = ttft + overhead + decode
    if not total > 0:
        return {"ttft_share": np.nan, "overhead_share": np.nan, "decode_share": np.nan}
    return {"ttft_share": ttft / total, "overhead_share": overhead / total, "decode_share": decode / total}


USED = ("status", "cache_hit", "request_id", "ttft_s", "e2e_s", "prompt_tokens", "completion_tokens")


def _narrow(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The columns a model reads: the folds copy these rather than every column of a large table."""
    return frame[[c for c in dict.fromkeys([*keys, *USED]) if c in frame.columns]]


def _present(frame: pd.DataFrame, by: Sequence[str]) -> list[str]:
    """The group keys the frame has (an import may lack concurrency, say)."""
    keys = [k for k in by if k in frame.columns]
    return keys or ["model"]


def _groups(rows: pd.DataFrame, keys: list[str]) -> DataFrameGroupBy:
    return rows.groupby(keys, sort=True, dropna=False)


def _label(group: tuple) -> str:
    return " / ".join("?" if pd.isna(v) else (f"c{v}" if isinstance(v, (int, np.integer)) else str(v))
                      for v in group)
