"""The scripted server's script: which `Behaviour` (timing, usage, fault) answers each attempt of a request.

Plain frozen dataclasses, so a test states the truth it will check the client against; the server
(`toolkit.testing.scripted_app`) only follows them.
"""
from __future__ import annotations

import random
import re
from bisect import bisect_right
from dataclasses import dataclass, field, replace
from itertools import accumulate
from typing import Mapping, Sequence

from toolkit.errors import ParameterError

STREAM_FAULTS = ("reset", "reset_mid", "stall", "malformed", "no_usage", "empty_choices", "truncated")


@dataclass(frozen=True)
class Behaviour:
    """What the server does for one attempt.

    Timing: token i (from 0) is sent ttft_s + (gap 0 + ... + gap i-1) after the request arrived,
    gap j being gaps_s[j] where given, else gap_s; chat sends a role-only chunk at once. A
    non-streaming answer comes when its last token would have. `text`, split at word starts, replaces
    the "tok1 tok2 ..." answer of `tokens` tokens. Usage: completion_tokens = tokens +
    reasoning_tokens; prompt_tokens, unless given, is the prompt's word count; `usage=False` sends
    none. `openai-processing-ms` is sent only when processing_ms is set.
    Faults: an HTTP status ("429", "500", "502", "503", ...; Retry-After: retry_after_s if set);
    "reset" (TCP RST before any byte); "stall" (stall_s of silence, then the normal answer);
    "no_usage"; and, after fault_after_tokens tokens (or all of them), "reset_mid" (RST),
    "malformed" (an SSE line of broken JSON, then the rest), "empty_choices" (one chunk with
    `choices: []`, then the rest) and "truncated" (the body ends cleanly, with neither a finish
    reason nor [DONE]). Non-streaming: the answer is dropped, truncated, or has no choices.
    """

    ttft_s: float = 0.0
    gap_s: float = 0.0
    gaps_s: tuple[float, ...] = ()
    tokens: int = 8
    text: str | None = None
    usage: bool = True
    prompt_tokens: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    fault: str | None = None
    fault_after_tokens: int = 0
    retry_after_s: float | None = None
    stall_s: float = 30.0
    processing_ms: float | None = None

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in STREAM_FAULTS and not is_status(self.fault):
            raise ParameterError(f'Behaviour field "fault": unknown fault {self.fault!r}; expected an '
                                 f'HTTP status like "429" or one of {", ".join(STREAM_FAULTS)}')

    def pieces(self) -> tuple[str, ...]:
        """The answer's tokens in order; joined they give the full answer text."""
        if self.text is not None:
            return tuple(re.findall(r"\s*\S+", self.text))
        return tuple(f"{' ' if i > 1 else ''}tok{i}" for i in range(1, self.tokens + 1))

    def offsets_s(self) -> tuple[float, ...]:
        """When each token is due, in seconds after the request arrived."""
        due, out = self.ttft_s, []
        for i in range(len(self.pieces())):
            out.append(due)
            due += self.gaps_s[i] if i < len(self.gaps_s) else self.gap_s
        return tuple(out)


def is_status(fault: str) -> bool:
    """Whether a fault names an HTTP error status ("429", "503") rather than a stream fault."""
    return len(fault) == 3 and fault.isdigit() and 400 <= int(fault) <= 599


@dataclass(frozen=True)
class Script:
    """Picks the Behaviour for an attempt: a per-key plan (attempt n gets plan[n-1]), else the
    seeded fault mix, else `default` (also for every attempt past a plan's end)."""

    default: Behaviour = Behaviour()
    rules: Mapping[str, Sequence[Behaviour]] = field(default_factory=dict)
    mix: tuple[tuple[str, float], ...] = ()
    seed: int = 0
    max_faults_per_request: int = 0

    @classmethod
    def fault_mix(cls, probabilities: Mapping[str, float], seed: int,
                  max_faults_per_request: int = 3, default: Behaviour = Behaviour()) -> Script:
        """Each attempt of a key fails with fault f at probability p[f] (seeded by seed and key, so
        independent of arrival order), until max_faults_per_request faults; faults keep default's
        other fields (retry_after_s, fault_after_tokens, stall_s)."""
        for name, p in probabilities.items():
            replace(default, fault=name)  # validates the name
            if not 0.0 <= p <= 1.0:
                raise ParameterError(f'fault_mix: probability of "{name}" is {p}, not in [0, 1]')
        if sum(probabilities.values()) > 1.0:
            raise ParameterError(f"fault_mix: probabilities sum to {sum(probabilities.values())} > 1")
        return cls(default=default, mix=tuple(probabilities.items()), seed=seed,
                   max_faults_per_request=max_faults_per_request)

    def plan(self, key: str) -> tuple[Behaviour, ...]:
        """The behaviours of the first attempts of `key`; later attempts get `default`."""
        if key in self.rules or not self.mix:
            return tuple(self.rules.get(key, ()))
        rng, out = random.Random(f"{self.seed}\0{key}"), []
        names, bounds = [n for n, _ in self.mix], list(accumulate(p for _, p in self.mix))
        for _ in range(self.max_faults_per_request):
            i = bisect_right(bounds, rng.random())
            if i == len(names):
                break
            out.append(replace(self.default, fault=names[i]))
        return tuple(out)

    def behaviour(self, key: str, attempt: int) -> Behaviour:
        if not self.rules and not self.mix:
            return self.default
        plan = self.plan(key)
        return plan[attempt - 1] if attempt <= len(plan) else self.default

