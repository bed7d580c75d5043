"""`hitl codec-server`: Temporal's codec server protocol over the HITL_CODEC_KEYS codec, so the Web UI
(`--ui-codec-endpoint`, or its Settings -> Codec Server) shows encrypted cases decoded, and encodes
what Send a Signal / Send an Update sends.

POST /decode and /encode take and return `{"payloads": [...]}` (payloads as protobuf JSON: base64
metadata and data) and the UI's `X-Namespace` header. Browsers may call it from the UI's origin only
(CORS, exact origin, no `*`). Anyone who reaches it can decrypt every case: it listens on loopback by
default; in production put it behind the same authenticating proxy as the UI.
"""

from __future__ import annotations

import asyncio
import importlib.util
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click

from hitl_temporal.cli.application import Application, pass_app, state_dir_option

if TYPE_CHECKING:
    from aiohttp import web
    from temporalio.api.common.v1 import Payload
    from temporalio.converter import PayloadCodec

DEFAULT_PORT = 8234
DEFAULT_UI_ORIGIN = "http://localhost:8233"  # `hitl dev`'s Web UI
# A history's payloads come a few at a time; the server refuses a single payload over 512 KiB anyway.
MAX_REQUEST_BYTES = 4 * 1024 * 1024
ALLOWED_HEADERS = "content-type, x-namespace"
PREFLIGHT_MAX_AGE_S = 600


class OriginType(click.ParamType):
    """`scheme://host[:port]`, what a browser sends as `Origin`: no path, query or trailing slash."""

    name = "ORIGIN"

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 -- raises ValueError for a port that is not a number in range
        except ValueError as err:
            self.fail(f"{value!r} is not an origin ({err})", param, ctx)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(f"{value!r} is not an origin: give scheme://host[:port], e.g. {DEFAULT_UI_ORIGIN}", param, ctx)
        if parts.path or parts.query or parts.fragment or parts.username or parts.password:
            self.fail(f"{value!r} is not an origin: scheme://host[:port] only, no path or credentials", param, ctx)
        return f"{parts.scheme}://{parts.netloc}".lower()


def codec_app(
    codec: PayloadCodec,
    *,
    ui_origins: Sequence[str],
    namespace: str | None = None,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> web.Application:
    """The codec server as an aiohttp application (see the module docstring); `namespace`: the only
    namespace served (None: any)."""
    from aiohttp import web
    from google.protobuf import json_format
    from temporalio.api.common.v1 import Payload

    from gates.json_input import JsonInputError, loads_strict
    from hitl_temporal.codec import PayloadDecryptError

    allowed = frozenset(ui_origins)

    def error(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    @web.middleware
    async def cors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Only the UI's origin may call from a browser; callers that send no Origin (the CLI, curl) may too."""
        origin = request.headers.get("Origin")
        if origin is not None and origin not in allowed:
            return error(403, f"origin {origin[:200]!r} may not use this codec server (allowed: {', '.join(sorted(allowed))})")
        if request.method == "OPTIONS":
            response: web.StreamResponse = web.Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
            response.headers["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_S)
        else:
            try:
                response = await handler(request)
            except web.HTTPException as err:  # 404, 405, 413: a JSON one-liner the UI can read too
                response = error(err.status, err.reason)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        return response

    def endpoint(transform: Callable[[Sequence[Payload]], Awaitable[list[Payload]]]):
        async def handle(request: web.Request) -> web.Response:
            sent_namespace = request.headers.get("X-Namespace")
            if namespace is not None and sent_namespace not in (None, namespace):
                return error(403, f"this codec server serves namespace {namespace!r}, not {sent_namespace[:200]!r}")
            try:
                body = loads_strict(await request.read(), what="the request body")
            except web.HTTPRequestEntityTooLarge:
                return error(413, f"the request body is over {max_request_bytes} bytes")
            except JsonInputError as err:
                return error(400, str(err))
            if not isinstance(body, dict) or not isinstance(body.get("payloads"), list):
                return error(400, 'the request body must be a JSON object {"payloads": [...]}')
            try:
                payloads = [json_format.ParseDict(item, Payload()) for item in body["payloads"]]
            except (json_format.ParseError, TypeError, AttributeError) as err:
                return error(400, f"not a payload: {str(err).splitlines()[0][:300]}")
            try:
                done = await transform(payloads)
            except PayloadDecryptError as err:
                return error(422, str(err))
            return web.json_response({"payloads": [json_format.MessageToDict(payload) for payload in done]})

        return handle

    app = web.Application(client_max_size=max_request_bytes, middlewares=[cors])
    for path, transform in (("/encode", codec.encode), ("/decode", codec.decode)):
        app.router.add_post(path, endpoint(transform))
        app.router.add_route("OPTIONS", path, endpoint(transform))  # answered by the middleware
    return app


async def serve(
    codec: PayloadCodec, *, host: str, port: int, ui_origins: Sequence[str], namespace: str | None, banner: str
) -> None:
    """Serve until SIGINT/SIGTERM."""
    from aiohttp import web

    runner = web.AppRunner(codec_app(codec, ui_origins=ui_origins, namespace=namespace), access_log=None)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        print(banner, flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()


@click.command("codec-server")
@state_dir_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (anyone who reaches it can decrypt).")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True, help="Port to listen on.")
@click.option(
    "--ui-origin",
    "ui_origins",
    type=OriginType(),
    multiple=True,
    help=f"Origin of the Web UI allowed to call it from a browser (repeatable) [default: {DEFAULT_UI_ORIGIN}]",
)
@click.option("--namespace", default="default", show_default=True, help="The only namespace it decodes for (X-Namespace).")
@pass_app
def codec_server(app: Application, host: str, port: int, ui_origins: tuple[str, ...], namespace: str) -> None:
    """Serve Temporal's codec protocol (POST /encode, /decode) with the HITL_CODEC_KEYS keys, for the Web UI."""
    settings = app.settings
    if settings.codec_keys is None:
        app.fail("hitl codec-server needs the payload keys: set HITL_CODEC_KEYS (id:<base64 of 32 bytes>,...)")
    if importlib.util.find_spec("aiohttp") is None:
        app.fail("hitl codec-server needs aiohttp: pip install 'hitl-temporal[cli]'")
    from workers.client import payload_codec
    from workers.devstack import ensure_port_free

    codec = payload_codec(settings)
    assert codec is not None
    origins = list(dict.fromkeys(ui_origins or (DEFAULT_UI_ORIGIN,)))
    banner = (
        f"codec server on http://{host}:{port} for the Web UI at {', '.join(origins)} (namespace {namespace}); "
        f"key {codec.ring.current} encrypts, {', '.join(codec.ring.keys)} decrypt"
    )

    def run() -> None:
        ensure_port_free(port, "--port", host)
        asyncio.run(serve(codec, host=host, port=port, ui_origins=origins, namespace=namespace, banner=banner))

    app.call(run)
