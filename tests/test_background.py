"""The shared background-loop lifecycle of the in-process test servers: bind, serve, shut down."""
import httpx2
import pytest
from aiohttp import web

from toolkit.errors import EndpointError
from toolkit.testing.background import BackgroundServer


def echo_app(shutdowns: list[str]) -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"path": request.path})

    async def on_shutdown(app: web.Application) -> None:
        shutdowns.append("shutdown")

    app = web.Application()
    app.router.add_get("/v1/hello", hello)
    app.on_shutdown.append(on_shutdown)
    return app


def test_serves_on_a_free_port_and_runs_shutdown_hooks_on_stop():
    shutdowns: list[str] = []
    with BackgroundServer(echo_app(shutdowns), name="echo", host="127.0.0.1", port=0) as srv:
        assert srv.port != 0 and srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        assert httpx2.get(srv.base_url + "/hello").json() == {"path": "/v1/hello"}
        assert shutdowns == []
    assert shutdowns == ["shutdown"]
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(srv.base_url + "/hello")


def test_a_busy_port_raises_an_endpoint_error_naming_the_server():
    with BackgroundServer(echo_app([]), name="echo", host="127.0.0.1", port=0) as srv:
        with pytest.raises(EndpointError, match=f"other cannot listen on 127.0.0.1:{srv.port}"):
            BackgroundServer(echo_app([]), name="other", host="127.0.0.1", port=srv.port).start()

