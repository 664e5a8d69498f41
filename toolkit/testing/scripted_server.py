"""A scripted OpenAI-compatible server: exact timing and injected faults, so tests know the truth.

Speaks `/v1/chat/completions`, `/v1/completions` (streaming SSE and plain JSON) and `/v1/models`.
Each request is answered by the `Behaviour` its `Script` picks for (request key, attempt number).
The request key is the `X-Client-Request-Id` header (OpenAI's tracing header, which the collector sends
with the request_id) or `X-Request-Id` when the client sends one, else the prompt text
(completions: `prompt`; chat: the content of the last message). Run it in-process with
`ScriptedServer`, or in its own process with `python -m toolkit.testing.scripted_server`.
The script lives in `toolkit.testing.script`, the handlers in `toolkit.testing.scripted_app`;
this module is the public face of both.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Sequence

from toolkit.errors import EndpointError, ParameterError
from toolkit.testing.background import BackgroundServer, start_runner
from toolkit.testing.script import STREAM_FAULTS, Behaviour, Script
from toolkit.testing.scripted_app import Attempt, ScriptedApp

__all__ = ["STREAM_FAULTS", "Attempt", "Behaviour", "Script", "ScriptedProcess", "ScriptedServer", "main"]

# Like a busy inference server, many connections may wait to be accepted; and both ways of running
# it use handler_cancellation, so a stalled or streaming answer ends when its client goes away.
_BACKLOG = 1024


class ScriptedServer(BackgroundServer):
    """The scripted server on a background thread with its own event loop, for in-process tests.

    `with ScriptedServer(script) as srv: openai.OpenAI(base_url=srv.base_url, api_key="k")`;
    `srv.log` lists every attempt (`Attempt`) in arrival order.  `serial=True` answers one request
    at a time (the others wait, as on a server with one slot); the script's timings then start
    when a request's turn comes.
    """

    def __init__(self, script: Script = Script(), host: str = "127.0.0.1", port: int = 0,
                 api_key: str | None = None, model: str = "scripted", serial: bool = False) -> None:
        self._app = ScriptedApp(script, api_key, model, serial)
        super().__init__(self._app.build(), name="scripted server", host=host, port=port,
                         handler_cancellation=True, backlog=_BACKLOG)

    @property
    def log(self) -> list[Attempt]:
        return self._app.log


class ScriptedProcess:
    """The scripted server in a child process, so it does not share the client's core.

    `ScriptedProcess(["--ttft", "0.05", "--tokens", "20"])` takes the CLI's options, starts it on a
    free port, waits for /v1/models and sets `base_url`; stop() (or leaving `with`) ends it.
    """

    def __init__(self, args: Sequence[str] = (), host: str = "127.0.0.1",
                 api_key: str | None = None, timeout_s: float = 20.0) -> None:
        cmd = [sys.executable, "-m", "toolkit.testing.scripted_server", "--host", host, "--port", "0",
               *(["--api-key", api_key] if api_key else []), *args]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        self._auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = self._proc.stdout.readline().strip()  # the child prints its URL when bound
        if not self.base_url.startswith("http://"):
            self.stop()
            raise EndpointError(f"scripted server `{' '.join(cmd)}` exited with code "
                                f"{self._proc.returncode} before listening; its stderr says why")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._get("/v1/models")
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise EndpointError(f"{self.base_url}/models did not answer: {exc}") from exc
                time.sleep(0.05)

    def _get(self, path: str) -> object:
        request = urllib.request.Request(self.base_url.removesuffix("/v1") + path, headers=self._auth)
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def fetch_log(self) -> list[dict]:
        """The child's attempt log, one dict per attempt with the fields of `Attempt`."""
        return self._get("/_scripted/log")  # type: ignore[return-value]

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc.stdout.close()

    def __enter__(self) -> ScriptedProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse_mix(text: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (part.split("=") for part in text.split(",") if part)}
    except ValueError as exc:
        raise ParameterError(f'--fault-mix "{text}": expected name=probability,...') from exc


async def _serve(app: ScriptedApp, host: str, port: int) -> None:
    runner, port = await start_runner(app.build(), host, port, handler_cancellation=True,
                                      backlog=_BACKLOG)
    print(f"http://{host}:{port}/v1", flush=True)  # the parent reads the URL from this line
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


_CLI_FIELDS = (  # flag, Behaviour field, type, help
    ("--ttft", "ttft_s", float, "seconds before the first token"),
    ("--gap", "gap_s", float, "seconds between tokens"),
    ("--tokens", "tokens", int, "tokens per answer"),
    ("--text", "text", str, "answer text, split into tokens at word starts (overrides --tokens)"),
    ("--cached-tokens", "cached_tokens", int, "usage.prompt_tokens_details.cached_tokens"),
    ("--reasoning-tokens", "reasoning_tokens", int, "usage.completion_tokens_details.reasoning_tokens"),
    ("--processing-ms", "processing_ms", float, "openai-processing-ms header value"),
    ("--retry-after", "retry_after_s", float, "Retry-After seconds sent with a 429"),
    ("--fault-after", "fault_after_tokens", int, "tokens sent before a mid-stream fault"),
    ("--stall", "stall_s", float, "seconds a stall lasts"),
)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m toolkit.testing.scripted_server",
                                description="Scripted OpenAI-compatible server.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--api-key", default=None, help="answer 401 unless Authorization: Bearer KEY")
    p.add_argument("--model", default="scripted", help="the model /v1/models lists")
    for flag, name, kind, text in _CLI_FIELDS:
        p.add_argument(flag, dest=name, type=kind, default=getattr(Behaviour(), name), help=text)
    p.add_argument("--fault-mix", default="", help="e.g. 429=0.05,500=0.02,reset_mid=0.01")
    p.add_argument("--max-faults", type=int, default=3, help="faulted attempts per request, at most")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    default = Behaviour(**{name: getattr(a, name) for _, name, _, _ in _CLI_FIELDS})
    script = (Script.fault_mix(_parse_mix(a.fault_mix), a.seed, a.max_faults, default)
              if a.fault_mix else Script(default))
    asyncio.run(_serve(ScriptedApp(script, a.api_key, a.model), a.host, a.port))


if __name__ == "__main__":
    main()
