"""Fakes for the gateway's unit tests: a model store with one manifest, fake upstreams,
the policy store's experiment layer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from aiohttp import web

from backends.process import free_port
from gateway.core.errors import GatewayError
from gateway.core.types import Framework, InferRequest, InferResponse
from gateway.settings import GatewaySettings, ModelPolicy
from trainers.manifest import (
    DatasetInfo,
    FrameworkArtifact,
    Hyperparameters,
    Manifest,
    ModelEntry,
    Signature,
    TensorSpec,
    VersionEntry,
    write_manifest,
)

FEATURES = 4
CLASSES = 3


def _artifact(path: str) -> FrameworkArtifact:
    return FrameworkArtifact(
        artifact=path, sha256="0", size_bytes=1, test_accuracy=1.0, train_seconds=0.0,
        param_count=1, framework_version="x", device="CPU",
    )  # fmt: skip


def _version(version: int) -> VersionEntry:
    return VersionEntry(
        version=version,
        created="2026-01-01T00:00:00+00:00",
        arch="mlp",
        dataset=DatasetInfo(name="toy", fingerprint="0", train=1, val=1, test=1, mean=0, std=1),
        classes=list(range(CLASSES)),
        signature=Signature(
            inputs=[TensorSpec(name="input", dtype="float32", shape=[-1, FEATURES])],
            outputs=[
                TensorSpec(name="probabilities", dtype="float32", shape=[-1, CLASSES]),
                TensorSpec(name="class", dtype="int64", shape=[-1]),
            ],
        ),
        hyperparameters=Hyperparameters(epochs=1, batch_size=1, lr=0.1, seed=0),
        frameworks={"tensorflow": _artifact("tf"), "pytorch": _artifact("pt")},
    )


def make_store(root: Path, versions: tuple[int, ...] = (1, 2)) -> Path:
    entry = ModelEntry(versions={str(v): _version(v) for v in versions})
    write_manifest(root, Manifest(models={"toy": entry}))
    return root


def toy_outputs(x: np.ndarray) -> dict[str, np.ndarray]:
    logits = x[:, :CLASSES].astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {
        "probabilities": probs.astype(np.float32),
        "class": probs.argmax(axis=1).astype(np.int64),
    }


class FakeUpstream:
    """Answers like a model would; can be told to fail or to be slow; counts calls."""

    def __init__(self, framework: Framework) -> None:
        self.framework = framework
        self.calls: list[InferRequest] = []
        self.fail_with: GatewayError | None = None
        self.delay = 0.0
        self.closed = False

    async def infer(self, request: InferRequest, timeout: float) -> InferResponse:
        self.calls.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_with is not None:
            raise self.fail_with
        return InferResponse(
            model=request.model,
            version=request.version or 0,
            backend=self.framework,
            outputs=toy_outputs(request.inputs["input"]),
            timings={"upstream": 0.0001},
        )

    async def ready(self, model: str) -> bool:
        return self.fail_with is None

    async def aclose(self) -> None:
        self.closed = True


def settings_for(store: Path, **overrides: object) -> GatewaySettings:
    base: dict[str, object] = {
        "model_store": store,
        "auth": {"admin_token": "admin-secret"},
    }
    base.update(overrides)
    return GatewaySettings(**base)  # type: ignore[arg-type]


class FakeLayers:
    """The policy store's experiment layer, in memory (one per process)."""

    def __init__(self) -> None:
        self.layer: tuple[ModelPolicy, str] | None = None
        self.writes = 0
        self.promoted: dict[str, ModelPolicy] = {}

    def configured_policy(self, model: str) -> ModelPolicy:
        return ModelPolicy(mode="pinned")

    def overridden_since(self, model: str) -> float | None:
        return None

    def experiment_layer_owner(self, model: str) -> str | None:
        return None if self.layer is None else self.layer[1]

    async def set_experiment_layer(
        self, model: str, policy: ModelPolicy, set_by: str, reason: str
    ) -> None:
        self.layer, self.writes = (policy, set_by), self.writes + 1

    def effective(self, model: str) -> ModelPolicy:
        return self.layer[0] if self.layer is not None else self.configured_policy(model)

    async def set_promoted_layer(
        self, model: str, policy: ModelPolicy, set_by: str, reason: str
    ) -> None:
        self.promoted[model] = policy

    async def clear_experiment_layer(self, model: str, set_by: str) -> None:
        if self.layer is not None and self.layer[1] == set_by:
            self.layer, self.writes = None, self.writes + 1


@asynccontextmanager
async def serve_aiohttp(app: web.Application) -> AsyncIterator[str]:
    """`app` served on a free loopback port for the block: its base URL, `http://127.0.0.1:N`."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
