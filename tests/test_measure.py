"""`stream_request` against the scripted server, whose log holds the true send time of every token.

Client and server run in one process and read the same clock (`time.perf_counter_ns`), so each
measured gap compares with the gap between the server's own sends, and TTFT with the script.
"""
from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp
import pytest

from toolkit.endpoints import Connection
from toolkit.measure import (DroppedStream, Request, ServerTimings, StreamResult, _chunk_content, _sse_events,
                             stream_request, timings_from, usage_from)
from toolkit.testing import Behaviour, Script, ScriptedServer

TIMED = Behaviour(ttft_s=0.05, gaps_s=(0.01, 0.03, 0.005, 0.02), gap_s=0.015, tokens=8)
RULES = {
    "timed-chat": [TIMED] * 3,
    "timed-text": [TIMED] * 3,
    "empty": [Behaviour(tokens=5, ttft_s=0.01, gap_s=0.005, fault="empty_choices", fault_after_tokens=2)],
    "rich": [Behaviour(tokens=4, prompt_tokens=120, cached_tokens=64, reasoning_tokens=9, processing_ms=37.5)],
    "no usage": [Behaviour(tokens=3, fault="no_usage")],
    "cut": [Behaviour(tokens=6, fault="truncated", fault_after_tokens=2)],
    "cut at once": [Behaviour(tokens=6, fault="truncated", fault_after_tokens=0)],
}


@pytest.fixture(scope="module")
def server():
    with ScriptedServer(Script(Behaviour(tokens=2), rules=RULES)) as srv:
        yield srv


def measure(srv: ScriptedServer, key: str, api: str = "chat", repeats: int = 1) -> list[StreamResult]:
    prompt = [{"role": "user", "content": "q"}] if api == "chat" else "q"
    request = Request(api, "scripted", prompt, 16, 0.0)

    async def run() -> list[StreamResult]:
        client = Connection("s", srv.base_url, "k").client(timeout_s=5, max_connections=1)
        async with client:
            await stream_request(client, request, timeout_s=5, request_id="warm-up")  # connect first
            return [await stream_request(client, request, timeout_s=5, request_id=key) for _ in range(repeats)]

    return asyncio.run(run())


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_ttft_and_every_gap_match_the_server_sends(server, api):
    key = "timed-chat" if api == "chat" else "timed-text"
    results = measure(server, key, api, repeats=3)
    attempts = [a for a in server.log if a.key == key]
    scripted = TIMED.offsets_s()
    scripted_gaps = [b - a for a, b in zip(scripted, scripted[1:])]
    runs = []
    for result, attempt in zip(results, attempts):
        assert result.text == "tok1 tok2 tok3 tok4 tok5 tok6 tok7 tok8"
        assert len(result.tbt_s) == 7 and len(attempt.token_ns) == 8  # the role-only chunk is no token
        sent_gaps = [(b - a) / 1e9 for a, b in zip(attempt.token_ns, attempt.token_ns[1:])]
        gap_error = [abs(m - s) for m, s in zip(result.tbt_s, sent_gaps)]
        script_error = [abs(m - s) for m, s in zip(result.tbt_s, scripted_gaps)]
        server_ttft = (attempt.token_ns[0] - attempt.received_ns) / 1e9
        assert result.ttft_s >= server_ttft >= scripted[0]  # the client's clock starts before the server's
        assert result.e2e_s >= result.ttft_s + sum(result.tbt_s)
        runs.append((statistics.median(gap_error), max(gap_error), max(script_error), result.ttft_s - scripted[0]))
    # The quietest of three runs shows the harness itself (other processes only ever add delay).
    gap, worst_gap, worst_vs_script, ttft_late = (min(column) for column in zip(*runs))
    assert gap < 0.001 and worst_gap < 0.005
    assert worst_vs_script < 0.005 and ttft_late < 0.005


def test_the_clock_starts_when_the_request_goes_out_not_while_the_client_builds_it(server, monkeypatch):
    building = aiohttp.ClientRequest.update_body_from_data

    def slow_building(self, *args, **kwargs):  # stands in for the client's own CPU time before the send
        time.sleep(0.05)
        return building(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.ClientRequest, "update_body_from_data", slow_building)
    request = Request("completions", "scripted", "q", 8, 0.0)

    async def timed() -> tuple[StreamResult, float]:
        async with Connection("s", server.base_url, "k").client(timeout_s=5, max_connections=1) as client:
            called = time.perf_counter()
            result = await stream_request(client, request)
            return result, time.perf_counter() - called

    result, call_s = asyncio.run(timed())
    assert result.ttft_s < 0.05 <= call_s and result.e2e_s < 0.05


def test_empty_choices_chunk_is_not_a_token(server):
    (result,) = measure(server, "empty")
    assert result.text == "tok1 tok2 tok3 tok4 tok5" and len(result.tbt_s) == 4
    assert result.usage.completion_tokens == 5 and result.finish_reason == "stop"


def test_usage_with_cached_and_reasoning_tokens_and_processing_time(server):
    (result,) = measure(server, "rich")
    assert result.usage.prompt_tokens == 120 and result.usage.cached_tokens == 64
    assert result.usage.completion_tokens == 4 + 9 and result.usage.reasoning_tokens == 9
    assert result.server_s == pytest.approx(0.0375)
    (plain,) = measure(server, "plain")
    assert plain.server_s is None and plain.usage.cached_tokens is None and plain.usage.reasoning_tokens is None


def test_a_stream_without_usage_has_none(server):
    (result,) = measure(server, "no usage", api="completions")
    assert result.usage is None and result.text == "tok1 tok2 tok3" and len(result.tbt_s) == 2


def test_usage_from_dicts_and_missing_details():
    usage = usage_from({"prompt_tokens": 10, "completion_tokens": 4,
                        "prompt_tokens_details": {"cached_tokens": 6}, "completion_tokens_details": None})
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens) == (10, 4, 6, None)
    assert usage_from(None) is None


def test_chunk_logprobs_are_read_for_both_apis():
    chat = {"choices": [{"index": 0, "delta": {"content": "Pa"}, "finish_reason": None,
                         "logprobs": {"content": [{"token": "Pa", "logprob": -0.5, "top_logprobs": []}]}}]}
    assert _chunk_content(chat, "chat") == ("Pa", None, [-0.5])
    text = {"choices": [{"index": 0, "text": "ris", "finish_reason": "stop",
                         "logprobs": {"tokens": ["ri", "s"], "token_logprobs": [None, -0.75]}}]}
    assert _chunk_content(text, "completions") == ("ris", "stop", [-0.75])  # llama.cpp: null for a first token
    llama_server = {"choices": [{"index": 0, "text": " Lima", "finish_reason": None,
                                 "logprobs": {"content": [{"id": 1, "token": " Lima", "logprob": -0.25}]}}]}
    assert _chunk_content(llama_server, "completions") == (" Lima", None, [-0.25])
    role_only = {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    assert _chunk_content(role_only, "chat") == ("", None, [])
    assert _chunk_content({"choices": [], "usage": {"prompt_tokens": 1}}, "chat") == ("", None, [])


@pytest.mark.parametrize(("key", "api", "chunks"), [("cut", "chat", 2), ("cut at once", "completions", 0)])
def test_a_stream_that_ends_without_finish_reason_or_done_is_dropped_not_an_answer(server, key, api, chunks):
    with pytest.raises(DroppedStream, match=f"without a finish reason or \\[DONE\\] after {chunks} content chunks"):
        measure(server, key, api)
    assert [a.key for a in server.log].count(key) == 1


def test_server_timings_are_read_in_seconds(server):
    timings = timings_from({"cache_n": 12, "prompt_n": 30, "prompt_ms": 150.5, "predicted_n": 4,
                            "predicted_ms": 60.0, "predicted_per_second": 66.7})
    assert timings == ServerTimings(prefill_s=0.1505, decode_s=0.06, cached_tokens=12)
    assert timings_from(None) is None and timings_from([1]) is None
    assert timings_from({"prompt_ms": "fast"}) == ServerTimings(None, None, None)
    (result,) = measure(server, "plain")  # an OpenAI-style stream carries no timings
    assert result.timings is None


class _Reads:
    """A body whose network reads return these byte strings, one read at a time."""

    def __init__(self, reads: list[bytes]) -> None:
        self.reads = reads

    async def iter_any(self):
        for read in self.reads:
            yield read
            await asyncio.sleep(0.002)  # the next read arrives later


def events(reads: list[bytes]) -> list[tuple[int, bytes]]:
    async def run() -> list[tuple[int, bytes]]:
        return [event async for event in _sse_events(_Reads(reads))]

    return asyncio.run(run())


def test_server_sent_events_are_split_across_and_within_reads_and_timed_by_their_first_byte():
    got = events([b'data: {"a": 1}\n\ndata: {"b"', b': 2}\n\n: ping\n\ndata: [DONE]\n\n'])
    assert [data for _, data in got] == [b'{"a": 1}', b'{"b": 2}', b"[DONE]"]
    first_read, second_read = got[0][0], got[2][0]
    assert got[1][0] == first_read < second_read  # the event that began in the first read is timed by it


def test_server_sent_events_with_crlf_or_cr_line_ends_and_multi_line_data():
    got = events([b"data: one\r", b"\ndata:two\r\n\r\n", b"event: x\rdata: three\r\r", b"data: last"])
    assert [data for _, data in got] == [b"one\ntwo", b"three", b"last"]
