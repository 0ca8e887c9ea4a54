"""TF Serving's REST API on aiohttp: model status, metadata, predict, and the metrics page.

Paths follow TF Serving: `/v1/models/{m}[/versions/{v}|/labels/{l}][/metadata|:predict]`.
One middleware turns every `ServingError` into `{"error": message}` with its HTTP status;
anything unexpected becomes a 500 with a one-line message (logged with its traceback).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable

from aiohttp import web

from wire import content_coding
from backends.tfserving.server import rest_codec
from backends.tfserving.server.core import ServingCore
from backends.tfserving.server.errors import (
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    ServingError,
    Unimplemented,
    UnsupportedMediaType,
)
from backends.tfserving.server.signature import DEFAULT_SIGNATURE, ModelSpec
from wire.tfserving_json import SIGNATURE_METHODS, wrong_method

log = logging.getLogger("tfserving.rest")
JSON = "application/json"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"
_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<tail>/metadata|:predict|:classify|:regress)?$"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
MAX_BODY_BYTES = 64 * 1024**2
"""The largest request body, after decoding its Content-Encoding."""


def json_response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type=JSON)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one REST error handler: ServingError -> its status; anything else -> 500."""
    try:
        return await handler(request)
    except ServingError as exc:
        response = json_response(rest_codec.encode_error(exc.message), exc.http_status)
        response.headers.update(exc.headers)
        return response
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return json_response(rest_codec.encode_error(f"Internal: {type(exc).__name__}: {exc}"), 500)


class RestRoutes:
    """Handlers bound to one ServingCore."""

    def __init__(self, core: ServingCore, timeout: float) -> None:
        self.core = core
        self.timeout = timeout

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        match = _MODEL_PATH.match(request.path)
        if match is None:
            raise _malformed(request)
        spec = ModelSpec(
            name=match["name"],
            version=int(match["version"]) if match["version"] else None,
            label=match["label"],
        )
        tail = match["tail"]
        if request.method == "GET" and tail is None:
            return self.status(spec)
        if request.method == "GET" and tail == "/metadata":
            return self.metadata(spec)
        if request.method == "POST" and tail == ":predict":
            return await self.predict(request, spec)
        if request.method == "POST" and tail in (":classify", ":regress"):
            return await self.classify_or_regress(request, spec, tail[1:])
        raise _malformed(request)

    def status(self, spec: ModelSpec) -> web.Response:
        statuses = self.core.manager.status(spec.name, spec.version, spec.label)
        return json_response(rest_codec.encode_status(statuses))

    def metadata(self, spec: ModelSpec) -> web.Response:
        servable = self.core.manager.resolve(spec)
        body = {
            "model_spec": {
                "name": servable.name,
                "signature_name": "",
                "version": str(servable.version),
            },
            "metadata": {"signature_def": servable.metadata_json()},
        }
        return json_response(rest_codec.dumps(body))

    async def predict(self, request: web.Request, spec: ModelSpec) -> web.Response:
        body = rest_codec.parse_predict_body(await read_body(request))
        spec = ModelSpec(spec.name, spec.version, spec.label, body.signature_name)
        call = self.core.predict(spec, lambda sig: rest_codec.decode_inputs(body, sig), (), "REST")
        try:
            async with asyncio.timeout(self.timeout):
                result = await call
        except TimeoutError:
            raise DeadlineExceeded(f"Request timed out after {self.timeout * 1e3:.0f} ms") from None
        return json_response(rest_codec.encode_predictions(result.outputs, body.row_format))

    async def classify_or_regress(
        self, request: web.Request, spec: ModelSpec, api: str
    ) -> web.Response:
        """TF Serving's order: the body must be JSON with `examples`, the servable must
        exist, and the default signature must be of the API's method (the checks TF
        Serving runs with `--enable_signature_method_name_check`); Classify and Regress
        themselves are not implemented (dualserve's exports have predict signatures only)."""
        rest_codec.parse_examples_body(await read_body(request))
        servable = self.core.manager.resolve(spec)
        method = servable.signatures[DEFAULT_SIGNATURE].method_name
        if method != SIGNATURE_METHODS[api]:
            raise InvalidArgument(wrong_method(api, method))
        raise Unimplemented(f"{api} is not supported by the bundled server; use predict")


async def read_body(request: web.Request) -> bytes:
    """The body, decoded per its Content-Encoding as the gateway decodes it (TF Serving
    accepts gzip); the size limit (`client_max_size`) applies to the decoded body."""
    limit = MAX_BODY_BYTES
    try:
        coding = content_coding.request_coding(request.headers.get("Content-Encoding"))
        if coding is None:
            return await request.read()
        return await content_coding.decode_body(request.content.iter_any(), coding, limit)
    except content_coding.UnsupportedCoding as exc:
        error = UnsupportedMediaType(str(exc))
        error.headers = {"Accept-Encoding": content_coding.ACCEPT_ENCODING}
        raise error from None
    except content_coding.BodyTooLarge as exc:
        raise PayloadTooLarge(str(exc)) from None
    except content_coding.CorruptBody as exc:
        raise InvalidArgument(str(exc)) from None


def _malformed(request: web.Request) -> NotFound:
    return NotFound(f"Malformed request: {request.method} {request.path}")


def create_rest_app(
    core: ServingCore, metrics_path: str | None, timeout: float = 30.0
) -> web.Application:
    """The REST application; the Prometheus page is served when `metrics_path` is set."""
    app = web.Application(
        middlewares=[error_middleware],
        client_max_size=MAX_BODY_BYTES,
        handler_args={"auto_decompress": False},  # read_body decodes, with the limit
    )
    routes = RestRoutes(core, timeout)
    if metrics_path:

        async def metrics(_: web.Request) -> web.Response:
            return web.Response(body=core.metrics.render(), headers={"Content-Type": PROMETHEUS})

        app.router.add_get(metrics_path, metrics)
    app.router.add_route("*", "/{path:.*}", routes.dispatch)
    return app
