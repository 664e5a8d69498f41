"""Robust straight-line fits of latency on token counts, and what-if predictions from them.

TTFT grows with prompt tokens (prefill) and e2e with completion tokens (decode); a line
y = a + b x separates the fixed part `a` from the per-token part `b`. The fit is an M-estimator
(statsmodels' RLM algorithm and norms, MAD scale; see `_rlm_line`): Huber's, which converges from any start, then Tukey's biweight
from there, which gives stalled requests zero weight. Huber alone keeps a bias of about 0.1
residual sd in the intercept when 5% of requests stall (stalls only ever add time).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from toolkit import warehouse
from toolkit.analysis.rows import each_group, group_keys, timed_mask, timed_sql
from toolkit.warehouse import Rows


FIT_COLUMNS = (
    "x_name", "y_name", "n", "intercept", "intercept_low", "intercept_high", "intercept_se",
    "slope", "slope_low", "slope_high", "slope_se", "cov_intercept_slope", "r2", "resid_scale",
    "level", "reason",
)
PREDICT_COLUMNS = ("x_name", "y_name", "x", "prediction", "mean_low", "mean_high", "pred_low",
                   "pred_high")


def _z(level: float) -> float:
    return float(stats.norm.ppf(0.5 + level / 2))


# a line's two parameters need no more requests than this: a larger group is fitted on a seeded random
# sample of this many of its rows (issue 13: at most a few hundred thousand per group)
FIT_ROWS = 100_000


def fit_robust(frame: pd.DataFrame, *, x: str, y: str, by: str | Sequence[str] = "model",
               level: float = 0.95, max_rows: int = FIT_ROWS, seed: int = 0) -> pd.DataFrame:
    """Fit y = intercept + slope * x per group, robustly (see module doc), on ok, non-null rows.

    A group of more than `max_rows` such rows is fitted on `max_rows` of them, a random choice fixed
    by `seed` (the intervals are then those of the sample: honest, a little wider).
    Returns one row per group: the keys, then x_name, y_name, n (the rows fitted), intercept and slope with their
    `level` confidence limits (_low/_high, normal approximation from RLM's H1 covariance) and
    standard errors (_se), cov_intercept_slope, r2 (1 - SSres/SStot of the robust line on all
    points, outliers included, so it can be low or negative when stalls dominate), resid_scale (the robust MAD scale of the residuals, in y units), level, and reason
    (null when fitted; else why the numbers are NaN: fewer than 3 points or no spread in x).
    """
    keys = group_keys(by)
    ok = frame["status"].eq("ok").fillna(False).to_numpy(dtype=bool)
    data = pd.DataFrame({k: frame[k] for k in keys})
    data["_x"] = pd.to_numeric(frame[x], errors="coerce").astype(float)
    data["_y"] = pd.to_numeric(frame[y], errors="coerce").astype(float)
    data = data.loc[ok].dropna(subset=["_x", "_y"])
    groups, lines = [], []
    for group, part in data.groupby(keys, dropna=False, sort=True):
        groups.append(group)
        lines.append(functools.partial(fit_line, part["_x"].to_numpy(), part["_y"].to_numpy(), level=level,
                                       x_name=x, max_rows=max_rows, seed=seed))
    rows = [dict(zip(keys, group)) | {"x_name": x, "y_name": y, "level": level} | fit
            for group, fit in zip(groups, each_group(lines))]
    return pd.DataFrame(rows, columns=keys + list(FIT_COLUMNS))


def fit_line(xs: np.ndarray, ys: np.ndarray, *, level: float, x_name: str, max_rows: int = FIT_ROWS,
             seed: int = 0) -> dict:
    """One group's `fit_robust` row (from n to reason) from its x and y values, none of them NaN."""
    if len(xs) > max_rows:
        chosen = np.sort(np.random.default_rng(seed).choice(len(xs), size=max_rows, replace=False))
        xs, ys = xs[chosen], ys[chosen]
    n = len(xs)
    empty = dict.fromkeys(FIT_COLUMNS[3:-2], np.nan) | {"n": n}
    if n < 3:
        return empty | {"reason": f"fewer than 3 points ({n})"}
    if np.ptp(xs) == 0:
        return empty | {"reason": f"no spread in {x_name} (all {xs[0]:g})"}
    ols, resid = _wls_line(xs, ys, np.ones(n))
    if np.allclose(resid, 0.0, atol=1e-12 * max(1.0, float(np.abs(ys).max()))):
        # An exact line leaves the MAD scale at 0 and RLM's weights undefined; OLS is exact here.
        params, cov, scale = ols, np.zeros((2, 2)), 0.0
    else:
        huber, _, _ = _rlm_line(xs, ys, sm.robust.norms.HuberT())
        params, cov, scale = _rlm_line(xs, ys, sm.robust.norms.TukeyBiweight(), start=huber)
    z = _z(level)
    se = np.sqrt(np.diag(cov))
    fitted = params[0] + params[1] * xs
    total = float(((ys - ys.mean()) ** 2).sum())
    r2 = 1.0 - float(((ys - fitted) ** 2).sum()) / total if total > 0 else np.nan
    return {
        "n": n,
        "intercept": params[0], "intercept_low": params[0] - z * se[0],
        "intercept_high": params[0] + z * se[0], "intercept_se": se[0],
        "slope": params[1], "slope_low": params[1] - z * se[1],
        "slope_high": params[1] + z * se[1], "slope_se": se[1],
        "cov_intercept_slope": cov[0][1], "r2": r2, "resid_scale": scale, "reason": None,
    }


MAD_C = 0.6744897501960817  # statsmodels.robust.scale.mad's constant: Gaussian.ppf(3/4)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # einsum, not BLAS: a threaded OpenBLAS dot of 500,000 values takes ~13 ms on a busy 2-core machine, this <1 ms
    return float(np.einsum("i,i->", a, b))


def _wls_line(xs: np.ndarray, ys: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of ys on [1, xs] in closed form (centered, for accuracy): params, resid."""
    total = weights.sum()
    x_mean, y_mean = _dot(weights, xs) / total, _dot(weights, ys) / total
    dx = xs - x_mean
    weighted_dx = weights * dx
    slope = (_dot(weighted_dx, ys) - y_mean * weighted_dx.sum()) / _dot(weighted_dx, dx)
    params = np.array([y_mean - slope * x_mean, slope])
    return params, ys - (params[0] + params[1] * xs)


def _rlm_line(xs: np.ndarray, ys: np.ndarray, norm: sm.robust.norms.RobustNorm,
              start: np.ndarray | None = None, *, maxiter: int = 50,
              tol: float = 1e-8) -> tuple[np.ndarray, np.ndarray, float]:
    """`sm.RLM(ys, [1, xs], M=norm).fit(start_params=start)` with its defaults, for a straight line.

    The same IRLS as statsmodels 0.15 (MAD scale about 0, deviance of the WLS scale as the
    convergence criterion, H1 covariance, statsmodels' own norm), agreeing with it to 1e-10
    standard errors; only the weighted least squares step is solved in closed form.  RLM's
    pseudo-inverse per iteration, and the reference cycles its intermediate results leave for the
    garbage collector, made `fit_ttft` on a million rows take ~45 s and 3.5 GB; this takes ~5 s
    and a few arrays.  Returns params, covariance and scale.
    """
    n = len(xs)
    ones = np.ones(n)
    if start is None:
        params, resid = _wls_line(xs, ys, ones)
    else:
        params = np.asarray(start, dtype=float)
        resid = ys - (params[0] + params[1] * xs)
    weights = ones

    def deviance() -> float:
        z = resid / (_dot(weights * resid, resid) / (n - 2))
        if isinstance(norm, sm.robust.norms.TukeyBiweight):
            # Same rho, c^2/6, for every |z| >= c, but (1 - (z/c)^2)^3 on negative bases is ~10x slower
            z = np.clip(z, -norm.c, norm.c)
        return float(norm(z).sum())

    scale = float(np.median(np.abs(resid))) / MAD_C
    history = [np.inf, deviance()]
    while scale != 0.0:  # zero scale: the non-outliers lie on a line, which is the answer
        weights = norm.weights(resid / scale)
        params, resid = _wls_line(xs, ys, weights)
        scale = float(np.median(np.abs(resid))) / MAD_C
        history.append(deviance())
        if not (abs(history[-1] - history[-2]) > tol and len(history) - 1 < maxiter):
            break
    scaled = resid / scale if scale != 0.0 else np.zeros(n)
    psi_deriv = norm.psi_deriv(scaled)
    k = 1 + 2 / n * np.var(psi_deriv) / np.mean(psi_deriv) ** 2
    design = np.array([[n, xs.sum()], [xs.sum(), _dot(xs, xs)]])
    cov = (k ** 2 * (np.sum(norm.psi(scaled) ** 2) * scale ** 2 / (n - 2))
           / (psi_deriv.sum() / n) ** 2 * np.linalg.inv(design))
    return params, cov, scale


def fit_ttft(frame: pd.DataFrame, *, by: str | Sequence[str] = "model",
             level: float = 0.95) -> pd.DataFrame:
    """TTFT ~ intercept + slope * prompt_tokens per group: the slope is seconds per prompt token."""
    return fit_robust(frame, x="prompt_tokens", y="ttft_s", by=by, level=level)


def fit_e2e(frame: pd.DataFrame, *, by: str | Sequence[str] = "model",
            level: float = 0.95) -> pd.DataFrame:
    """e2e ~ intercept + slope * completion_tokens per group: the slope is seconds per output token."""
    return fit_robust(frame, x="completion_tokens", y="e2e_s", by=by, level=level)


def predict(fit: pd.Series | pd.DataFrame, x: float | Sequence[float] | np.ndarray, *,
            level: float | None = None) -> pd.DataFrame:
    """Predict y at each x for each fit row (a row or a table from `fit_robust`).

    Two intervals at `level` (default: the fit's own): mean_low/mean_high is the uncertainty of
    the line only (intercept and slope covariance), where the *average* request at x lies;
    pred_low/pred_high adds the residual spread (robust scale, normal quantiles), where a
    *single* new request at x should fall. Columns: the fit's group keys, then
    x_name, y_name, x, prediction, mean_low, mean_high, pred_low, pred_high.
    """
    fits = fit.to_frame().T if isinstance(fit, pd.Series) else fit
    keys = [c for c in fits.columns if c not in FIT_COLUMNS]
    xs = np.atleast_1d(np.asarray(x, dtype=float))
    parts = []
    for _, row in fits.iterrows():
        a, b = float(row["intercept"]), float(row["slope"])
        var_a, var_b = float(row["intercept_se"]) ** 2, float(row["slope_se"]) ** 2
        cov = float(row["cov_intercept_slope"])
        z = _z(float(row["level"]) if level is None else level)
        pred = a + b * xs
        se_mean = np.sqrt(var_a + xs ** 2 * var_b + 2 * xs * cov)
        se_new = np.sqrt(se_mean ** 2 + float(row["resid_scale"]) ** 2)
        part = pd.DataFrame({k: [row[k]] * len(xs) for k in keys + ["x_name", "y_name"]})
        part = part.assign(x=xs, prediction=pred, mean_low=pred - z * se_mean,
                           mean_high=pred + z * se_mean, pred_low=pred - z * se_new,
                           pred_high=pred + z * se_new)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=keys + list(PREDICT_COLUMNS))
    return pd.concat(parts, ignore_index=True)


def _ratio(row: pd.Series, x1: float, x2: float, z: float) -> tuple[float, float, float]:
    """(a + b x2) / (a + b x1) with a delta-method interval from the parameter covariance."""
    a, b = float(row["intercept"]), float(row["slope"])
    den = a + b * x1
    ratio = (a + b * x2) / den
    grad = np.array([(x1 - x2) * b, a * (x2 - x1)]) / den ** 2
    cov = np.array([[float(row["intercept_se"]) ** 2, float(row["cov_intercept_slope"])],
                    [float(row["cov_intercept_slope"]), float(row["slope_se"]) ** 2]])
    se = float(np.sqrt(grad @ cov @ grad))
    return ratio, ratio - z * se, ratio + z * se


def what_if(frame: pd.DataFrame, *, output_tokens: Sequence[int] = (100, 1000),
            by: str | Sequence[str] = "model", level: float = 0.95) -> pd.DataFrame:
    """Predicted e2e at each output length, and how much slower than at the first length.

    For e2e = a + b n the ratio is (a + b n2) / (a + b n1): below n2 / n1 whenever a > 0, which is
    why 100 tokens is not 10x faster than 1000. Columns: keys, output_tokens, e2e_s, pred_low,
    pred_high (single-request interval, see `predict`), ratio (vs the first length, with a
    delta-method ratio_low/ratio_high), proportional_ratio (n / n_first, the naive answer).
    """
    keys = group_keys(by)
    fits = fit_e2e(frame, by=keys, level=level)
    lengths = [float(n) for n in output_tokens]
    preds = predict(fits, lengths)
    z = _z(level)
    ratios = []
    for _, row in fits.iterrows():
        ratios += [_ratio(row, lengths[0], n, z) for n in lengths]
    ratio = np.array(ratios, dtype=float).reshape(-1, 3) if ratios else np.empty((0, 3))
    out = preds[keys].copy()
    out["output_tokens"] = preds["x"].astype(int)
    out["e2e_s"] = preds["prediction"]
    out["pred_low"], out["pred_high"] = preds["pred_low"], preds["pred_high"]
    out["ratio"], out["ratio_low"], out["ratio_high"] = ratio[:, 0], ratio[:, 1], ratio[:, 2]
    out["proportional_ratio"] = out["output_tokens"] / lengths[0] if lengths else np.nan
    return out


def what_if_prompt(frame: pd.DataFrame, scale: float = 0.5, *, by: str | Sequence[str] = "model",
                   level: float = 0.95) -> pd.DataFrame:
    """What TTFT (and e2e) would do if each group's median prompt were `scale` times as long.

    Uses the TTFT fit: saving = slope * (1 - scale) * median prompt. Columns: keys,
    prompt_tokens (observed median), scaled_prompt_tokens, ttft_s and scaled_ttft_s (fitted),
    ttft_saved_s with ttft_saved_low/ttft_saved_high (slope interval), ratio (scaled / observed
    TTFT, delta-method ratio_low/ratio_high), median_e2e_s, e2e_saved_share (saving / median e2e).
    """
    keys = group_keys(by)
    fits = fit_ttft(frame, by=keys, level=level)
    ok = frame.loc[frame["status"].eq("ok").fillna(False).to_numpy(dtype=bool)]
    medians = ok.assign(prompt_tokens=pd.to_numeric(ok["prompt_tokens"]).astype(float)).groupby(
        keys, dropna=False, as_index=False)[["prompt_tokens", "e2e_s"]].median()
    fits = fits.merge(medians.rename(columns={"e2e_s": "median_e2e_s"}), on=keys, how="left")
    z = _z(level)
    prompt = fits["prompt_tokens"].astype(float)
    cut = prompt * (1 - scale)
    out = fits[keys + ["prompt_tokens"]].copy()
    out["scaled_prompt_tokens"] = prompt * scale
    out["ttft_s"] = fits["intercept"] + fits["slope"] * prompt
    out["scaled_ttft_s"] = fits["intercept"] + fits["slope"] * prompt * scale
    out["ttft_saved_s"] = fits["slope"] * cut
    out["ttft_saved_low"] = (fits["slope"] - z * fits["slope_se"]) * cut
    out["ttft_saved_high"] = (fits["slope"] + z * fits["slope_se"]) * cut
    ratios = [_ratio(row, row["prompt_tokens"], row["prompt_tokens"] * scale, z)
              for _, row in fits.iterrows()]
    ratio = np.array(ratios, dtype=float).reshape(-1, 3)
    out["ratio"], out["ratio_low"], out["ratio_high"] = ratio[:, 0], ratio[:, 1], ratio[:, 2]
    out["median_e2e_s"] = fits["median_e2e_s"]
    out["e2e_saved_share"] = out["ttft_saved_s"] / fits["median_e2e_s"].where(lambda s: s > 0)
    return out


def observed_scaling(frame: pd.DataFrame, *, by: str = "model", share: float = 0.25) -> pd.DataFrame:
    """Measured, not fitted: median e2e of each group's shortest and longest `share` of outputs.

    Compares how many times more tokens the long outputs have with how many times longer they
    take, straight from the timed requests.  Columns: by, n, short_tokens, long_tokens,
    short_e2e_s, long_e2e_s (medians), token_ratio, time_ratio.
    """
    # only the columns used: a copy of every column of the timed rows costs ~0.4 GB at 1M rows
    timed = frame.loc[timed_mask(frame), list(dict.fromkeys([by, "completion_tokens", "e2e_s"]))].assign(
        _tokens=lambda f: pd.to_numeric(f["completion_tokens"], errors="coerce").astype(float),
        _e2e=lambda f: f["e2e_s"].astype(float)).dropna(subset=["_tokens"])
    rows = []
    for group, part in timed.groupby(by, sort=True):
        low, high = part["_tokens"].quantile(share), part["_tokens"].quantile(1 - share)
        short, long = part[part["_tokens"] <= low], part[part["_tokens"] >= high]
        row = {by: group, "n": len(part), "short_tokens": short["_tokens"].median(),
               "long_tokens": long["_tokens"].median(), "short_e2e_s": short["_e2e"].median(),
               "long_e2e_s": long["_e2e"].median()}
        rows.append(row)
    out = pd.DataFrame(rows, columns=[by, "n", "short_tokens", "long_tokens", "short_e2e_s", "long_e2e_s"])
    with np.errstate(divide="ignore", invalid="ignore"):
        out["token_ratio"] = out["long_tokens"] / out["short_tokens"]
        out["time_ratio"] = out["long_e2e_s"] / out["short_e2e_s"]
    return out


def observed_range(rows: Rows, column: str) -> tuple[float, float]:
    """(min, max) of a numeric column over timed rows, NaN when there are none: where fits are not
    extrapolation (found in DuckDB)."""
    source = warehouse.relation(rows)
    value = warehouse.number(source, column)
    timed = timed_sql(source)
    low, high = warehouse.over(source, f"SELECT min({value}), max({value}) FROM {{rows}} WHERE {timed}").fetchall()[0]
    return (math.nan, math.nan) if low is None else (float(low), float(high))
