"""Both frameworks build the same function from the same initial weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainers.architecture import ModelSpec, initial_weights, to_model_input


@pytest.mark.parametrize(
    ("arch", "image_shape"), [("mlp", (8, 8)), ("cnn", (8, 8)), ("cnn", (28, 28))]
)
def test_initial_models_agree(arch: str, image_shape: tuple[int, int]) -> None:
    from trainers import tf_model, torch_model

    spec = ModelSpec(arch, image_shape, 10, mean=4.0, std=6.0)
    weights = initial_weights(spec, seed=3)
    images = np.random.default_rng(0).uniform(0, 16, (5, *image_shape)).astype(np.float32)
    x = to_model_input(images, arch)
    tf_logits = tf_model.build_model(spec, weights)(x).numpy()
    torch_logits = torch_model.build_model(spec, weights)(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(tf_logits, torch_logits, atol=1e-5)
    assert tf_logits.shape == (5, 10)


def test_same_seed_same_weights_other_seed_differs() -> None:
    spec = ModelSpec("mlp", (8, 8), 10, 0.0, 1.0)
    a, b, c = initial_weights(spec, 0), initial_weights(spec, 0), initial_weights(spec, 1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert [w.shape for w in a] == [(64, 64), (64,), (64, 64), (64,), (64, 10), (10,)]
