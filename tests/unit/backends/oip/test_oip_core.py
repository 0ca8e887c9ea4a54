"""The OIP server's checks and bounds, transport-free, on a fake model."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import numpy as np
import pytest

from backends.oip.core import OipCore, check_inputs, check_outputs
from backends.oip.errors import InvalidInput, Unavailable
from backends.oip.repository import ModelRepository, ServedVersion, TensorMeta

SERVED = ServedVersion(
    "m", 1,
    (TensorMeta("input", "FP32", (-1, 4)),),
    (TensorMeta("probabilities", "FP32", (-1, 2)), TensorMeta("class", "INT64", (-1,))),
    None, Path("m.pt2"),
)  # fmt: skip


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": np.zeros((1, 4), np.float32)}, r"expects inputs \['input'\], got \['x'\]"),
        ({"input": np.zeros((1, 4), np.float64)}, "datatype FP64, the model expects FP32"),
        ({"input": np.zeros((1, 5), np.float32)}, r"shape \[1, 5\], the model expects \[-1, 4\]"),
        ({"input": np.zeros((4,), np.float32)}, r"shape \[4\]"),
        ({"input": np.zeros((0, 4), np.float32)}, r"batch size 0 is outside 1..8"),
        (
            {"input": np.zeros((9, 4), np.float32)},
            r"batch size 9 is outside 1..8 \(max_batch_size\)",
        ),
    ],
)
def test_inputs_that_do_not_fit_the_signature_are_named(
    inputs: dict[str, np.ndarray], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        check_inputs(SERVED, inputs, max_batch=8)


def test_the_largest_batch_passes_and_outputs_keep_the_model_order() -> None:
    assert check_inputs(SERVED, {"input": np.zeros((8, 4), np.float32)}, max_batch=8) == 8
    assert check_outputs(SERVED, []) == ["probabilities", "class"]
    assert check_outputs(SERVED, ["class"]) == ["class"]
    with pytest.raises(InvalidInput, match="has no output 'logits'"):
        check_outputs(SERVED, ["logits"])


class _Blocking:
    """A model whose runs wait until released: requests pile up behind the one runner."""

    def __init__(self) -> None:
        self.release = threading.Event()

    def __call__(self, *args: object) -> dict[str, object]:
        import torch

        self.release.wait(30)
        return {"probabilities": torch.zeros(1, 2), "class": torch.zeros(1, dtype=torch.int64)}


def test_requests_past_max_waiting_are_refused_with_503_and_counted(tmp_path: Path) -> None:
    model = _Blocking()
    repository = ModelRepository(tmp_path)
    served = ServedVersion("m", 1, SERVED.inputs, SERVED.outputs, model, Path("m.pt2"))
    repository._served["m"] = {1: served}
    core = OipCore(repository, threads=1, max_waiting=2)
    x = {"input": np.zeros((1, 4), np.float32)}

    async def run() -> list[object]:
        first = asyncio.ensure_future(core.infer("m", None, x))
        second = asyncio.ensure_future(core.infer("m", None, x))
        while core._waiting < 2:  # both admitted (one running, one waiting for the runner)
            await asyncio.sleep(0.01)
        with pytest.raises(Unavailable, match=r"2 requests wait for a runner \(max_waiting\)"):
            await core.infer("m", None, x)
        model.release.set()
        return list(await asyncio.gather(first, second))

    try:
        answers = asyncio.run(run())
    finally:
        model.release.set()
        core.close()
    assert len(answers) == 2
    page = core.metrics.page().decode()
    assert "oip_requests_shed_total 1.0" in page
    assert 'nv_inference_request_success_total{model="m",version="1"} 2.0' in page
