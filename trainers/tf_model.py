"""The TensorFlow (Keras) build of the models, its training step and its SavedModel export.

Imported only when TensorFlow is needed: importing TF costs seconds.
"""

# ruff: noqa: E402  (TensorFlow is first imported through import_tensorflow, below)

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainers.tf_quiet import import_tensorflow

import_tensorflow()  # before keras: TensorFlow's start-up noise stays off the terminal

import keras
import numpy as np
import tensorflow as tf

from trainers.architecture import (
    CONV_FILTERS,
    CONV_KERNEL,
    HIDDEN_CNN,
    HIDDEN_MLP,
    POOL,
    ModelSpec,
)

FRAMEWORK = "tensorflow"


class Standardize(keras.layers.Layer):
    """(x - mean) / std with constants from the training split: raw pixels in."""

    def __init__(self, mean: float, std: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean = float(mean)
        self.std = float(std)

    def call(self, inputs: Any) -> Any:
        return (inputs - self.mean) / self.std


def build_model(spec: ModelSpec, weights: list[np.ndarray]) -> keras.Model:
    """A Keras model producing logits, initialised with `weights` (Keras layout)."""
    inputs = keras.Input(shape=spec.input_shape, name="input", dtype="float32")
    x = Standardize(spec.mean, spec.std, name="standardize")(inputs)
    if spec.arch == "mlp":
        x = keras.layers.Dense(HIDDEN_MLP, activation="relu")(x)
        x = keras.layers.Dense(HIDDEN_MLP, activation="relu")(x)
    else:
        x = keras.layers.Conv2D(CONV_FILTERS, CONV_KERNEL, activation="relu")(x)
        x = keras.layers.MaxPooling2D(POOL)(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(HIDDEN_CNN, activation="relu")(x)
    logits = keras.layers.Dense(spec.num_classes, name="logits")(x)
    model = keras.Model(inputs, logits, name=spec.arch)
    model.set_weights(weights)
    return model


class Trainer:
    """One optimiser step per call, on the batches the shared batch order picks."""

    def __init__(self, model: keras.Model, lr: float) -> None:
        self.model = model
        # epsilon matches torch's Adam default, so both optimisers take the same steps.
        self.optimizer = keras.optimizers.Adam(learning_rate=lr, epsilon=1e-8)
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function(reduce_retracing=True)
    def _step(self, x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            loss = self.loss_fn(y, logits)
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables, strict=True))
        correct = tf.reduce_sum(tf.cast(tf.argmax(logits, axis=-1) == y, tf.int64))
        return loss, correct

    def step(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        loss, correct = self._step(tf.constant(x), tf.constant(y))
        return float(loss), int(correct)

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        logits = self.model(tf.constant(x), training=False)
        loss = float(self.loss_fn(tf.constant(y), logits))
        accuracy = float(np.mean(np.argmax(logits.numpy(), axis=-1) == y))
        return loss, accuracy


class _ServingModule(tf.Module):
    def __init__(self, model: keras.Model, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.model = model
        spec = tf.TensorSpec([None, *input_shape], tf.float32, name="input")
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _serve(self, input: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = self.model(input, training=False)
        return {
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "class": tf.argmax(logits, axis=-1, output_type=tf.int64),
        }


def export(model: keras.Model, spec: ModelSpec, path: Path) -> None:
    """Write a SavedModel with a `serving_default` signature: input -> probabilities, class."""
    module = _ServingModule(model, spec.input_shape)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def load_predictor(path: Path) -> Any:
    """Load an exported SavedModel's serving signature as a callable numpy -> dict."""
    signature = tf.saved_model.load(str(path)).signatures["serving_default"]

    def predict(batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = signature(input=tf.constant(batch, dtype=tf.float32))
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    return predict


def write_warmup_requests(path: Path, model_name: str, batches: list[np.ndarray]) -> Path:
    """TF Serving's warm-up file: PredictionLog records, one PredictRequest per batch."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    target = path / "assets.extra" / "tf_serving_warmup_requests"
    target.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(target)) as writer:
        for batch in batches:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = "serving_default"
            request.inputs["input"].CopyFrom(tf.make_tensor_proto(batch.astype(np.float32)))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return target


def param_count(model: keras.Model) -> int:
    return int(model.count_params())


def framework_version() -> str:
    return str(tf.__version__)


def device_name() -> str:
    return "GPU" if tf.config.list_physical_devices("GPU") else "CPU"


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)


def tensorboard_writer(logdir: Path) -> Any:
    writer = tf.summary.create_file_writer(str(logdir))

    def log(step: int, scalars: dict[str, float]) -> None:
        with writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, value)
        writer.flush()

    return log
