"""`torch.export` exports: a dynamic batch, parity against TorchScript, loads verified."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trainers.architecture import ModelSpec, initial_weights, to_model_input
from trainers.errors import TrainerError
from trainers.exports.torch_export import PARITY_TOLERANCE, load_program, parity, write_exports
from trainers.store import ModelStore, sha256_path
from trainers.torch_model import build_model, export, load_predictor

RNG = np.random.default_rng(0)


def _model(arch: str) -> tuple[ModelSpec, torch.nn.Module]:
    spec = ModelSpec(arch, (8, 8), 10, 4.9, 6.0)
    return spec, build_model(spec, initial_weights(spec, 0))


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_program_matches_torchscript_for_any_batch(tmp_path: Path, arch: str) -> None:
    spec, model = _model(arch)
    store = ModelStore(tmp_path)
    export(model, spec, store.torch_file("m", 1))
    x = to_model_input(RNG.uniform(0, 16, (37, 8, 8)).astype(np.float32), arch)
    reference = load_predictor(store.torch_file("m", 1))(x)
    exports = write_exports(model, spec, store.program_file("m", 1), store, x, reference, False)
    recorded = exports["pt2"]
    assert set(exports) == {"pt2"}  # no AOTInductor compile unless asked
    assert recorded.artifact == "torch/m/1/model.pt2" and recorded.kind == "exported_program"
    assert recorded.sha256 == sha256_path(tmp_path / recorded.artifact)
    assert recorded.parity.classes_equal and recorded.parity.examples == 37
    module = load_program(tmp_path / recorded.artifact, recorded.sha256)
    for batch in (1, 5, 300):  # the batch dimension is dynamic, not the traced 2
        sample = torch.from_numpy(np.resize(x, (batch, *x.shape[1:])))
        out = module(sample)
        script = torch.jit.load(str(store.torch_file("m", 1)))(sample)
        assert out["class"].dtype == torch.int64 and out["probabilities"].shape == (batch, 10)
        torch.testing.assert_close(out["probabilities"], script["probabilities"], atol=1e-6, rtol=0)


def test_a_tampered_program_is_refused_before_it_is_unpickled(tmp_path: Path) -> None:
    spec, model = _model("mlp")
    store = ModelStore(tmp_path)
    x = RNG.uniform(0, 16, (4, 64)).astype(np.float32)
    export(model, spec, store.torch_file("m", 1))
    reference = load_predictor(store.torch_file("m", 1))(x)
    recorded = write_exports(model, spec, store.program_file("m", 1), store, x, reference, False)
    path = tmp_path / recorded["pt2"].artifact
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(TrainerError, match=r"model.pt2 does not match its recorded sha256"):
        load_program(path, recorded["pt2"].sha256)


def test_parity_fails_past_the_tolerance_or_on_a_different_class() -> None:
    probs = np.full((3, 2), 0.5, dtype=np.float32)
    classes = np.zeros(3, dtype=np.int64)
    reference = {"probabilities": probs, "class": classes}
    close = {"probabilities": probs + PARITY_TOLERANCE / 2, "class": classes}
    assert parity(reference, close).max_abs_prob_diff <= PARITY_TOLERANCE
    with pytest.raises(TrainerError, match=r"max \|dp\| 2e-05"):
        parity(reference, {"probabilities": probs + 2e-5, "class": classes})
    with pytest.raises(TrainerError, match="classes equal: False"):
        parity(reference, {"probabilities": probs, "class": classes + 1})
