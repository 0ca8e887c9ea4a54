"""The two architectures, described once and shared by both frameworks.

Initial weights are drawn here with numpy from the seed (Glorot-uniform kernels, zero
biases, Keras' defaults) in Keras' layouts, and loaded into both frameworks, so the two
builds of a model start from the same function.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

ARCHITECTURES = ("mlp", "cnn")
HIDDEN_MLP = 64
CONV_FILTERS = 32
CONV_KERNEL = 3
POOL = 2
HIDDEN_CNN = 128


@dataclass(frozen=True)
class ModelSpec:
    """What both frameworks need to build one model."""

    arch: str
    image_shape: tuple[int, int]
    num_classes: int
    mean: float
    std: float

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-example input shape: features for mlp, NHWC (h, w, 1) for cnn."""
        h, w = self.image_shape
        return (h * w,) if self.arch == "mlp" else (h, w, 1)

    @property
    def pooled_features(self) -> int:
        h, w = self.image_shape
        ph = (h - CONV_KERNEL + 1) // POOL
        pw = (w - CONV_KERNEL + 1) // POOL
        return ph * pw * CONV_FILTERS


def to_model_input(images: np.ndarray, arch: str) -> np.ndarray:
    """Shape raw (N, H, W) images into the wire input of `arch` (float32)."""
    images = np.asarray(images, dtype=np.float32)
    if arch == "mlp":
        return images.reshape(len(images), -1)
    return images[..., np.newaxis]


def _glorot(
    rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int
) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def initial_weights(spec: ModelSpec, seed: int) -> list[np.ndarray]:
    """[kernel, bias, ...] in Keras layout (Dense (in, out), Conv2D (kh, kw, in, out))."""
    rng = np.random.default_rng(seed)
    weights: list[np.ndarray] = []
    if spec.arch == "mlp":
        sizes = [spec.input_shape[0], HIDDEN_MLP, HIDDEN_MLP, spec.num_classes]
    else:
        k = CONV_KERNEL
        weights += [
            _glorot(rng, (k, k, 1, CONV_FILTERS), k * k, k * k * CONV_FILTERS),
            np.zeros(CONV_FILTERS, np.float32),
        ]
        sizes = [spec.pooled_features, HIDDEN_CNN, spec.num_classes]
    for fan_in, fan_out in itertools.pairwise(sizes):
        weights += [
            _glorot(rng, (fan_in, fan_out), fan_in, fan_out),
            np.zeros(fan_out, np.float32),
        ]
    return weights
