"""A large synthetic requests table with a known ground truth, built column by column in Arrow.

For scale benchmarks and tests of the analyses: a grid of configurations (an API model priced by
tokens, the embedded gemma model priced by machine time; prompt variants, max_tokens,
concurrency) answers the same items of a few datasets, with repeats.  Latency follows
`LATENCY[model]`: TTFT = base + prefill x prompt_tokens + queueing + noise (+ rare stalls) and
e2e = TTFT + decode x (completion_tokens - 1) + noise; correctness is Bernoulli with a
logit that adds the configuration's skill and subtracts the item's difficulty, so configurations
agree on hard items as real ones do.  `tbt_s` holds only the first 4-16 gaps of each answer,
to bound memory at a million rows (ITL statistics stay unbiased; `len(tbt_s)` is not
completion_tokens - 1 here).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from toolkit.errors import ParameterError
from toolkit.schema import ARROW_SCHEMA, from_arrow
from toolkit.warehouse import ROW_GROUP_ROWS, UNIQUE_REQUESTS


@dataclass(frozen=True)
class LatencyTruth:
    """The latency law a synthetic model follows (seconds, and seconds per token)."""

    ttft_base_s: float
    prefill_s_per_token: float
    decode_s_per_token: float
    endpoint: str
    server_reports_time: bool


API_MODEL = "gpt-4o-mini"
LOCAL_MODEL = "gemma-3-270m-q4_k_m"
MODELS = (API_MODEL, LOCAL_MODEL)
LATENCY = {
    API_MODEL: LatencyTruth(0.35, 0.00005, 0.012, "api.openai.com", True),
    # prompt at ~200 tokens/s and generation at ~70 tokens/s, as DESIGN measured on 2 cores
    LOCAL_MODEL: LatencyTruth(0.08, 0.005, 0.014, "127.0.0.1:8080", False),
}
SKILL = {API_MODEL: 1.2, LOCAL_MODEL: -0.6}  # logit of accuracy on an item of average difficulty
# variant -> (prompt tokens before the item, skill bonus); few_shot_5 is long enough for provider caching
VARIANTS = {"zero_shot": (40, 0.0), "few_shot_5": (1100, 0.35), "chat": (90, 0.1),
            "few_shot_1": (260, 0.2), "few_shot_3": (640, 0.3)}
MAX_TOKENS = (64, 256)
CONCURRENCY = (1, 4)
DATASETS = ("capitals", "sentiment", "dates", "arithmetic")
ANSWER_TOKENS = {"capitals": 6.0, "sentiment": 3.0, "dates": 12.0, "arithmetic": 40.0}  # median tokens
MAX_CONFIGS = len(MODELS) * len(MAX_TOKENS) * len(CONCURRENCY) * len(VARIANTS)
REPEATS = 3
STALL_SHARE = 0.02
ERROR_SHARE = 0.01
CACHE_HIT_SHARE = 0.3  # of repeats > 0 in configs with the response cache on (every fourth)
T0_US = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
SEND_INTERVAL_US = 50_000


@dataclass(frozen=True)
class Config:
    config_id: str
    model: str
    prompt_variant: str
    max_tokens: int
    concurrency: int
    response_cache: bool


def configs(n_configs: int = 24) -> list[Config]:
    """The first `n_configs` of the grid, models alternating fastest so any prefix mixes both."""
    if not 1 <= n_configs <= MAX_CONFIGS:
        raise ParameterError(f"n_configs must be in [1, {MAX_CONFIGS}], got {n_configs}")
    variants = list(VARIANTS)
    out = []
    for i in range(n_configs):
        model, max_tokens = MODELS[i % 2], MAX_TOKENS[(i // 2) % 2]
        concurrency, variant = CONCURRENCY[(i // 4) % 2], variants[i // 8]
        short = "api" if model == API_MODEL else "local"
        out.append(Config(f"{short}/{variant}/mt{max_tokens}/c{concurrency}", model, variant, max_tokens,
                          concurrency, i % 4 == 3))
    return out


def synthetic_requests(n_rows: int, *, n_configs: int = 24, n_datasets: int = 4, seed: int = 0) -> pd.DataFrame:
    """A requests table of `n_rows` rows with DESIGN dtypes and the ground truth of this module.

    Row j is configuration j mod n_configs on key j // n_configs, a (dataset, item, repeat) with
    `REPEATS` repeats per item, so every configuration answers the same keys (paired analyses and
    cascades work) and `request_id` is unique.  The send order (`sequence`) is a seeded shuffle.
    """
    return from_arrow(synthetic_table(n_rows, n_configs=n_configs, n_datasets=n_datasets, seed=seed))


def write_synthetic_parquet(path: str | os.PathLike, n_rows: int, *, chunk_rows: int = 1_000_000,
                            seed: int = 0) -> Path:
    """Write `n_rows` synthetic requests to one Parquet file, `chunk_rows` at a time, never all in memory.

    Chunk k is `synthetic_table(chunk_rows, seed=seed + k)` with its request and item ids prefixed by
    `k<k>/` and its sequence and send times moved past the chunks before it, so request ids stay unique
    and the send order runs through the file.
    """
    path = Path(path)
    schema = ARROW_SCHEMA.with_metadata({UNIQUE_REQUESTS: b"true"})  # the ids are unique, as a finished run's are
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for k, start in enumerate(range(0, n_rows, chunk_rows)):
            table = synthetic_table(min(chunk_rows, n_rows - start), seed=seed + k)
            moved = {
                "request_id": pc.binary_join_element_wise(f"k{k}", table["request_id"], "/"),
                "item_id": pc.binary_join_element_wise(f"k{k}", table["item_id"], "/"),
                "sequence": pc.add(table["sequence"], start),
                "started_at": pa.array(T0_US + (pc.add(table["sequence"], start).to_numpy() * SEND_INTERVAL_US),
                                       pa.timestamp("us", tz="UTC")),
            }
            for name, values in moved.items():
                table = table.set_column(table.schema.get_field_index(name), ARROW_SCHEMA.field(name), values)
            writer.write_table(table.replace_schema_metadata(schema.metadata), row_group_size=ROW_GROUP_ROWS)
    return path


def synthetic_table(n_rows: int, *, n_configs: int = 24, n_datasets: int = 4, seed: int = 0) -> pa.Table:
    """`synthetic_requests` as an Arrow table with the schema's types."""
    if n_rows < 1:
        raise ParameterError(f"n_rows must be >= 1, got {n_rows}")
    if not 1 <= n_datasets <= len(DATASETS):
        raise ParameterError(f"n_datasets must be in [1, {len(DATASETS)}], got {n_datasets}")
    rng = np.random.default_rng(seed)
    grid = configs(n_configs)
    per_config = -(-n_rows // n_configs)
    items = max(1, -(-per_config // (REPEATS * n_datasets)))
    row = np.arange(n_rows)
    config, key = row % n_configs, row // n_configs
    dataset, item, repeat = key % n_datasets, (key // n_datasets) % items, key // (n_datasets * items)
    item_global = dataset * items + item  # one index per (dataset, item)

    def per_config_value(values: list) -> np.ndarray:
        return np.asarray(values)[config]

    model_code = per_config_value([MODELS.index(c.model) for c in grid])
    truth = [LATENCY[m] for m in MODELS]
    is_local = model_code == 1
    max_tokens = per_config_value([c.max_tokens for c in grid]).astype(np.int64)
    concurrency = per_config_value([c.concurrency for c in grid]).astype(np.int64)
    variant_tokens = per_config_value([VARIANTS[c.prompt_variant][0] for c in grid])

    # Items: a prompt length, an answer length and a difficulty each, shared by every config.
    item_tokens = rng.integers(20, 220, items * n_datasets)
    difficulty = rng.normal(0.0, 1.2, items * n_datasets)
    answer_median = np.repeat([ANSWER_TOKENS[d] for d in DATASETS[:n_datasets]], items)
    prompt_tokens = (variant_tokens + item_tokens[item_global]).astype(np.int64)
    wanted = np.ceil(answer_median[item_global] * rng.lognormal(0.0, 0.5, n_rows)).astype(np.int64)
    completion = np.clip(wanted, 1, max_tokens)

    skill = per_config_value([SKILL[c.model] + VARIANTS[c.prompt_variant][1] + 0.1 * (c.max_tokens > 64)
                              for c in grid])
    correct = rng.random(n_rows) < 1 / (1 + np.exp(-(skill - difficulty[item_global])))
    cached_hit = (per_config_value([c.response_cache for c in grid]) & (repeat > 0)
                  & (rng.random(n_rows) < CACHE_HIT_SHARE))
    failed = (rng.random(n_rows) < ERROR_SHARE) & ~cached_hit

    def by_model(attribute: str) -> np.ndarray:
        return np.array([getattr(t, attribute) for t in truth])[model_code]

    queue = rng.exponential(0.05, n_rows) * (concurrency - 1)
    stall = np.where(rng.random(n_rows) < STALL_SHARE, rng.uniform(1.0, 5.0, n_rows), 0.0)
    ttft = (by_model("ttft_base_s") + by_model("prefill_s_per_token") * prompt_tokens + queue
            + np.abs(rng.normal(0.0, 0.01, n_rows)) + stall)
    decode = by_model("decode_s_per_token")
    e2e = ttft + decode * (completion - 1) + rng.normal(0.0, 0.002, n_rows) * np.sqrt(completion)
    e2e = np.maximum(e2e, ttft)
    lookup = rng.uniform(0.0005, 0.002, n_rows)
    ttft, e2e = np.where(cached_hit, lookup, ttft), np.where(cached_hit, lookup, e2e)
    network = rng.uniform(0.02, 0.08, n_rows)
    server = np.where(is_local | cached_hit, np.nan, np.maximum(e2e - network, 0.0))

    n_gaps = np.where(cached_hit | failed, 0, np.minimum(completion - 1, rng.integers(4, 17, n_rows)))
    offsets = np.zeros(n_rows + 1, dtype=np.int32)
    np.cumsum(n_gaps, out=offsets[1:])
    gap_values = np.abs(np.repeat(decode, n_gaps) + rng.normal(0.0, 0.002, int(offsets[-1])))

    cacheable = np.where(prompt_tokens >= 1024, 1024 + (prompt_tokens - 1024) // 128 * 128, 0)
    cached_tokens = np.where(~is_local & (rng.random(n_rows) < 0.5), cacheable, 0).astype(np.int64)
    logprob = np.minimum(np.where(correct, rng.normal(-0.25, 0.2, n_rows), rng.normal(-0.9, 0.4, n_rows)), 0.0)
    sequence = rng.permutation(n_rows).astype(np.int64)

    def strings(values: list[str | None], index: np.ndarray) -> pa.Array:
        # Arrow takes from a few distinct strings by index: no Python string per row
        return pa.array(values, pa.string()).take(pa.array(index))

    zeros = np.zeros(n_rows, dtype=np.int64)
    config_ids = strings([c.config_id for c in grid], config)
    item_ids = strings([f"{d}-{i:05d}" for d in DATASETS[:n_datasets] for i in range(items)], item_global)
    answers = strings([f"answer-{k}" for k in range(items * n_datasets)], item_global)
    wrong = strings([f"wrong-{k}" for k in range(7)], rng.integers(0, 7, n_rows))
    error_kind = np.where(failed, rng.integers(0, 3, n_rows), 3)  # 3: no error
    columns: dict[str, pa.Array] = {
        "run_id": strings(["synthetic"], zeros),
        "request_id": pc.binary_join_element_wise(config_ids, item_ids, pc.cast(pa.array(repeat), pa.string()), "/"),
        "config_id": config_ids,
        "model": strings(list(MODELS), model_code),
        "prompt_variant": strings(list(VARIANTS), per_config_value([list(VARIANTS).index(c.prompt_variant)
                                                                     for c in grid])),
        "max_tokens": pa.array(max_tokens),
        "temperature": pa.array(np.zeros(n_rows)),
        "dataset": strings(list(DATASETS[:n_datasets]), dataset),
        "item_id": item_ids,
        "repeat": pa.array(repeat.astype(np.int64)),
        "endpoint": strings([t.endpoint for t in truth], model_code),
        "batch": pa.array(np.zeros(n_rows, dtype=bool)),
        "cache_hit": pa.array(cached_hit),
        "started_at": pa.array(T0_US + sequence * SEND_INTERVAL_US, pa.timestamp("us", tz="UTC")),
        "ttft_s": pa.array(ttft, mask=failed),
        "e2e_s": pa.array(e2e, mask=failed),
        "tbt_s": pa.ListArray.from_arrays(pa.array(offsets), pa.array(gap_values), mask=pa.array(failed)),
        "server_s": pa.array(server, mask=failed | np.isnan(server)),
        "prompt_tokens": pa.array(prompt_tokens, mask=failed),
        "cached_tokens": pa.array(cached_tokens, mask=failed),
        "completion_tokens": pa.array(completion.astype(np.int64), mask=failed),
        "reasoning_tokens": pa.array(zeros, mask=failed),
        "usage_source": strings(["server", None], failed.astype(np.int64)),
        "output_text": pc.if_else(pa.array(failed), pa.nulls(n_rows, pa.string()),
                                  pc.if_else(pa.array(correct), answers, wrong)),
        "expected": answers,
        "score": pa.array(correct.astype(float), mask=failed),
        "correct": pa.array(correct, mask=failed),
        "grader": strings(["exact"], zeros),
        "status": strings(["ok", "error"], failed.astype(np.int64)),
        "error_type": strings(["http_429", "http_500", "timeout", None], error_kind),
        "http_status": pa.array(np.array([429, 500, 0, 0])[error_kind], mask=error_kind >= 2),
        "attempts": pa.array(np.where(failed, 3, 1 + (rng.random(n_rows) < 0.02)).astype(np.int64)),
        "concurrency": pa.array(concurrency),
        "sequence": pa.array(sequence),
        "logprob_mean": pa.array(logprob, mask=failed),
        "error_message": strings(["HTTP 429: rate limited", "HTTP 500: server error", "timed out after 30 s",
                                  None], error_kind),
    }
    # columns a synthetic run has no value for (phases, server timings, open-loop and trace fields) stay null,
    # so machine time falls back to each request's own e2e
    return pa.Table.from_arrays([columns[name] if name in columns else pa.nulls(n_rows, ARROW_SCHEMA.field(name).type)
                                 for name in ARROW_SCHEMA.names], schema=ARROW_SCHEMA)

