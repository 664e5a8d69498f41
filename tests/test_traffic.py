"""Traffic analyses against brute force and closed forms, on the shipped public traces, and over a run's files
(DuckDB reading them where they lie) against the same run loaded into pandas."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from toolkit import open_run, pricing
from toolkit.analysis import traffic
from toolkit.analysis.caching import LeverPrices, cacheable_tokens
from toolkit.analysis.latency_model import main_group_model
from toolkit.errors import ParameterError
from toolkit.importers.traces import import_azure2023, import_mooncake
from toolkit.schema import coerce_requests
from toolkit.store import load_run, save_run

REPO = Path(__file__).resolve().parents[1]
PRICES = LeverPrices(input_usd_per_mtok=2.0, cached_input_usd_per_mtok=0.5, output_usd_per_mtok=8.0,
                     batch_discount=0.5)


def trace(seconds, prompt, output, *, hashes=None, prompt_hash=None, sequence=None) -> pd.DataFrame:
    n = len(seconds)
    return coerce_requests(pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)], "config_id": "t", "model": "m", "dataset": "t", "status": "ok",
        "started_at": pd.to_datetime(np.asarray(seconds, dtype=float), unit="s", utc=True),
        "prompt_tokens": prompt, "completion_tokens": output, "cached_tokens": 0,
        "prefix_hashes": hashes if hashes is not None else [None] * n,
        "prompt_hash": prompt_hash if prompt_hash is not None else [None] * n,
        "sequence": sequence if sequence is not None else np.arange(n)}))


def brute_force_cached(rows: list[tuple[float, int, list[int]]], lifetime_s: float, block: int) -> list[float]:
    """The rule spelled out one request at a time: the longest prefix whose last block hash was used
    within the lifetime, every use refreshing it."""
    last_used: dict[int, float] = {}
    out = []
    for t, prompt, hashes in rows:
        blocks = 0
        for position, h in enumerate(hashes):
            if h in last_used and t - last_used[h] <= lifetime_s:
                blocks = position + 1
        out.append(float(cacheable_tokens(min(blocks * block, prompt))))
        for h in hashes:
            last_used[h] = t
    return out


@pytest.mark.parametrize("from_files", [False, True])
def test_prompt_cache_tokens_match_a_brute_force_count(tmp_path: Path, from_files: bool):
    rng = np.random.default_rng(3)
    rows = []
    for i in range(400):
        t = float(np.floor(rng.uniform(0, 3600) / 3) * 3)  # binned like Mooncake: many equal times
        family = int(rng.integers(0, 6))
        blocks = int(rng.integers(1, 9))
        shared = int(rng.integers(0, blocks + 1))
        hashes = [family * 1000 + k for k in range(shared)] + [10**6 + i * 100 + k for k in range(blocks - shared)]
        rows.append((t, blocks * 512 - int(rng.integers(0, 300)), hashes))
    rows.sort(key=lambda r: r[0])
    frame = trace([r[0] for r in rows], [r[1] for r in rows], [10] * len(rows), hashes=[r[2] for r in rows])
    shuffled = frame.sample(frac=1.0, random_state=1)  # row order must not matter: send order does
    source = open_run(save_run(tmp_path, shuffled, {"run_id": "t"})) if from_files else shuffled
    for lifetime in (0.0, 60.0, 300.0, 1e9):
        got = traffic.prompt_cache_tokens(source, lifetime_s=lifetime, block_tokens=512)
        expected = brute_force_cached(rows, lifetime, 512)
        assert got.tolist() == [expected[i] for i in shuffled["sequence"].astype(int)]
    assert traffic.prompt_cache_tokens(frame, lifetime_s=1e9).sum() > traffic.prompt_cache_tokens(
        frame, lifetime_s=60).sum() > 0


def test_an_arrow_backed_column_in_chunks_gives_the_same_count():
    frame = trace(np.arange(6.0), [2048] * 6, [1] * 6, hashes=[[1, 2, 3, 4], [1, 2, 9, 10], None, [1, 2, 3, 4], [7], [1]])
    chunked = pa.chunked_array([pa.array(frame["prefix_hashes"].iloc[:3].tolist(), pa.list_(pa.int64())),
                                pa.array(frame["prefix_hashes"].iloc[3:].tolist(), pa.list_(pa.int64()))])
    arrow = frame.assign(prefix_hashes=pd.arrays.ArrowExtensionArray(chunked))
    assert traffic.prompt_cache_tokens(arrow).tolist() == traffic.prompt_cache_tokens(frame).tolist() == [
        0.0, 1024.0, 0.0, 2048.0, 0.0, 0.0]


def test_short_prompts_are_never_cached_and_a_partial_last_block_counts_its_real_length():
    frame = trace([0, 1, 2, 3], [900, 900, 1500, 1500], [1, 1, 1, 1], hashes=[[1, 2], [1, 2], [5, 6, 7], [5, 6, 7]])
    # 900 tokens: below the 1,024 minimum; 1,500: 3 blocks match but only 1,500 tokens exist -> 1,408 billed
    assert traffic.prompt_cache_tokens(frame).tolist() == [0.0, 0.0, 0.0, 1408.0]


def test_response_cache_hits_and_savings_follow_their_closed_form():
    hashes = ["a", "b", "a", "c", "a", "b", None]
    frame = trace([0, 10, 20, 30, 500, 505, 600], [100] * 7, [50] * 7, prompt_hash=hashes)
    assert traffic.response_cache_hits(frame).tolist() == [False, False, True, False, True, True, False]
    # with a 60 s TTL the "a" at 500 s comes 480 s after the last "a": a miss; "b" at 505 s is 495 s late
    assert traffic.response_cache_hits(frame, ttl_s=60).tolist() == [False, False, True, False, False, False, False]
    shuffled = frame.sample(frac=1.0, random_state=0)  # rows out of send order: the answer follows the rows
    expected = dict(zip(frame["request_id"], traffic.response_cache_hits(frame, ttl_s=60)))
    assert traffic.response_cache_hits(shuffled, ttl_s=60).tolist() == [expected[r] for r in shuffled["request_id"]]
    levers = traffic.lever_savings(frame, PRICES, traffic.Levers(output_cap_tokens=None, prompt_trim_share=0,
                                                                 deferrable_share=0)).set_index("lever")
    per_request = (100 * 2.0 + 50 * 8.0) / 1e6
    assert levers.loc["response cache", "usd_saved"] == pytest.approx(3 * per_request)
    assert levers.loc["response cache", "saved_share"] == pytest.approx(3 / 7)
    assert not levers.loc["prompt caching", "applies"] and "prefix hashes" in levers.loc["prompt caching", "why_not"]


def test_batch_output_cap_and_prompt_trim_savings_follow_their_closed_forms():
    frame = trace([0, 1, 2, 3], [1000, 2000, 3000, 4000], [100, 300, 500, 50])
    levers = traffic.lever_savings(frame, PRICES, traffic.Levers(deferrable_share=0.3, output_cap_tokens=200,
                                                                 prompt_trim_share=0.25),
                                   requests_per_month=4000).set_index("lever")
    total = (10_000 * 2.0 + 950 * 8.0) / 1e6
    assert levers.loc["batch", "usd_before"] == pytest.approx(total)
    assert levers.loc["batch", "usd_saved"] == pytest.approx(total * 0.3 * 0.5)
    assert levers.loc["batch", "usd_saved_per_month"] == pytest.approx(total * 0.3 * 0.5 * 1000)
    assert levers.loc["output cap", "tokens_saved"] == 100 + 300 and levers.loc["output cap", "requests_touched"] == 2
    assert levers.loc["output cap", "usd_saved"] == pytest.approx(400 * 8.0 / 1e6)
    assert levers.loc["shorter prompts", "usd_saved"] == pytest.approx(2500 * 2.0 / 1e6)
    with pytest.raises(ParameterError, match="deferrable_share"):
        traffic.Levers(deferrable_share=1.5)


def test_arrivals_rate_and_burstiness():
    steady = trace(np.arange(0, 600, 1.0), [10] * 600, [1] * 600)
    row = traffic.arrival_summary(steady, bin_s=30).iloc[0]
    assert row["mean_rate_per_s"] == pytest.approx(600 / 599) and row["peak_to_mean"] == pytest.approx(599 / 600)
    assert row["interarrival_cv"] == pytest.approx(0.0) and row["dispersion_index"] == pytest.approx(0.0)
    bursty = trace(np.r_[np.zeros(300), np.arange(300, 600, 1.0)], [10] * 600, [1] * 600)
    burst = traffic.arrival_summary(bursty, bin_s=30).iloc[0]
    assert burst["peak_rate_per_s"] == pytest.approx(300 / 30) and burst["interarrival_cv"] > 1
    bins = traffic.arrivals(bursty, bin_s=30)
    assert bins["requests"].sum() == 600 and bins["requests"].tolist()[:11] == [300] + [0] * 9 + [30]
    # shorter than ten bins: the bins narrow to a tenth of the span
    assert traffic.arrival_summary(steady, bin_s=3600).iloc[0]["bin_s"] == pytest.approx(59.9)


def test_levers_on_the_public_traces(tmp_path: Path):
    azure, _ = import_azure2023(REPO / "data/public/traces/azure2023")
    mooncake, manifest = import_mooncake(REPO / "data/public/traces/mooncake")
    assert len(azure) == 8819 and len(mooncake) == 12031
    row = traffic.arrival_summary(azure).iloc[0]
    assert 50 * 60 < row["span_s"] < 60 * 60 and row["peak_to_mean"] > 1
    cached = traffic.prompt_cache_tokens(mooncake, block_tokens=manifest["prefix_block_tokens"])
    share = cached.sum() / mooncake["prompt_tokens"].sum()
    assert 0 < share < 1  # the conversation trace reuses prefixes, but not all of them
    levers = traffic.lever_savings(mooncake, PRICES).set_index("lever")
    assert levers.loc["prompt caching", "usd_saved"] == pytest.approx(cached.sum() * 1.5 / 1e6)


def test_a_measured_run_gives_the_latency_model_the_levers_use():
    sample = load_run(REPO / "data/runs/sample")
    model, label = main_group_model(sample)
    assert "c8" in label and model.rate_s.size > 50
    frame = trace(np.arange(100.0), np.full(100, 200), np.r_[np.full(50, 4), np.full(50, 40)])
    levers = traffic.lever_savings(frame, PRICES, traffic.Levers(output_cap_tokens=8), latency=model).set_index("lever")
    before, after = levers.loc["output cap", ["p50_e2e_before_s", "p50_e2e_after_s"]]
    assert after < before and math.isfinite(after)


def test_a_cache_lifetime_by_hand(tmp_path: Path):
    # (time, prompt tokens, block hashes) in send order, 512-token blocks, entries kept 60 s after their last use
    rows = [(0, 1536, [1, 2, 3]),
            (30, 1536, [1, 2, 9]),  # blocks 1, 2 used 30 s ago: 1,024 tokens
            (100, 2048, [1, 2, 3, 4]),  # 1, 2 last used 70 s ago, 3 100 s ago: expired
            (150, 2400, [1, 2, 3, 4, 5]),  # 1-4 used 50 s ago: 2,048 tokens
            (150, 2500, [1, 2, 3, 4, 5]),  # the same time, sent next: 2,500 tokens, 2,432 of them billable
            (200, 1024, [7, 8]), (250, 1024, [7, 8]),
            (300, 1024, [7, 8]),  # 100 s after the first use, but 50 s after the last: still cached
            (320, 900, [7]),  # finds its block, but 512 tokens are below the provider's minimum
            (400, 4096, None)]
    expected = [0, 1024, 0, 2048, 2432, 0, 1024, 1024, 0, 0]
    frame = trace([t for t, _, _ in rows], [p for _, p, _ in rows], [10] * len(rows), hashes=[h for _, _, h in rows])
    frame = pd.concat([frame, trace([np.nan], [1024], [10], hashes=[[7, 8]]).assign(request_id="late")],
                      ignore_index=True)  # no send time: never a hit, and sorted after every known time
    expected.append(0)
    shuffled = frame.sample(frac=1.0, random_state=2)
    wanted = [expected[i] for i in shuffled.index]
    from_files = open_run(save_run(tmp_path, shuffled, {"run_id": "t"}))
    for rows_of in (shuffled, from_files):
        assert traffic.prompt_cache_tokens(rows_of, lifetime_s=60, block_tokens=512).tolist() == wanted
        levers = traffic.lever_savings(rows_of, PRICES, traffic.Levers(cache_lifetime_s=60)).set_index("lever")
        assert levers.loc["prompt caching", "tokens_saved"] == sum(expected)
        assert levers.loc["prompt caching", "requests_touched"] == sum(t > 0 for t in expected)


def traffic_table(n: int, seed: int = 0) -> pd.DataFrame:
    """Conversations resending their history, exact repeats, binned send times, and some of everything unknown."""
    rng = np.random.default_rng(seed)
    seconds = np.floor(np.sort(rng.uniform(0, 7200, n)))
    prompt = np.clip(rng.lognormal(7.0, 1.0, n), 16, 20_000).astype(int)
    conversation = rng.integers(0, n // 6, n)
    hashes = [[int(c) * 1000 + k for k in range(b // 2)] + [10**9 + i * 100 + k for k in range(b - b // 2)]
              for i, (c, b) in enumerate(zip(conversation, -(-prompt // 512)))]
    repeats = np.where(rng.random(n) < 0.2, rng.integers(0, n // 20, n), np.arange(n) + n)
    frame = trace(seconds, prompt, np.clip(rng.lognormal(4.5, 1.0, n), 1, 4000).astype(int), hashes=hashes,
                  prompt_hash=[f"p{k}" for k in repeats], sequence=np.arange(n))
    unknown = rng.random((5, n)) < [[0.01], [0.02], [0.02], [0.05], [0.05]]
    frame.loc[unknown[0], "started_at"] = pd.NaT
    frame.loc[unknown[1], "prompt_tokens"] = pd.NA
    frame.loc[unknown[2], "sequence"] = pd.NA
    frame.loc[unknown[3], "prefix_hashes"] = None
    frame.loc[unknown[4], "prompt_hash"] = None
    frame["cached_tokens"] = np.where(rng.random(n) < 0.2, 1024, 0)
    frame["model"] = np.where(rng.random(n) < 0.3, "claude-3-5-haiku", "gpt-4o-mini")
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_every_analysis_over_a_runs_files_equals_it_on_the_loaded_frame(tmp_path: Path):
    save_run(tmp_path, traffic_table(20_000), {"run_id": "t"})
    frame, from_files = load_run(tmp_path), open_run(tmp_path)
    model, _ = main_group_model(load_run(REPO / "data/runs/sample"))
    for analysis in (lambda rows: traffic.arrivals(rows, bin_s=30), traffic.arrival_summary, traffic.token_summary,
                     lambda rows: traffic.lever_savings(rows, PRICES, requests_per_month=1e6, latency=model),
                     lambda rows: traffic.lever_savings(rows, PRICES, traffic.Levers(
                         cache_lifetime_s=30, response_cache_ttl_s=600, output_cap_tokens=None), latency=model)):
        pd.testing.assert_frame_equal(analysis(from_files), analysis(frame), rtol=1e-9)
    for per_row in (traffic.prompt_cache_tokens, traffic.response_cache_hits,
                    lambda rows: traffic.response_cache_hits(rows, ttl_s=60)):
        np.testing.assert_array_equal(per_row(from_files), per_row(frame))
    assert traffic.pricing_model(from_files, pricing.price_table_for(from_files)) == ("gpt-4o-mini", "named")


def test_token_percentiles_are_numpys_on_the_whole_frame():
    frame = traffic_table(5000, seed=1)
    table = traffic.token_summary(frame).set_index("tokens")
    for column in traffic.TOKEN_COLUMNS:
        values = frame[column].dropna().to_numpy(dtype=float)
        assert table.loc[column, "n"] == len(values) and table.loc[column, "total"] == values.sum()
        np.testing.assert_allclose(table.loc[column, ["p50", "p90", "p99"]].to_numpy(dtype=float),
                                   np.quantile(values, [0.5, 0.9, 0.99]), rtol=1e-12)


def test_the_figures_sample_is_bounded_seeded_and_drawn_from_the_rows(tmp_path: Path):
    save_run(tmp_path, traffic_table(3000), {"run_id": "t"})
    from_files = open_run(tmp_path)
    sample = traffic.token_sample(from_files, limit=500)
    assert list(sample.columns) == ["prompt_tokens", "completion_tokens"] and len(sample) == 500
    pd.testing.assert_frame_equal(sample, traffic.token_sample(from_files, limit=500))
    pairs = set(zip(load_run(tmp_path)["prompt_tokens"], load_run(tmp_path)["completion_tokens"]))
    assert set(zip(sample["prompt_tokens"], sample["completion_tokens"])) <= pairs
    assert len(traffic.token_sample(from_files, limit=10_000)) == 3000


def test_bad_input_names_the_field():
    frame = trace([0, 1], [10, 20], [1, 2])
    with pytest.raises(ParameterError, match="token_summary: the requests are missing column.* cached_tokens"):
        traffic.token_summary(frame.drop(columns="cached_tokens"))
    with pytest.raises(ParameterError, match="lever_savings: column prompt_tokens must hold numbers"):
        traffic.lever_savings(frame.assign(prompt_tokens=["ten", "twenty"]), PRICES)
    with pytest.raises(ParameterError, match="arrivals: column started_at must hold times"):
        traffic.arrivals(frame.assign(started_at="yesterday"))
    with pytest.raises(ParameterError, match="cache_lifetime_s"):
        traffic.Levers(cache_lifetime_s=-1)
