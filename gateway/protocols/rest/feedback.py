"""`POST /v1/feedback`: true labels for served requests, joined with the prediction log.

Body: `{"request_id": "...", "label": 3}` or `{"feedback": [{"request_id": ..., "label": ...}]}`.
Each id gets its own outcome and status: 201 recorded, 202 pending (the request's row is
not in the log yet, e.g. another worker answered it and its log writes it within its
linger: the label is stored and joins the row by request id when it lands), 200 duplicate
(the same label again counts once), 409 conflict (a different label was recorded).
The reply's status is the items' common status, or 207 when they differ. A label outside
the model's classes (`0..classes-1`, the manifest's `probabilities` width) is a 400
naming the range; a database that is down or hung is a 503 with `Retry-After`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.context import GatewayContext
from gateway.core.errors import BadRequest
from gateway.experiments.log.records import FeedbackResult
from gateway.protocols.rest.http import json_body, json_response
from gateway.protocols.rest.openapi import operation, ref
from gateway.protocols.rest.schemas import FeedbackBatch, FeedbackItem, FeedbackResponse

router = APIRouter()
MAX_ITEMS = 10_000


def parse_feedback(body: Any) -> list[tuple[str, int]]:
    """The (request id, label) pairs of a body; a 400 naming the field otherwise."""
    if not isinstance(body, dict):
        raise BadRequest("feedback must be a JSON object")
    if "feedback" in body:
        items = body["feedback"]
        if not isinstance(items, list) or not items:
            raise BadRequest("feedback: must be a non-empty list of {request_id, label}")
        if len(items) > MAX_ITEMS:
            raise BadRequest(f"feedback: at most {MAX_ITEMS} items per call")
        return [_item(item, f"feedback[{i}]") for i, item in enumerate(items)]
    return [_item(body, "body")]


def _item(item: Any, where: str) -> tuple[str, int]:
    if not isinstance(item, dict):
        raise BadRequest(f"{where}: must be an object with request_id and label")
    request_id, label = item.get("request_id"), item.get("label")
    if isinstance(label, float) and label.is_integer():  # JSON Schema's integer: 3.0 is 3
        label = int(label)
    if not isinstance(request_id, str) or not request_id:
        raise BadRequest(f"{where}.request_id: must be a non-empty string")
    if isinstance(label, bool) or not isinstance(label, int) or label < 0:
        raise BadRequest(f"{where}.label: must be a non-negative integer class")
    return request_id, label


def overall_status(results: list[FeedbackResult]) -> int:
    statuses = {r.status for r in results}
    return statuses.pop() if len(statuses) == 1 else 207


_RESULTS = {"model": FeedbackResponse}
_FEEDBACK = operation(
    FeedbackResponse,
    body={"application/json": {"oneOf": [ref(FeedbackItem), ref(FeedbackBatch)]}},
    statuses=(400, 401, 503),
    extra={
        201: {**_RESULTS, "description": "every label recorded"},
        202: {**_RESULTS, "description": "every label stored, its request not logged yet"},
        207: {**_RESULTS, "description": "the items' statuses differ"},
        409: {**_RESULTS, "description": "every item conflicts with a recorded label"},
    },
)


@router.post("/v1/feedback", **_FEEDBACK)
async def feedback(request: Request) -> Response:
    ctx: GatewayContext = request.app.state.gateway
    ctx.auth.check_predict(request.headers)
    items = parse_feedback(await json_body(request, ctx.settings.max_body_bytes))
    results = await ctx.experiments.feedback(items)
    body = {
        "results": [
            {"request_id": r.request_id, "outcome": r.outcome, "status": r.status} for r in results
        ],
        "recorded": sum(r.outcome == "recorded" for r in results),
    }
    return json_response(body, status=overall_status(results))
