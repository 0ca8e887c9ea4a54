"""`GRPCInferenceService.ModelStreamInfer`: Triton's bidirectional inference stream.

Each `ModelInferRequest` read from the stream is answered on it by one
`ModelStreamInferResponse`: `infer_response` on success, `error_message` on failure, and
the stream goes on (Triton's `ModelStreamInferHandler`: an error ends the request, not the
stream). tritonclient's `start_stream` / `async_stream_infer` read both. Every message is
served as a unary `ModelInfer` is: the same decoding, classification, request id rule,
admission (a message over `admission.max_in_flight` is answered "overloaded", not queued),
and the call's deadline (the stream's `grpc-timeout`). Credentials are checked once, when
the stream opens: a stream without them is aborted UNAUTHENTICATED, as a unary call is.

Messages are answered as they finish, so answers may overtake each other (as in Triton);
the answer carries the request's `id` (on errors too, in `infer_response.id`) to match
them. At most `STREAM_WINDOW` messages of one stream are in flight; the stream is not read
further until one finishes, so a client that floods a stream is held back by gRPC's flow
control, and its own stream only.

Sources: Triton, src/grpc/stream_infer_handler.cc; grpc_service.proto
(`ModelStreamInferResponse`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import grpc

from gateway._proto import oip, triton
from gateway.context import GatewayContext
from gateway.core.errors import BadRequest, GatewayError
from gateway.core.types import InferRequest
from gateway.protocols import classification
from gateway.protocols.grpc.common import Call, Malformed, abort, lenient
from gateway.protocols.grpc.oip_tensors import encode_outputs

logger = logging.getLogger(__name__)
PROTOCOL = "v2-grpc"
STREAM_WINDOW = 16
"""Messages of one stream in flight at once."""
Decode = Callable[[Any, Call], tuple[InferRequest, bool]]
_END = object()


class StreamServicer:
    """ModelStreamInfer on the shared data plane.

    Args:
        ctx: the gateway's shared objects.
        decode: the unary ingress's decoder (`oip.decode_infer`, which imports this module).
        window: messages of one stream in flight at most (default `STREAM_WINDOW`).
    """

    def __init__(self, ctx: GatewayContext, decode: Decode, window: int | None = None) -> None:
        self.ctx = ctx
        self.decode = decode
        self.window = window or STREAM_WINDOW

    async def stream(
        self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        """Answer every message of `requests`, as each finishes."""
        call = Call.of(context)
        call.read_trace()  # every message forwards the stream's context (no span of its own)
        try:
            self.ctx.auth.check_predict(call.headers)
        except GatewayError as exc:
            await abort(call, exc)
        answers: asyncio.Queue[Any] = asyncio.Queue()
        reader = asyncio.create_task(self._read(requests, call, answers))
        try:
            while (answer := await answers.get()) is not _END:
                yield answer
        finally:
            reader.cancel()
        await reader  # a failure to read the stream surfaces here

    async def _read(
        self, requests: AsyncIterator[Any], call: Call, answers: asyncio.Queue[Any]
    ) -> None:
        window = asyncio.Semaphore(self.window)
        tasks: set[asyncio.Task[None]] = set()
        try:
            async for message in requests:
                await window.acquire()
                task = asyncio.create_task(self._answer(message, call, answers, window))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            answers.put_nowait(_END)

    async def _answer(
        self, message: Any, call: Call, answers: asyncio.Queue[Any], window: asyncio.Semaphore
    ) -> None:
        try:
            answers.put_nowait(await self._admitted(message, call))
        except Exception as exc:  # each message's error is answered on the stream (Triton)
            model = None if isinstance(message, Malformed) else message.model_name
            error = self.ctx.edge.error(exc, PROTOCOL, model, f"{PROTOCOL} stream")
            answers.put_nowait(_error(message, error.message))
        finally:
            window.release()

    async def _admitted(self, message: Any, call: Call) -> Any:
        if isinstance(message, Malformed):
            raise BadRequest(f"malformed ModelInferRequest: {message.reason}")
        # Overloaded before any decoding, as unary calls (the edge's one admission)
        return await self.ctx.edge.admitted(self._infer, message, replace(call))

    async def _infer(self, request: Any, call: Call) -> Any:
        """One message, as `OipServicer.model_infer` serves it (its own `Call`, so the
        request id of one message never names another)."""
        infer, raw = self.decode(request, call)
        call.check_request_id(self.ctx.settings.limits)
        counts = classification.grpc_counts(request)
        classification.check(self.ctx.catalog.get(infer.model), counts)
        answer = await self.ctx.dataplane.infer(infer, PROTOCOL, strict_dtype=True)
        reply = triton.ModelStreamInferResponse()
        response = reply.infer_response
        response.model_name, response.model_version = answer.model, str(answer.version)
        response.id = request.id
        outputs = classification.apply(answer.outputs, counts, as_bytes=True)
        encode_outputs(response, outputs, raw)
        return reply


def _error(message: Any, text: str) -> Any:
    """An error answer; `infer_response` names the request (id, model) it answers."""
    reply = triton.ModelStreamInferResponse(error_message=text)
    if not isinstance(message, Malformed):
        reply.infer_response.id = message.id
        reply.infer_response.model_name = message.model_name
        reply.infer_response.model_version = message.model_version
    return reply


def stream_handler(ctx: GatewayContext, decode: Decode) -> grpc.RpcMethodHandler:
    """The ModelStreamInfer handler (bytes that do not parse are one message's error)."""
    return grpc.stream_stream_rpc_method_handler(
        StreamServicer(ctx, decode).stream,
        request_deserializer=lenient(oip.ModelInferRequest),
        response_serializer=triton.ModelStreamInferResponse.SerializeToString,
    )
