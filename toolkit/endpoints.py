"""Endpoints: an OpenAI-compatible base_url (OpenAI, vLLM, Ollama, llama.cpp) reached through
`stream_client.StreamClient`, with its key read from a named environment variable and never stored anywhere.
"""
from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx2

from toolkit.config import EndpointConfig, base_url_problem
from toolkit.errors import EndpointError
from toolkit.stream_client import SendHook, StreamClient

log = logging.getLogger("toolkit")

OPENAI_BASE_URL = "https://api.openai.com/v1"
_KEY_SHAPES = re.compile(r"(sk-[A-Za-z0-9*_\-]{6,}|Bearer\s+\S+)")


@dataclass(frozen=True)
class Connection:
    """A reachable endpoint: where it is and how to authenticate (the key stays in memory only)."""

    name: str
    base_url: str
    api_key: str
    tokenize_url: str | None = None  # llama-server's /tokenize, for exact token counts
    # llama-server closes the connection after every streamed response while announcing keep-alive,
    # so a reused connection can close under the next request ("Server disconnected"): the embedded
    # server gets a new connection per request (on loopback that costs about 0.1 ms)
    keep_alive: bool = True

    @property
    def host(self) -> str:
        """The host (and port) of the base_url: what a run may record about the endpoint."""
        return urlsplit(self.base_url).netloc.rpartition("@")[2]

    def redact(self, text: str) -> str:
        """`text` with the key and anything shaped like a key removed (error messages can echo keys)."""
        if self.api_key and len(self.api_key) >= 4:
            text = text.replace(self.api_key, "[redacted]")
        return _KEY_SHAPES.sub("[redacted]", text)

    def client(self, *, timeout_s: float, max_connections: int, before_send: Sequence[SendHook] = ()) -> StreamClient:
        """The streaming client for this endpoint; `before_send` hooks run before the send is stamped
        (replay holds each request there until it is due)."""
        return StreamClient(self.base_url, self.api_key, timeout_s=timeout_s, max_connections=max_connections,
                            keep_alive=self.keep_alive, before_send=before_send)


def connect(endpoint: EndpointConfig, *, base_url: str | None = None) -> Connection:
    """Resolve an endpoint config to a Connection; the key comes from `api_key_env` only."""
    url = (base_url or endpoint.base_url or OPENAI_BASE_URL).rstrip("/")
    problem = base_url_problem(url)  # the config's own base_url was checked at load; an override was not
    if problem:
        raise EndpointError(f"endpoint {endpoint.name!r}: base_url {problem}")
    if endpoint.api_key_env:
        key = os.environ.get(endpoint.api_key_env)
        if not key:
            raise EndpointError(f"endpoint {endpoint.name!r}: environment variable "
                                f"{endpoint.api_key_env} is not set (it should hold the API key)")
    elif url == OPENAI_BASE_URL:
        raise EndpointError(f"endpoint {endpoint.name!r}: OpenAI needs a key; set api_key_env "
                            "(e.g. OPENAI_API_KEY) in the config")
    else:
        key = "none"  # local servers accept any key, but the client insists on one
    embedded = endpoint.kind == "embedded"
    tokenize_url = url.removesuffix("/v1") + "/tokenize" if embedded else None
    return Connection(endpoint.name, url, key, tokenize_url, keep_alive=not embedded)


class TokenCounter:
    """Exact token counts from llama-server's `POST /tokenize`, for a server that sends no usage; chat
    prompts are first rendered by the server's own chat template (`POST /apply-template`)."""

    def __init__(self, url: str, client: httpx2.AsyncClient) -> None:
        self.url, self._client = url, client
        self._template_url = url.rpartition("/")[0] + "/apply-template"
        self._prompt_counts: dict[str, int] = {}

    async def count(self, text: str, *, with_bos: bool) -> int:
        response = await self._client.post(self.url, json={"content": text, "add_special": with_bos})
        response.raise_for_status()
        return len(response.json()["tokens"])

    async def prompt_tokens(self, prompt: str | list[dict[str, str]]) -> int:
        key = prompt if isinstance(prompt, str) else json.dumps(prompt)
        if key not in self._prompt_counts:
            text = prompt
            if not isinstance(prompt, str):
                response = await self._client.post(self._template_url, json={"messages": prompt})
                response.raise_for_status()
                text = response.json()["prompt"]
            self._prompt_counts[key] = await self.count(text, with_bos=True)  # the server adds BOS to both
        return self._prompt_counts[key]
