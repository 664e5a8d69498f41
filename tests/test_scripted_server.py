"""The scripted server does what its script says, as seen by the real openai client and raw HTTP."""
from __future__ import annotations

import json
import statistics
import time
from collections import Counter

import httpx2
import openai
import pytest

from toolkit.errors import EndpointError, ParameterError
from toolkit.testing import Behaviour, Script, ScriptedProcess, ScriptedServer

KEY = "sk-test"


def b(**fields) -> Behaviour:
    return Behaviour(**{"tokens": 4, **fields})


RULES = {
    "retry me": [b(fault="429", retry_after_s=2), b(fault="500")],
    "fast retry": [b(fault="429", retry_after_s=0.2)],
    "gateway": [b(fault="502"), b(fault="503")],
    "reset": [b(fault="reset")] * 2,
    "reset mid": [b(fault="reset_mid", fault_after_tokens=3)],
    "stall": [b(fault="stall", stall_s=5)],
    "malformed": [b(fault="malformed", fault_after_tokens=2)] * 2,
    "no usage": [b(fault="no_usage")],
    "empty": [b(fault="empty_choices", fault_after_tokens=1)],
    "whole": [b(fault="reset_mid"), b(fault="malformed"), b(fault="empty_choices"),
              b(fault="stall", stall_s=0.1)],
    "rich": [b(tokens=5, cached_tokens=3, reasoning_tokens=7, processing_ms=42)],
    "answer": [b(text="Paris is the capital.")] * 2,  # asked twice below
    "timed": [b(ttft_s=0.05, gaps_s=(0.01, 0.03, 0.005, 0.02), gap_s=0.015, tokens=8)] * 3,
}


@pytest.fixture(scope="module")
def server():
    with ScriptedServer(Script(Behaviour(tokens=4), rules=RULES), api_key=KEY) as srv:
        yield srv


def client(srv: ScriptedServer, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=kwargs.pop("max_retries", 0),
                         **kwargs)


def chat_stream(c: openai.OpenAI, prompt: str, **kwargs):
    return c.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}],
                                     stream=True, **kwargs)


def attempts(srv: ScriptedServer, key: str) -> list:
    return [a for a in srv.log if a.key == key]


def test_chat_stream_sends_role_chunk_then_one_token_per_chunk_then_usage(server):
    chunks = list(chat_stream(client(server), "one two three", stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].choices[0].delta.content == ""
    contents = [ch.choices[0].delta.content for ch in chunks[1:] if ch.choices]
    assert contents == ["tok1", " tok2", " tok3", " tok4", None]  # None: the finish chunk
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 3
    assert chunks[-1].usage.completion_tokens == 4 and chunks[-1].usage.total_tokens == 7


def test_usage_details_processing_header_and_text_split(server):
    raw = client(server).chat.completions.with_raw_response.create(
        model="m", messages=[{"role": "user", "content": "rich"}], stream=True,
        stream_options={"include_usage": True})
    assert raw.headers["openai-processing-ms"] == "42"
    usage = [ch for ch in raw.parse()][-1].usage
    assert usage.completion_tokens == 5 + 7 and usage.prompt_tokens_details.cached_tokens == 3
    assert usage.completion_tokens_details.reasoning_tokens == 7
    stream = client(server).completions.create(model="m", prompt="answer", stream=True)
    assert [ch.choices[0].text for ch in stream] == ["Paris", " is", " the", " capital.", ""]


def test_non_streaming_responses_carry_the_whole_answer_and_usage(server):
    chat = client(server).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert chat.choices[0].message.content == "tok1 tok2 tok3 tok4" and chat.usage.completion_tokens == 4
    text = client(server).completions.create(model="m", prompt="answer")
    assert text.choices[0].text == "Paris is the capital." and text.usage.prompt_tokens == 1
    models = client(server).models.list()
    assert [m.id for m in models.data] == ["scripted"]


def test_usage_only_when_asked_and_not_under_no_usage_fault(server):
    assert all(ch.usage is None for ch in chat_stream(client(server), "plain"))
    chunks = list(chat_stream(client(server), "no usage", stream_options={"include_usage": True}))
    assert all(ch.usage is None for ch in chunks) and len(chunks) == 1 + 4 + 1  # role, tokens, stop


def test_attempts_follow_the_per_key_plan(server):
    c = client(server)
    with pytest.raises(openai.RateLimitError) as err:
        chat_stream(c, "retry me")
    assert err.value.response.headers["retry-after"] == "2"
    with pytest.raises(openai.InternalServerError) as err:
        chat_stream(c, "retry me")
    assert err.value.status_code == 500
    assert len([ch for ch in chat_stream(c, "retry me") if ch.choices and ch.choices[0].delta.content]) == 4
    assert [(a.attempt, a.behaviour.fault) for a in attempts(server, "retry me")] == [
        (1, "429"), (2, "500"), (3, None)]


def test_gateway_errors_seen_by_raw_http(server):
    url, auth = server.base_url + "/completions", {"Authorization": f"Bearer {KEY}"}
    codes = [httpx2.post(url, json={"prompt": "gateway"}, headers=auth).status_code for _ in range(3)]
    assert codes == [502, 503, 200]


def test_openai_client_honours_retry_after(server):
    c = client(server, max_retries=2)
    assert c.chat.completions.create(model="m", messages=[{"role": "user", "content": "fast retry"}])
    first, second = attempts(server, "fast retry")
    assert 0.2 <= (second.received_ns - first.received_ns) / 1e9 < 0.5


def test_request_id_header_overrides_prompt_as_key(server):
    c = client(server)
    for prompt in ("a", "b"):
        chat_stream(c, prompt, extra_headers={"X-Request-Id": "req-7"}).close()
    assert [a.attempt for a in attempts(server, "req-7")] == [1, 2]


def test_reset_before_first_byte_raises_connection_error(server):
    with pytest.raises(openai.APIConnectionError):
        chat_stream(client(server), "reset")
    with pytest.raises(httpx2.TransportError):
        httpx2.post(server.base_url + "/completions", json={"prompt": "reset"},
                    headers={"Authorization": f"Bearer {KEY}"})


def test_reset_mid_stream_delivers_k_tokens_then_raises(server):
    got = []
    with pytest.raises(openai.APIConnectionError):
        for ch in chat_stream(client(server), "reset mid"):
            got += [ch.choices[0].delta.content] if ch.choices and ch.choices[0].delta.content else []
    assert got == ["tok1", " tok2", " tok3"]


def test_stall_longer_than_client_timeout_times_out(server):
    started = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        chat_stream(client(server, timeout=0.3), "stall")
    assert time.perf_counter() - started < 2


def test_malformed_line_breaks_the_openai_parser_and_shows_in_raw_sse(server):
    with pytest.raises(json.JSONDecodeError):
        list(chat_stream(client(server), "malformed"))
    body = httpx2.post(server.base_url + "/completions", json={"prompt": "malformed", "stream": True},
                       headers={"Authorization": f"Bearer {KEY}"}).text
    lines = [line for line in body.split("\n\n") if line]
    assert lines[2] == 'data: {"id": "broken", "choices": [' and lines[-1] == "data: [DONE]"


def test_empty_choices_chunk_is_sent_after_k_tokens(server):
    chunks = list(chat_stream(client(server), "empty"))
    assert [len(ch.choices) for ch in chunks] == [1, 1, 0, 1, 1, 1, 1]  # role, tok1, empty, ...


def test_non_streaming_faults_drop_truncate_or_empty_the_answer(server):
    with pytest.raises(openai.APIConnectionError):
        client(server).completions.create(model="m", prompt="whole")
    raw = httpx2.post(server.base_url + "/completions", json={"prompt": "whole"},
                      headers={"Authorization": f"Bearer {KEY}"})
    assert raw.status_code == 200 and raw.text == '{"broken": '
    assert client(server).completions.create(model="m", prompt="whole").choices == []
    started = time.perf_counter()  # a stall shorter than the client's timeout only delays the answer
    assert client(server).completions.create(model="m", prompt="whole").choices[0].text.startswith("tok1")
    assert time.perf_counter() - started >= 0.1


def test_busy_port_raises_endpoint_error(server):
    with pytest.raises(EndpointError, match=f"cannot listen on 127.0.0.1:{server.port}"):
        ScriptedServer(port=server.port).start()


def test_wrong_or_missing_key_gets_401(server):
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.base_url, api_key="wrong", max_retries=0).models.list()
    assert httpx2.post(server.base_url + "/completions", json={"prompt": "x"}).status_code == 401


def timed_stream(http: httpx2.Client, srv: ScriptedServer) -> tuple[list[int], list[int]]:
    """Client send time and arrival times of the content chunks of one "timed" stream."""
    sent = time.perf_counter_ns()
    with http.stream("POST", srv.base_url + "/completions", headers={"Authorization": f"Bearer {KEY}"},
                     json={"prompt": "timed", "stream": True}) as r:
        return sent, [time.perf_counter_ns() for line in r.iter_lines()
                      if '"text":"' in line and '"text":""' not in line]


def test_measured_gaps_match_the_script_within_a_few_ms(server):
    expected = [0.05, 0.06, 0.09, 0.095, 0.115, 0.13, 0.145, 0.16]
    assert RULES["timed"][0].offsets_s() == pytest.approx(expected)
    with httpx2.Client() as http:
        http.get(server.base_url + "/models", headers={"Authorization": f"Bearer {KEY}"})  # warm up
        runs = [timed_stream(http, server) for _ in range(3)]
    stats = []
    for (sent, arrived), rec in zip(runs, attempts(server, "timed")):
        assert len(arrived) == len(rec.token_ns) == 8
        server_late = [(t - rec.received_ns) / 1e9 - w for t, w in zip(rec.token_ns, expected)]
        client_late = [(t - sent) / 1e9 - w for t, w in zip(arrived, expected)]
        gap_error = [abs(b - a) for a, b in zip(client_late, client_late[1:])]
        transit = [(c - s) / 1e9 for c, s in zip(arrived, rec.token_ns)]  # server send -> client read
        assert min(server_late) >= 0 and min(client_late) >= 0 and min(transit) >= 0  # never early
        stats.append((statistics.median(server_late), max(server_late), statistics.median(gap_error),
                        max(gap_error), statistics.median(transit)))
    # About 1 ms late (epoll rounds timeouts up to whole ms). Other processes on a shared machine
    # only ever add delay, so the quietest of three runs shows what the server itself does.
    late, worst_late, gap, worst_gap, transit = (min(column) for column in zip(*stats))
    assert late < 0.0015 and gap < 0.001 and transit < 0.0015
    assert worst_late < 0.01 and worst_gap < 0.01


def test_fault_mix_is_seeded_per_key_capped_and_near_its_probabilities():
    script = Script.fault_mix({"429": 0.2, "reset": 0.1}, seed=1, max_faults_per_request=2)
    keys = [f"item-{i}" for i in range(3000)]
    plans = {k: script.plan(k) for k in keys}
    assert plans == {k: Script.fault_mix({"429": 0.2, "reset": 0.1}, seed=1,
                                         max_faults_per_request=2).plan(k) for k in reversed(keys)}
    assert max(len(p) for p in plans.values()) == 2
    first = Counter(p[0].fault if p else None for p in plans.values())
    assert abs(first["429"] / 3000 - 0.2) < 0.03 and abs(first["reset"] / 3000 - 0.1) < 0.025
    key = next(k for k, p in plans.items() if len(p) == 2)
    assert [script.behaviour(key, n).fault for n in (1, 2, 3)] == [p.fault for p in plans[key]] + [None]


def test_script_and_behaviour_reject_bad_input():
    with pytest.raises(ParameterError, match='Behaviour field "fault": unknown fault \'boom\''):
        Behaviour(fault="boom")
    with pytest.raises(ParameterError, match="probabilities sum to 1.2 > 1"):
        Script.fault_mix({"429": 0.7, "500": 0.5}, seed=0)


def test_subprocess_server_serves_the_cli_script_and_its_log():
    with ScriptedProcess(["--tokens", "3", "--fault-mix", "503=1.0", "--max-faults", "1"],
                         api_key=KEY) as proc:
        c = openai.OpenAI(base_url=proc.base_url, api_key=KEY, max_retries=0)
        with pytest.raises(openai.InternalServerError):
            c.completions.create(model="m", prompt="q")
        assert c.completions.create(model="m", prompt="q").choices[0].text == "tok1 tok2 tok3"
        log = proc.fetch_log()
        assert [(a["attempt"], a["behaviour"]["fault"]) for a in log] == [(1, "503"), (2, None)]


def test_subprocess_that_cannot_start_raises_endpoint_error():
    with pytest.raises(EndpointError, match="exited with code 1 before listening"):
        ScriptedProcess(["--fault-mix", "boom=0.1"])
