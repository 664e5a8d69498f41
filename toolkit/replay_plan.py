"""What `frontier replay` sends and when: a trace's requests in send order, their arrival times scaled
by a speed, their sizes scaled by a token factor and fitted to the endpoint's context, and the
synthetic prompt text of each size.

A trace is a run directory (any requests table with `started_at`, `prompt_tokens` and
`completion_tokens`) or a file (or folder) that a trace importer reads: the Azure LLM inference trace
2023 or a Mooncake trace.  Prompts are common English words drawn from a stream seeded per request,
so two requests never share a prefix by accident and a server's prefix cache cannot turn the replay
into cache hits; the words per token are measured once with the endpoint's tokenizer where it has one.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from toolkit.endpoints import TokenCounter
from toolkit.errors import DataFileError, ParameterError
from toolkit.importers.traces import import_azure2023, import_mooncake
from toolkit.store import JOURNAL, REQUESTS, has_records, load_run

AZURE_PATTERN = "AzureLLMInferenceTrace_*.csv"
MOONCAKE_PATTERN = "*_trace.jsonl"
ACCEPTED = (f"a run directory (with {REQUESTS} or {JOURNAL}), an Azure LLM inference trace 2023 CSV "
            f"({AZURE_PATTERN}) or a Mooncake trace ({MOONCAKE_PATTERN}), or a folder holding one of them")
NEEDED = ("started_at", "prompt_tokens", "completion_tokens")
# The 100 most common English words: each is one token in the usual BPE vocabularies (GPT, Llama,
# Gemma), which keeps the estimate honest where the endpoint has no tokenizer to count with.
WORDS = tuple("""the of and to in is you that it he was for on are as with his they at be this have from or one
had by word but not what all were we when your can said there use an each which she do how their if will up other
about out many then them these so some her would make like him into time has look two more write go see number no
way could people my than first water been call who oil its now find long down day did get come made may part""".split())
ESTIMATED_TOKENS_PER_WORD = 1.0
CALIBRATION_WORDS = 2000
CONTEXT_MARGIN = 0.05  # of the context kept free: a prompt built from calibrated words can run a little long


@dataclass(frozen=True)
class ReplaySettings:
    """How a trace is replayed; every bound is checked here, so a bad one fails before anything is sent.

    `speed` divides the trace's arrival offsets; `token_scale` multiplies its input and output lengths
    (at least 1 token each); `max_requests` and `duration_s` (seconds of sending, after the speed)
    bound each phase; `steady` adds a phase of the same requests evenly spaced at the same mean rate.
    """

    speed: float = 1.0
    token_scale: float = 1.0
    max_requests: int | None = None
    duration_s: float | None = None
    steady: bool = False
    max_in_flight: int = 64
    max_prompt_tokens: int | None = None
    timeout_s: float = 300.0
    seed: int = 0
    ignore_eos: bool = True

    def __post_init__(self) -> None:
        for name in ("speed", "token_scale", "max_requests", "duration_s", "max_in_flight", "max_prompt_tokens",
                     "timeout_s"):
            value = getattr(self, name)
            if value is None and name in ("max_requests", "duration_s", "max_prompt_tokens"):
                continue
            integer = name in ("max_requests", "max_in_flight", "max_prompt_tokens")
            number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value <= 0:
                raise ParameterError(f"replay: {name} must be {'an integer' if integer else 'a number'} > 0, "
                                     f"got {value!r}")


@dataclass(frozen=True)
class Trace:
    """A trace's requests in send order (`started_at`, then `sequence`), with what replay needs of them."""

    path: Path
    kind: str  # "run_dir", "azure2023" or "mooncake"
    table: pd.DataFrame  # item_id, dataset, started_at, prompt_tokens, completion_tokens


def load_trace(path: str | os.PathLike) -> Trace:
    """The trace at `path`; an error names what is accepted, or the field a run dir lacks."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(path, f"no such file or folder; replay reads {ACCEPTED}")
    if path.is_dir() and has_records(path):
        kind, table = "run_dir", load_run(path)
    else:
        kind = _trace_kind(path)
        table, _ = (import_azure2023 if kind == "azure2023" else import_mooncake)(path)
    for field in NEEDED:
        missing = table[field].isna().to_numpy()
        if missing.any():
            first = table["request_id"].iloc[int(missing.argmax())]
            raise DataFileError(path, f"replay needs it in every row; {int(missing.sum())} of {len(table)} rows "
                                      f"have none (the first: request {first})", field=field)
    for field in NEEDED[1:]:
        negative = (table[field] < 0).to_numpy(dtype=bool)
        if negative.any():
            first = table["request_id"].iloc[int(negative.argmax())]
            raise DataFileError(path, f"is negative in request {first}", field=field)
    table = table.assign(sequence=table["sequence"].fillna(0)).sort_values(
        ["started_at", "sequence"], kind="stable").reset_index(drop=True)
    dataset = table["dataset"].astype(object).fillna(path.name).astype(str)
    return Trace(path, kind, pd.DataFrame({
        "item_id": table["request_id"].astype(str), "dataset": dataset, "started_at": table["started_at"],
        "prompt_tokens": table["prompt_tokens"].astype(int),
        "completion_tokens": table["completion_tokens"].astype(int)}))


def _trace_kind(path: Path) -> str:
    if path.is_dir():
        for kind, pattern in (("azure2023", AZURE_PATTERN), ("mooncake", MOONCAKE_PATTERN)):
            if any(path.glob(pattern)):
                return kind
    elif path.suffix == ".csv":
        return "azure2023"  # the importer names a missing column of another CSV
    elif path.suffix == ".jsonl":
        return "mooncake"
    raise DataFileError(path, f"not a trace replay can read; it reads {ACCEPTED}")


@dataclass(frozen=True)
class Planned:
    """One request to replay: its trace row, when it falls due (seconds after the first) and its sizes."""

    item_id: str
    dataset: str
    offset_s: float
    prompt_tokens: int
    max_tokens: int


@dataclass(frozen=True)
class Plan:
    requests: list[Planned]
    rate_per_s: float | None  # the mean arrival rate of the scaled trace; None for fewer than two requests
    capped: int  # requests whose sizes were cut to fit the context

    def steady_offsets(self) -> list[float]:
        """The same number of requests evenly spaced at the same mean rate, over the same span."""
        if self.rate_per_s is None:
            return [0.0] * len(self.requests)
        return [index / self.rate_per_s for index in range(len(self.requests))]


def plan(trace: Trace, settings: ReplaySettings, *, context_tokens: int | None) -> Plan:
    """The requests to send: arrivals from the first divided by `speed`, within `duration_s` and
    `max_requests`; sizes times `token_scale` (at least 1), cut to `context_tokens` minus a margin
    (the output keeps at most half) and to `max_prompt_tokens`."""
    table = trace.table
    offsets = (table["started_at"] - table["started_at"].iloc[0]).dt.total_seconds() / settings.speed
    if settings.duration_s is not None:
        table, offsets = table[offsets < settings.duration_s], offsets[offsets < settings.duration_s]
    if settings.max_requests is not None:
        table, offsets = table.head(settings.max_requests), offsets.head(settings.max_requests)
    budget = None if context_tokens is None else math.floor(context_tokens * (1 - CONTEXT_MARGIN))
    requests, capped = [], 0
    for row, offset in zip(table.itertuples(index=False), offsets):
        prompt = max(1, round(row.prompt_tokens * settings.token_scale))
        output = max(1, round(row.completion_tokens * settings.token_scale))
        fitted_prompt, fitted_output = prompt, output
        if budget is not None and prompt + output > budget:
            fitted_output = max(1, min(output, budget // 2))
            fitted_prompt = max(1, min(prompt, budget - fitted_output))
        if settings.max_prompt_tokens is not None:
            fitted_prompt = min(fitted_prompt, settings.max_prompt_tokens)
        capped += (fitted_prompt, fitted_output) != (prompt, output)
        requests.append(Planned(row.item_id, row.dataset, float(offset), fitted_prompt, fitted_output))
    span = requests[-1].offset_s if requests else 0.0
    rate = (len(requests) - 1) / span if len(requests) > 1 and span > 0 else None
    return Plan(requests, rate, capped)


@dataclass(frozen=True)
class PromptText:
    """Synthetic prompts of a given token count: words per token as measured (or estimated), plus the
    tokens the server adds itself (BOS)."""

    tokens_per_word: float
    special_tokens: int
    counted_by: str  # "tokenizer" (the endpoint's /tokenize) or "estimate"
    seed: int

    def words(self, tokens: int) -> int:
        return max(1, round((tokens - self.special_tokens) / self.tokens_per_word))

    def text(self, key: str, tokens: int) -> str:
        """`tokens` tokens' worth of words, drawn from a stream seeded by `key`."""
        return " ".join(random.Random(f"{self.seed}\x1f{key}").choices(WORDS, k=self.words(tokens)))


async def calibrate(counter: TokenCounter | None, seed: int) -> PromptText:
    """Tokens per word of the prompt stream, counted once on a sample with the endpoint's tokenizer;
    without one, one token per common word, an estimate."""
    if counter is None:
        return PromptText(ESTIMATED_TOKENS_PER_WORD, 0, "estimate", seed)
    sample = " ".join(random.Random(f"{seed}\x1fcalibration").choices(WORDS, k=CALIBRATION_WORDS))
    plain = await counter.count(sample, with_bos=False)
    special = await counter.count(sample, with_bos=True) - plain
    return PromptText(plain / CALIBRATION_WORDS, special, "tokenizer", seed)
