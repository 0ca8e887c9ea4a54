"""`GET /openapi.json`: the whole API, generated from the app's routes.

FastAPI writes each route's operation; routes declare their bodies, answers and headers
with `operation(...)` (kwargs for `add_api_route` and the route decorators). On top of
that, `document` applies the rules every route follows, so a route added later is
described truly without a hand-written entry:

- a path parameter the endpoint does not take as an argument (endpoints that read
  `request.path_params`, like the fast-path prediction routes) is declared as a string;
  `version` as a positive integer in decimal, as the routes read it;
- every path with a parameter can answer 404 (unknown model, version or experiment);
  `version` and `label` parameters can answer 400;
- every route that declares a body (all of them require theirs) can answer 400
  (malformed), 413 (over `max_body_bytes`) and 415 (an unknown Content-Encoding);
- `/admin` routes need the admin bearer token: security scheme and 401;
- FastAPI's 422 is dropped: the gateway's path parameters are strings, bad input is 400.

Every error answers `{"error": "..."}` (`ErrorBody`).
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from gateway.protocols.rest import schemas

_REASONS = {
    400: "bad input: malformed body, wrong tensor name, shape, dtype or parameter",
    401: "missing or wrong credentials",
    403: "the model's policy does not allow pinning a framework",
    404: "unknown model, version, label or resource",
    409: "the resource's state does not allow the change",
    413: "body over max_body_bytes",
    415: "unknown Content-Encoding",
    502: "the backend answered with an error",
    503: "no ready backend, or the backend is unavailable",
    504: "the backend did not answer in time",
}
PREDICTION_ERRORS = (400, 401, 403, 404, 413, 415, 502, 503, 504)
_TRACEPARENT = "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
ANSWER_HEADERS: dict[str, Any] = {
    "X-Backend": {
        "required": True,
        "schema": {"type": "string", "enum": ["tensorflow", "pytorch"]},
        "description": "the framework that answered",
    },
    "X-Model-Version": {
        "required": True,
        "schema": {"type": "string"},
        "description": "the version that answered",
    },
    "X-Request-Id": {
        "required": True,
        "schema": {"type": "string"},
        "description": "the client's X-Request-Id, or a new one",
    },
    "X-Failover": {
        "schema": {"type": "string", "enum": ["true"]},
        "description": "the other framework answered",
    },
    "traceparent": {
        "required": True,
        "schema": {"type": "string", "pattern": _TRACEPARENT},
        "description": "W3C Trace Context: the trace the request joined or started, its"
        " parent-id the gateway's span (tracing on) or the one forwarded (off)",
    },
}
PREDICTION_HEADERS: list[dict[str, Any]] = [
    {
        "name": "X-Backend",
        "in": "header",
        "schema": {"type": "string", "enum": ["tensorflow", "pytorch"]},
        "description": "pin a framework",
    },
    {
        "name": "X-Routing-Key",
        "in": "header",
        "schema": {"type": "string"},
        "description": "sticky routing key",
    },
    {
        "name": "X-Request-Id",
        "in": "header",
        "schema": {"type": "string"},
        "description": "echoed back; names the request in the prediction log",
    },
    {
        "name": "traceparent",
        "in": "header",
        "schema": {"type": "string"},
        "description": "W3C Trace Context, forwarded to the backend (a malformed one starts"
        " a new trace)",
    },
    {
        "name": "tracestate",
        "in": "header",
        "schema": {"type": "string"},
        "description": "W3C Trace Context vendor state, forwarded bounded (32 members, 512"
        " characters)",
    },
]


_REFERENCED: dict[str, type[BaseModel]] = {}  # models outside `schemas` that routes ref


def ref(model: type[BaseModel]) -> dict[str, str]:
    """A reference to `model`'s schema in the components (added there by `document`)."""
    if model.__module__ != schemas.__name__:
        _REFERENCED[model.__name__] = model
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def inline(model: type[BaseModel]) -> dict[str, Any]:
    """A flat model's JSON schema, inline (for models outside `schemas`)."""
    schema = model.model_json_schema()
    assert "$defs" not in schema, f"{model.__name__} nests models: add it to schemas"
    return schema


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses` entries for error statuses, each `ErrorBody`."""
    return {s: {"model": schemas.ErrorBody, "description": _REASONS[s]} for s in statuses}


def operation(
    ok: type[BaseModel] | None = None,
    *,
    body: dict[str, Any] | None = None,
    statuses: tuple[int, ...] = (),
    extra: dict[int | str, dict[str, Any]] | None = None,
    headers: list[dict[str, Any]] | None = None,
    answer_headers: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Route kwargs (`responses`, `openapi_extra`) describing one operation.

    Args:
        ok: the 200 body's model (JSON).
        body: the request body: `{media type: schema}`; required.
        statuses: error statuses the route answers besides those `document` adds.
        extra: further `responses` entries (other 2xx, other media types).
        headers: request header parameters.
        answer_headers: response headers of the 200.
    """
    responses: dict[int | str, dict[str, Any]] = errors(*statuses)
    if ok is not None:
        responses[200] = {"model": ok, "description": "success"}
        if answer_headers:
            responses[200]["headers"] = answer_headers
    for status, entry in (extra or {}).items():
        responses.setdefault(status, {"description": "success"}).update(entry)
    openapi_extra: dict[str, Any] = {}
    if body is not None:
        content = {media: {"schema": schema} for media, schema in body.items()}
        openapi_extra["requestBody"] = {"required": True, "content": content}
    if headers:
        openapi_extra["parameters"] = headers
    return {"responses": responses, "openapi_extra": openapi_extra}


def document(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI 3.1 document of `app` (cached on `app.openapi_schema`)."""
    if app.openapi_schema is None:
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = doc.setdefault("components", {})
        components.setdefault("schemas", {}).update(_body_schemas())
        components["securitySchemes"] = {"admin": {"type": "http", "scheme": "bearer"}}
        for path, operations in doc.get("paths", {}).items():
            for method, op in operations.items():
                _apply_rules(path, method, op)
        for unused in ("HTTPValidationError", "ValidationError"):
            components["schemas"].pop(unused, None)
        app.openapi_schema = doc
    return app.openapi_schema


def _body_schemas() -> dict[str, Any]:
    """Every model of `gateway.protocols.rest.schemas` and every model a route `ref`s."""
    models = [
        m
        for _, m in inspect.getmembers(schemas, inspect.isclass)
        if issubclass(m, BaseModel) and m.__module__ == schemas.__name__
    ] + list(_REFERENCED.values())
    _, top = models_json_schema(
        [(m, "validation") for m in models], ref_template="#/components/schemas/{model}"
    )
    return top.get("$defs", {})  # type: ignore[no-any-return]


def _apply_rules(path: str, method: str, op: dict[str, Any]) -> None:
    responses = op.setdefault("responses", {})
    responses.pop("422", None)
    params = _path_parameters(path, op)
    added: set[int] = set()
    if params:
        added.add(404)
    if {"version", "label"} & set(params):
        added.add(400)
    if "requestBody" in op:
        added |= {400, 413, 415}
    if path.startswith("/admin"):
        op["security"] = [{"admin": []}]
        added.add(401)
    for status, entry in errors(*sorted(added)).items():
        responses.setdefault(str(status), _error_response(entry["description"]))


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": ref(schemas.ErrorBody)}},
    }


def _path_parameters(path: str, op: dict[str, Any]) -> list[str]:
    """The path's parameter names; declares those the operation lacks."""
    names = [part[1:-1] for part in path.replace(":", "/").split("/") if part.startswith("{")]
    parameters = op.setdefault("parameters", [])
    declared = {p["name"] for p in parameters if p.get("in") == "path"}
    for name in names:
        if name not in declared:
            parameters.append(
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            )
    for p in parameters:
        if p.get("in") == "path" and p["name"] == "version":
            p["schema"] = {"type": "string", "pattern": "^[1-9][0-9]*$"}
    return names
